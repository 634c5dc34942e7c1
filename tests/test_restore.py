"""Using a trained run: jaxcnn.restore, `python -m jaxcnn.predict` and the restore notebook,
on one 100-step LeNet run on digits (checkpoints at steps 50 and 100)."""

import base64
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import jaxcnn
from conftest import cli_env, load_config, param_count, run_notebook
from jaxcnn import predict, train
from jaxcnn.errors import UserError
from jaxcnn.reporting import read_metrics

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('restore')


@pytest.fixture(scope='session')
def workdir(digits_dir, tmp_path_factory) -> str:
  config = load_config('lenet')
  config.data.data_dir = digits_dir
  config.train.num_steps, config.train.log_every_steps = 100, 25
  config.eval.every_steps = config.checkpoint.every_steps = 50
  workdir = str(tmp_path_factory.mktemp('restore') / 'lenet')
  train.train_and_evaluate(config, workdir)
  return workdir


def eval_top1(workdir: str, step: int) -> float:
  return [r['top1'] for r in read_metrics(workdir) if r['split'] == 'eval' and r['step'] == step][0]


@pytest.fixture(scope='session')
def broken_workdirs(workdir, tmp_path_factory) -> dict[str, str]:
  """Workdirs that cannot be restored, by the problem that a one-line error must name."""
  root = tmp_path_factory.mktemp('broken')
  not_a_run, no_checkpoint, corrupt = root / 'not_a_run', root / 'no_checkpoint', root / 'corrupt'
  damaged_config = root / 'damaged_config'
  not_a_run.mkdir()
  shutil.copytree(workdir, damaged_config)
  (damaged_config / 'config.json').write_text('{"seed": 0, "model": {"na')
  (no_checkpoint / 'checkpoints').mkdir(parents=True)
  shutil.copy(os.path.join(workdir, 'config.json'), no_checkpoint)
  shutil.copytree(workdir, corrupt)
  for directory, _, files in os.walk(corrupt / 'checkpoints'):
    if os.path.basename(directory) == 'd':  # the array data of every checkpoint
      for name in files:
        os.truncate(os.path.join(directory, name), 10)
  return {'missing': str(root / 'missing'), 'not_a_run': str(not_a_run),
          'no_checkpoint': str(no_checkpoint), 'corrupt': str(corrupt),
          'damaged_config': str(damaged_config)}


# (problem, words the one error line must contain)
PROBLEMS = [('missing', ['does not exist']), ('not_a_run', ['config.json is missing']),
            ('no_checkpoint', ['no checkpoint in']),
            ('corrupt', ['no readable checkpoint', 'steps [50, 100]']),
            ('damaged_config', ['config.json is damaged (Unterminated string', 'put back a copy'])]


def test_import_stays_cheap():
  """`import jaxcnn` leaves jax unimported; `jaxcnn.restore` is the function, also after its
  module was imported by name."""
  code = ('import sys, jaxcnn; print("jax" in sys.modules); '
          'from jaxcnn.restored import Restored; print(jaxcnn.restore.__module__)')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=cli_env(), check=True)
  assert result.stdout.split() == ['False', 'jaxcnn.restored']


# The command-line tools and the analysis tool: neither restoring nor training imports them.
TOOLS = {'jaxcnn.main', 'jaxcnn.sweep', 'jaxcnn.bench', 'jaxcnn.predict', 'jaxcnn.summary',
         'jaxcnn.cli', 'jaxcnn.data.stats', 'jaxcnn.data.prepare', 'jaxcnn.data.throughput'}


def jaxcnn_modules_after(code: str) -> set[str]:
  result = subprocess.run(
      [sys.executable, '-c', f'{code}\nimport sys\n'
       'print(" ".join(m for m in sys.modules if m.startswith("jaxcnn")))'],
      capture_output=True, text=True, env=cli_env(), check=True)
  return set(result.stdout.split())


def test_restoring_imports_no_trainer_and_no_tool(workdir):
  """A notebook's `jaxcnn.restore(...)`, predictions included, needs no trainer, optimizer
  or command-line tool."""
  loaded = jaxcnn_modules_after(
      f'import jaxcnn\nrestored = jaxcnn.restore({workdir!r})\n'
      'images, _ = restored.eval_examples(count=2)\nassert restored.predict(images).shape == (2, 10)\n'
      'assert restored.first_layer_filters().shape == (5, 5, 1, 6)')
  assert 'jaxcnn.restored' in loaded and 'jaxcnn.models' in loaded
  assert not loaded & ({'jaxcnn.train', 'jaxcnn.steps', 'jaxcnn.optim', 'jaxcnn.parallel'} | TOOLS)


def test_training_imports_no_tool():
  loaded = jaxcnn_modules_after('import jaxcnn.train')
  assert 'jaxcnn.steps' in loaded and not loaded & TOOLS


def test_restore_predicts_what_the_run_evaluated(workdir):
  restored = jaxcnn.restore(workdir)
  assert restored.step == 100
  assert param_count(restored.variables['params']) == 61_706
  assert restored.label_names == [str(i) for i in range(10)]
  images, labels = restored.eval_examples()
  probabilities = restored.predict(images)
  assert probabilities.shape == (360, 10)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
  assert np.mean(probabilities.argmax(axis=1) == labels) == eval_top1(workdir, 100)
  # One image of another size than the dataset's 8x8: resized as evaluation resizes.
  single = restored.predict([np.kron(images[0], np.ones((3, 5, 1), np.uint8))])
  assert single.shape == (1, 10)

  earlier = jaxcnn.restore(workdir, step=50)
  assert earlier.step == 50
  assert np.mean(earlier.predict(images).argmax(axis=1) == labels) == eval_top1(workdir, 50)
  assert restored.first_layer_filters().shape == (5, 5, 1, 6)


