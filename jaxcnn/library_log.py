"""The libraries' own lines go to the run's log file, so that the console keeps the project's.

While a run trains, absl's log at WARNING and above (orbax, TFDS and JAX log through it), the
tracebacks of exceptions that library threads do not catch (orbax's and tensorstore's, after a
failed save), the exceptions Python can only ignore (a library's clean-up at exit) and Python's
warnings (a save's coroutine left unawaited when a failed save ends the run) go to
WORKDIR/library.log (process N > 0 of a multi-host run: library.process-N.log). What needs the
user's action the project says in its own words (a failed save is an `error:` line).
`--verbosity` still sets absl's level; absl's `--alsologtostderr` copies its lines to the
console too.
"""

import contextlib
import os
import sys
import threading
import traceback
import warnings

from absl import flags, logging


def file_name(process_index: int) -> str:
  return 'library.log' if process_index == 0 else f'library.process-{process_index}.log'


class _LogFile:
  """The log file, line-buffered so that its lines are there when a run is killed. Lines that
  a full disk refuses, or that come after Python closed the file at exit, are lost: they must
  not end the run, nor reach the console."""

  def __init__(self, path: str):
    try:
      self.file = open(path, 'a', buffering=1)
    except OSError:
      self.file = open(os.devnull, 'w')

  def write(self, text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
      self.file.write(text)

  def flush(self) -> None:
    with contextlib.suppress(OSError, ValueError):
      self.file.flush()

  def close(self) -> None:
    with contextlib.suppress(OSError, ValueError):
      self.file.close()


@contextlib.contextmanager
def to_file(path: str):
  """Routes the libraries' lines to `path` for the block. If the block fails, they stay routed
  there: the libraries' clean-up after a failure comes later, as the process ends."""
  log = _LogFile(path)

  def write_traceback(error_type, error, trace, context: str) -> None:
    log.write(f'{context}:\n' + ''.join(traceback.format_exception(error_type, error, trace)))

  def excepthook(error_type, error, trace):
    # Python calls it for the main thread's uncaught exceptions (shown as ever), and C++
    # threads (tensorstore's) call it for their callbacks' errors.
    if threading.current_thread() is threading.main_thread():
      previous_excepthook(error_type, error, trace)
    else:
      write_traceback(error_type, error, trace, f'in thread {threading.current_thread().name}')

  handler = logging.get_absl_handler().python_handler
  previous_stream, previous_level = handler.stream, logging.get_verbosity()
  previous_excepthook, previous_thread_hook = sys.excepthook, threading.excepthook
  previous_unraisable_hook, previous_showwarning = sys.unraisablehook, warnings.showwarning
  handler.setStream(log)
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  sys.excepthook = excepthook
  threading.excepthook = lambda hook: write_traceback(
      hook.exc_type, hook.exc_value, hook.exc_traceback, f'in thread {hook.thread.name}')
  sys.unraisablehook = lambda hook: write_traceback(
      hook.exc_type, hook.exc_value, hook.exc_traceback,
      f'{hook.err_msg or "Exception ignored in"}: {hook.object!r}')
  warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: (
      log.write(warnings.formatwarning(message, category, filename, lineno, line)))
  yield
  sys.excepthook, threading.excepthook = previous_excepthook, previous_thread_hook
  sys.unraisablehook, warnings.showwarning = previous_unraisable_hook, previous_showwarning
  logging.set_verbosity(previous_level)
  handler.setStream(previous_stream)
  log.close()
