"""experiments/benchmarks/gpu_check.sh: with --cpu-smoke it runs end to end on CPU, where
neither TensorFlow nor PyTorch can be imported, and writes its figures; without a GPU and
without the flag it stops at once with one error line."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, UNOPTIMIZED, cli_env, load_config, without_tensorflow

GPU_CHECK = REPO / 'experiments' / 'benchmarks' / 'gpu_check.sh'


def without_tensorflow_or_torch(directory) -> dict[str, str]:
  env = without_tensorflow(directory)
  (directory / 'torch').mkdir()
  (directory / 'torch' / '__init__.py').write_text("raise ImportError('no torch here')\n")
  return env


def test_cpu_smoke_runs_every_part_and_writes_the_figures(tmp_path):
  out = tmp_path / 'figures.json'
  # 2 devices for the towers; their collectives on 2 busy cores can pass XLA's 40 s before it
  # aborts the process as stuck (seen here once in four runs): slow, not stuck.
  # Unoptimized: its steps are too few for XLA's optimizations to pay (26 s against 16).
  env = cli_env(**without_tensorflow_or_torch(tmp_path / 'blocked'), PYTHON=sys.executable,
                XLA_FLAGS='--xla_force_host_platform_device_count=2 '
                          '--xla_cpu_collective_call_terminate_timeout_seconds=600',
                **UNOPTIMIZED)
  result = subprocess.run([str(GPU_CHECK), '--cpu-smoke', '--out', str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines()[0].endswith('backend cpu, devices: 0: cpu; 1: cpu')
  figures = json.loads(out.read_text())
  assert (figures['backend'], figures['cpu_smoke'], len(figures['devices'])) == ('cpu', True, 2)
  quick_start = figures['quick_start']
  assert (quick_start['data'], quick_start['steps']) == ('digits', 2)
  assert 0 <= quick_start['top1'] <= 1 and quick_start['train_images_per_sec'] > 0
  benchmarks = figures['benchmarks']
  assert sorted(benchmarks) == ['alexnet_bfloat16', 'alexnet_float32', 'cifar_resnet20',
                                'resnet50_bfloat16', 'resnet50_float32']
  assert [name for name, result in benchmarks.items() if 'skipped' in result] == [
      'resnet50_bfloat16', 'resnet50_float32', 'alexnet_float32', 'alexnet_bfloat16']
  cifar = benchmarks['cifar_resnet20']
  assert cifar['synthetic_stand_in'] is True  # no cifar10 prepared in the tests' data_dir
  assert (cifar['batch'], cifar['steps'], cifar['devices']) == (4, 1, 1)
  assert cifar['train_images_per_sec'] > 0 and 0 < cifar['mfu'] <= 1
  towers = figures['towers']
  assert towers['agree'] is True and towers['steps'] == 2
  assert towers['losses_towers'] == pytest.approx(towers['losses_one_device'], rel=1e-5)
  assert towers['max_param_relative_difference'] < 1e-5


def test_without_a_gpu_it_asks_for_cuda_jax_or_the_smoke_flag(tmp_path):
  result = subprocess.run([str(GPU_CHECK)], cwd=tmp_path, env=cli_env(PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      "error: jax sees no GPU (backend cpu); install jax with CUDA (pip install -e '.[gpu]'), "
      'or pass --cpu-smoke to check this script on CPU']
  assert result.stdout == '' and not (tmp_path / 'gpu_check.json').exists()


def test_the_quick_start_takes_synthetic_images_where_scikit_learn_is_absent(monkeypatch):
  from jaxcnn.config import load_module
  gpu_check = load_module(str(REPO / 'experiments' / 'benchmarks' / 'gpu_check.py'))
  config = load_config('lenet')
  monkeypatch.setitem(sys.modules, 'sklearn', None)  # `import sklearn` raises ImportError
  gpu_check.digits_or_synthetic(config)
  assert (config.data.name, config.eval.batch_size) == ('synthetic', 1000)