@pytest.mark.parametrize('problem, words', PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_restore_names_the_problem(broken_workdirs, problem, words):
  with pytest.raises(UserError) as error:
    jaxcnn.restore(broken_workdirs[problem])
  message = str(error.value)
  assert '\n' not in message and broken_workdirs[problem] in message
  for word in words:
    assert word in message, (word, message)


def test_restore_of_a_step_never_saved(workdir):
  with pytest.raises(UserError, match='no checkpoint at step 7 .*saved steps: 50, 100'):
    jaxcnn.restore(workdir, step=7)


def predict_cli(*args: str):
  return subprocess.run([sys.executable, '-m', 'jaxcnn.predict', *args], capture_output=True,
                        text=True, env=cli_env(), timeout=300)


def test_predict_cli_reports_a_bad_file_and_predicts_the_rest(workdir, tmp_path):
  import tensorflow as tf
  restored = jaxcnn.restore(workdir)
  images, _ = restored.eval_examples(count=2)
  paths = [str(tmp_path / 'first.png'), str(tmp_path / 'notes.txt'), str(tmp_path / 'second.png')]
  for path, image in zip(paths[::2], images):
    tf.io.write_file(path, tf.io.encode_png(image))
  with open(paths[1], 'w') as f:
    f.write('not an image\n')

  result = predict_cli('--workdir', workdir, *paths)
  assert result.returncode == 1, result.stderr
  assert result.stderr.splitlines() == [
      f'error: {paths[1]}: not a readable image (Unknown image file format. One of JPEG, '
      'JPEG XL, PNG, GIF, BMP, WebP required.); skipped']
  header, *lines = result.stdout.splitlines()
  assert header == f"lenet5 at step 100 of {workdir}; classes: the dataset's label names"
  assert len(lines) == 2 * 6 and [lines[0], lines[6]] == paths[::2]
  for block, probabilities in zip((lines[1:6], lines[7:12]), restored.predict(images)):
    printed = [re.fullmatch(r' *([\d.]+)%  (\d)', line).groups() for line in block]
    top = probabilities.argsort()[::-1][:5]
    assert [int(name) for _, name in printed] == list(top)
    np.testing.assert_allclose([float(p) for p, _ in printed], 100 * probabilities[top], atol=0.006)


@pytest.mark.parametrize('problem, words', PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_predict_names_the_problem(broken_workdirs, tmp_path, capsys, problem, words):
  image = tmp_path / 'image.png'
  image.write_bytes(b'')  # never read: the workdir fails first
  with pytest.raises(UserError) as error:
    predict.predict(broken_workdirs[problem], None, [str(image)])
  for word in words:
    assert word in str(error.value), (word, str(error.value))
  assert capsys.readouterr().out == ''


def test_predict_cli_reports_a_bad_workdir_in_one_line(broken_workdirs, tmp_path):
  image = tmp_path / 'image.png'
  image.write_bytes(b'')
  result = predict_cli('--workdir', broken_workdirs['corrupt'], str(image))
  assert result.returncode == 2
  # orbax's threads may print tracebacks as the process ends, even mid-line: search the text.
  errors = re.findall(r'^error: .*', result.stderr, re.MULTILINE)
  assert len(errors) == 1 and errors[0].startswith(
      f"error: no readable checkpoint in {broken_workdirs['corrupt']}/checkpoints (steps [50, 100] "
      'all failed); start over in a new --workdir')
  assert result.stdout == ''


def png_size(png: bytes) -> tuple[int, int]:
  return struct.unpack('>II', png[16:24])


def test_notebook_runs_against_a_run(workdir, monkeypatch):
  code, text = run_notebook(workdir, monkeypatch)
  right = round(eval_top1(workdir, 100) * 360)
  assert f'lenet5 trained on digits to step 100 ({workdir})' in text
  assert f'{right} of 360 test images right' in text
  assert f"the run's evaluation at step 100: top-1 {100 * right / 360:.2f}%" in text
  assert f'{right} of 360 on the diagonal' in text
  assert '6 filters of 5x5x1' in text
  # Each figure cell shows one figure, with this many axes (panels).
  expected = {'predictions': 32, 'confusion': 1, 'curves': 2, 'filters': 6}
  figures = {}
  for cell in code:
    for output in cell.outputs:
      if 'image/png' in output.get('data', {}):
        axes = int(re.search(r'with (\d+) Axes', output['data']['text/plain']).group(1))
        figures.setdefault(cell.metadata['tags'][0], []).append(
            (axes, png_size(base64.b64decode(output['data']['image/png']))))
  assert sorted(figures) == sorted(expected)
  for tag, axes in expected.items():
    assert len(figures[tag]) == 1 and figures[tag][0][0] == axes, (tag, figures[tag])
    width, height = figures[tag][0][1]
    assert width > 200 and height > 100, (tag, width, height)
