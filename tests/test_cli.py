"""`python -m jaxcnn.main`: user mistakes end in one 'error:' line, exit code 2, no traceback,
and nothing created or changed."""

import json
import os
import subprocess
import sys

import pytest

from conftest import CONFIGS, cli_env, load_config

LENET = str(CONFIGS / 'lenet.py')
ALEXNET = str(CONFIGS / 'alexnet.py')
# `synthetic` data keeps TensorFlow out of a run: these fail before any data is read.
SYNTHETIC = '--config.data.name=synthetic'
FOUR_DEVICES = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}

# (id, arguments, words the one error line must contain[, extra environment])
MISTAKES = [
    ('unknown_key', [f'--config={LENET}', '--config.train.bogus=1'], ['train.bogus']),
    ('bad_value', [f'--config={LENET}', '--config.train.batch_size=abc'], ['batch_size', 'abc']),
    ('unknown_preset', [f'--config={LENET}:nope'],
     ['nope', 'default', 'mnist', 'fashion_mnist', 'bn']),
    ('missing_file', [f'--config={CONFIGS / "no_such_config.py"}'], ['no_such_config.py']),
    ('unknown_model', [f'--config={LENET}', '--config.model.name=lenet6'], ['lenet6', 'lenet5']),
    ('negative_lr', [f'--config={LENET}', '--config.optimizer.learning_rate=-0.1'],
     ['optimizer.learning_rate', '-0.1']),
    # `synthetic` data keeps TensorFlow out of this run; the size check is the model's alone.
    ('alexnet_too_small', [f'--config={ALEXNET}', '--config.data.name=synthetic',
                           '--config.data.image_size=66'], ['image_size=66', '67x67']),
    # A bad model option is named as such, not reported as an input size problem.
    ('unknown_activation', [f'--config={LENET}', '--config.data.name=synthetic',
                            '--config.model.activation=swish'], ['swish']),
    ('unknown_dataset', [f'--config={LENET}', '--config.data.name=cifar'],
     ["'cifar'", "did you mean 'cifar10'"]),
    ('zero_batch_size', [f'--config={LENET}', '--config.train.batch_size=0'],
     ['train.batch_size=0', '> 0']),
    ('dropout_of_one', [f'--config={ALEXNET}', '--config.model.dropout_rate=1.0'],
     ['model.dropout_rate=1.0', '[0, 1)']),
    ('unknown_schedule', [f'--config={LENET}', '--config.optimizer.schedule=linear'],
     ["'linear'", 'cosine']),
    ('unknown_compute_dtype', [f'--config={LENET}', '--config.train.compute_dtype=float16'],
     ['compute_dtype', 'float16', 'bfloat16']),
    ('label_smoothing_of_one', [f'--config={LENET}', '--config.train.label_smoothing=1.0'],
     ['train.label_smoothing=1.0']),
    ('mesh_larger_than_devices', [f'--config={LENET}', SYNTHETIC, '--config.mesh.data=4'],
     ['mesh.data=4', '4 devices', '1 are present']),
    ('batch_not_divisible', [f'--config={LENET}', SYNTHETIC, '--config.train.batch_size=30'],
     ['train.batch_size=30', '4 data-parallel devices', 'multiple of 4'], FOUR_DEVICES),
    ('model_axis_on_non_alexnet', [f'--config={LENET}', SYNTHETIC, '--config.mesh.model=2'],
     ['mesh.model=2', 'alexnet'], FOUR_DEVICES),
    ('unexpected_argument', [f'--config={LENET}', 'extra.png'], ['extra.png', '--config.KEY']),
    ('empty_workdir', [f'--config={LENET}', '--workdir='], ["--workdir '' is empty"]),
    ('blank_workdir', [f'--config={LENET}', '--workdir=  '], ["--workdir '  ' is empty"]),
    ('negative_plateau_patience', [f'--config={LENET}', '--config.optimizer.plateau_patience=-1'],
     ['optimizer.plateau_patience=-1', '> 0']),
    ('unusable_data_dir', [f'--config={LENET}', '--config.data.data_dir=/proc/nope',
                           '--config.data.in_memory=False'],  # in memory, digits read no data_dir
     ['data_dir /proc/nope cannot be used', 'No such file or directory']),
]

@pytest.mark.parametrize('args, words, env', [(m[1], m[2], m[3] if len(m) > 3 else None)
                                               for m in MISTAKES],
                         ids=[m[0] for m in MISTAKES])
def test_mistake_is_one_error_line(tmp_path, run_cli, args, words, env):
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  result = run_cli(cwd, *args, timeout=120, env=env)
  assert result.returncode == 2, (result.stdout, result.stderr)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error:'), lines[0]
  assert len(lines[0]) > len('error: ')
  for word in words:
    assert word in lines[0], (word, lines[0])
  assert 'Traceback' not in result.stderr + result.stdout
  assert sorted(os.listdir(cwd)) == []  # no runs/<name>-<preset> (nor anything else) created


