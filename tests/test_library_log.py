"""library_log.to_file: what Python prints for the libraries goes to the run's log file, not to
the console. (absl's lines: test_workdir's full disk.)"""

import gc
import warnings

from jaxcnn import library_log


class _FailingCleanUp:
  def __del__(self):
    raise RuntimeError('clean-up failed')


def test_warnings_and_ignored_exceptions_go_to_the_file_and_the_console_keeps_none(tmp_path, capsys):
  path = tmp_path / 'library.log'
  with library_log.to_file(str(path)):
    with warnings.catch_warnings():
      warnings.simplefilter('always')
      warnings.warn('coroutine was never awaited', RuntimeWarning)
    _FailingCleanUp()
    gc.collect()
  lines = path.read_text()
  assert 'RuntimeWarning: coroutine was never awaited' in lines
  assert 'RuntimeError: clean-up failed' in lines
  assert capsys.readouterr().err == ''