def test_default_workdir():
  from jaxcnn.cli import default_workdir
  assert default_workdir('configs/lenet.py') == os.path.join('runs', 'lenet-default')
  assert default_workdir('configs/lenet.py:bn') == os.path.join('runs', 'lenet-bn')
  assert default_workdir('/abs/configs/alexnet.py:digits') == os.path.join('runs', 'alexnet-digits')


def test_cli_announces_default_workdir(tmp_path, run_cli):
  # `--config configs/lenet.py` relative to the cwd, as the README runs it; the run stops at
  # config validation, after saying where it would have written.
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'lenet.py').write_text((CONFIGS / 'lenet.py').read_text())
  result = run_cli(tmp_path, '--config', 'configs/lenet.py', '--config.optimizer.momentum=1.5',
                   timeout=120)
  assert result.returncode == 2, result.stderr
  assert 'workdir: runs/lenet-default' in result.stdout.splitlines()
  assert result.stderr.strip() == 'error: optimizer.momentum=1.5 must be in [0, 1)'
  assert sorted(os.listdir(tmp_path)) == ['configs']


def test_unprepared_dataset_fails_fast_and_says_how(tmp_path, run_cli):
  empty = tmp_path / 'empty_data_dir'
  empty.mkdir()
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  # timeout=30 is the acceptance bound: the run must fail within 30 s, not wait on a network.
  result = run_cli(cwd, '--config', f'{LENET}:fashion_mnist', f'--config.data.data_dir={empty}',
                   timeout=30)
  assert result.returncode != 0
  error = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(error) == 1, result.stderr
  for word in ("'fashion_mnist'", str(empty), 'jaxcnn.data.prepare'):
    assert word in error[0], (word, error[0])
  assert 'Traceback' not in result.stderr
  assert sorted(os.listdir(cwd)) == []


def _assert_one_error_line(result, *words):
  assert result.returncode == 2, (result.stdout, result.stderr)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  for word in words:
    assert word in lines[0], (word, lines[0])
  assert 'Traceback' not in result.stderr + result.stdout


def test_workdir_of_another_run_is_refused_untouched(tmp_path, run_cli):
  # A workdir as a LeNet run leaves it: its config, and a checkpoint directory.
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '100').mkdir(parents=True)
  saved = load_config('lenet')
  saved.data.name, saved.model.activation = 'synthetic', 'relu'
  (workdir / 'config.json').write_text(saved.to_json_best_effort())
  saved = json.loads((workdir / 'config.json').read_text())
  before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob('*'))
  result = run_cli(tmp_path, f'--config={LENET}', f'--workdir={workdir}', SYNTHETIC, timeout=120)
  _assert_one_error_line(result, "(model.activation: 'relu' -> 'tanh')", str(workdir),
                         '--start_over')
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob('*')) == before
  assert json.loads((workdir / 'config.json').read_text()) == saved


def test_damaged_config_json_is_one_line_and_left_as_it_is(tmp_path, run_cli):
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '100').mkdir(parents=True)
  (workdir / 'config.json').write_text('{"seed": 0, "model": {"na')  # as an editor may leave it
  result = run_cli(tmp_path, f'--config={LENET}', f'--workdir={workdir}', SYNTHETIC, timeout=120)
  assert result.returncode == 2, result.stderr
  assert result.stderr.splitlines() == [
      f'error: {workdir}/config.json is damaged (Unterminated string starting at: line 1 column '
      '23 (char 22)); put back a copy of the config.json the run wrote, or train afresh with '
      'jaxcnn.main --start_over, which moves the run aside']
  assert (workdir / 'config.json').read_text() == '{"seed": 0, "model": {"na'
  assert sorted(os.listdir(workdir)) == ['checkpoints', 'config.json']


def test_unwritable_workdir_is_refused(tmp_path, run_cli):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  result = run_cli(tmp_path, f'--config={LENET}', f'--workdir={blocker / "run"}', SYNTHETIC,
                   timeout=120)
  _assert_one_error_line(result, str(blocker / 'run'), 'not writable')
  assert blocker.read_text() == 'not a directory'


@pytest.mark.parametrize('tool', ['main', 'sweep', 'submit', 'bench', 'summary', 'predict'])
def test_help_exits_0_with_the_usage(tool, tmp_path):
  result = subprocess.run([sys.executable, '-m', f'jaxcnn.{tool}', '--help'], cwd=tmp_path,
                          env=cli_env(), capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert f'python -m jaxcnn.{tool}' in result.stdout  # the module docstring's usage line
  assert result.stderr == ''
  assert sorted(os.listdir(tmp_path)) == []
