"""Prepared datasets in a data_dir: training offline from one, the stats command, exact
multi-crop evaluation on several devices, and the pipeline's throughput measurement."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, UNOPTIMIZED, cli_env, load_config, without_tensorflow

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = [pytest.mark.xdist_group('datasets'),
              pytest.mark.usefixtures('unoptimized')]  # XLA's optimizations off (conftest)

TRAIN, TEST = 300, 100  # neither divides the batch sizes below


def digits_as_mnist():
  """sklearn's digits at MNIST's format (28x28, a 2-px black border), as (image, label)s."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)
  images = np.pad(np.kron(images, np.ones((3, 3), np.uint8)), ((0, 0), (2, 2), (2, 2)))[..., None]
  return list(zip(images, digits.target.tolist()))


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  """A data_dir with `mnist` prepared: TFDS's own MNIST files, holding 400 digits."""
  from jaxcnn.data.standin import write_dataset
  data_dir = str(tmp_path_factory.mktemp('mnist_tfds'))
  examples = digits_as_mnist()
  write_dataset('mnist', data_dir, {'train': examples[:TRAIN], 'test': examples[-TEST:]})
  return data_dir


def test_trains_offline_from_a_prepared_data_dir(mnist_dir, tmp_path, capsys, monkeypatch):
  import socket

  from jaxcnn import train
  from jaxcnn.reporting import read_metrics

  def no_network(*args, **kwargs):
    raise AssertionError('training opened a network connection')

  monkeypatch.setattr(socket.socket, 'connect', no_network)
  config = load_config('lenet', 'mnist')
  config.data.data_dir, config.data.download = mnist_dir, False
  config.train.batch_size, config.train.num_steps = 32, 60
  config.eval.batch_size, config.eval.crops = 48, 10
  config.train.log_every_steps = config.checkpoint.every_steps = config.eval.every_steps = 60
  final = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert final['num_examples'] == TEST and final['crops'] == 10
  assert final['top1'] > 0.5 and final['center_top1'] > 0.5  # chance: 0.1
  evals = [r for r in read_metrics(tmp_path / 'run') if r['split'] == 'eval']
  assert evals == [{'step': 60, 'split': 'eval', **final}]
  last_line = capsys.readouterr().out.strip().splitlines()[-1]
  assert (f"top-1 {100 * final['top1']:.2f}% 10-crop, {100 * final['center_top1']:.2f}% "
          'centre crop') in last_line
  assert f'{TEST} examples, step 60' in last_line


READ_ARRAYS = '''
import sys
from jaxcnn.data import arrays
splits = arrays.load('mnist', sys.argv[1])
print(*(f'{split} {images.shape} {labels.sum()}' for split, (images, labels) in splits.items()),
      sep='; ')
'''


def test_a_prepared_dataset_is_cached_as_arrays_that_load_without_tensorflow(mnist_dir, tmp_path):
  from jaxcnn.data import arrays
  from jaxcnn.data.datasets import ARRAYS_FILE, prepared_files
  splits = arrays.load('mnist', mnist_dir)  # through TFDS the first time, then the cache
  assert len(prepared_files('mnist', mnist_dir, ARRAYS_FILE)) == 1
  assert [(split, images.shape, images.dtype, labels.dtype)
          for split, (images, labels) in splits.items()] == [
              ('train', (TRAIN, 28, 28, 1), np.uint8, np.int32),
              ('test', (TEST, 28, 28, 1), np.uint8, np.int32)]
  result = subprocess.run([sys.executable, '-c', READ_ARRAYS, mnist_dir], capture_output=True,
                          text=True, env=cli_env(**without_tensorflow(tmp_path)))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == '; '.join(
      f'{split} {images.shape} {labels.sum()}' for split, (images, labels) in splits.items())
  # Without the cache, and without TensorFlow to read the TFDS files: the error says how.
  uncached = tmp_path / 'uncached'
  shutil.copytree(mnist_dir, uncached)
  os.remove(prepared_files('mnist', str(uncached), ARRAYS_FILE)[0])
  result = subprocess.run([sys.executable, '-c', READ_ARRAYS, str(uncached)], capture_output=True,
                          text=True, env=cli_env(**without_tensorflow(tmp_path)))
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"jaxcnn.errors.UserError: dataset 'mnist' has no {ARRAYS_FILE} in data_dir {uncached} ")
  assert 'python -m jaxcnn.data.prepare mnist --data_dir DIR` where TensorFlow is installed' in (
      result.stderr)


def test_stats_command_stores_statistics_the_pipeline_uses(digits_dir, tmp_path):
  from jaxcnn import data as input_data
  from jaxcnn.data.datasets import DATASETS, dataset_stats
  from jaxcnn.data.pipeline import prepared_builder
  from jaxcnn.data.standin import write_dataset
  from jaxcnn.data.stats import compute_statistics, write_statistics

  digits = compute_statistics(prepared_builder('digits', digits_dir, download=False))
  np.testing.assert_allclose(digits['mean'], DATASETS['digits'].mean, atol=2e-4)
  np.testing.assert_allclose(digits['std'], DATASETS['digits'].std, atol=2e-4)
  np.testing.assert_allclose(digits['eigval'], np.square(digits['std']), rtol=1e-9)
  assert digits['pixels'] == 1437 * 64

  # RGB pixels that vary mostly along `direction`: the first eigenvector must be it.
  rng = np.random.default_rng(0)
  direction = np.array([0.48, 0.64, 0.6])
  def images(count):
    for _ in range(count):
      t = rng.uniform(-60, 60, (32, 32, 1))
      pixels = 128 + t * direction + rng.normal(0, 3, (32, 32, 3))
      yield np.clip(np.round(pixels), 0, 255).astype(np.uint8), int(rng.integers(10))
  data_dir = str(tmp_path / 'tfds')
  write_dataset('cifar10', data_dir, {'train': images(24), 'test': images(8)})
  path = write_statistics('cifar10', data_dir)
  assert os.path.dirname(path) == str(prepared_builder('cifar10', data_dir, False).data_dir)
  with open(path) as f:
    stored = json.load(f)
  eigvec = np.asarray(stored['eigvec'])
  assert abs(abs(eigvec[:, 0] @ direction) - 1) < 1e-3
  np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-9)
  assert stored['eigval'][0] > 50 * stored['eigval'][1]
  assert dataset_stats('cifar10', data_dir).eigval == tuple(stored['eigval'])

  # The pipeline normalizes with the stored statistics: the train pixels come out standardized.
  config = load_config('resnet', 'cifar_resnet20')
  config.data.data_dir, config.data.augment, config.train.batch_size = data_dir, ('resize',), 24
  pixels = next(input_data.create(config).train_batches())['image'].reshape(-1, 3)
  np.testing.assert_allclose(pixels.mean(axis=0), 0, atol=1e-3)
  np.testing.assert_allclose(pixels.std(axis=0), 1, atol=1e-3)


EVAL_ON_ONE_AND_FOUR_DEVICES = '''
import json, os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
sys.path.insert(0, sys.argv[2])
from conftest import load_config
from jaxcnn import train
results = []
for devices, batch_size in ((1, 128), (4, 48)):
  config = load_config('lenet')
  config.data.data_dir, config.eval.crops = sys.argv[1], 10
  config.mesh.data, config.eval.batch_size = devices, batch_size
  run = train.setup(config)
  results.append({'devices': run.mesh.shape['data'],
                  **train.evaluate(run.eval_step, run.state, run.data, run.mesh)})
print(json.dumps(results))
'''


def test_ten_crop_evaluation_counts_each_example_once_on_any_devices(digits_dir):
  """360 test digits in global batches of 128 on one device (2.8 batches) or of 48 over 4
  devices (7.5 batches): the same 360 examples and the same metrics."""
  result = subprocess.run([sys.executable, '-c', EVAL_ON_ONE_AND_FOUR_DEVICES, digits_dir,
                           str(REPO / 'tests')], capture_output=True, text=True,
                          env=cli_env(**UNOPTIMIZED))
  assert result.returncode == 0, result.stderr[-3000:]
  one, four = json.loads(result.stdout.strip().splitlines()[-1])
  assert (one.pop('devices'), four.pop('devices')) == (1, 4)
  assert four['num_examples'] == one['num_examples'] == 360
  for key in ('top1', 'top5', 'center_top1', 'center_top5'):
    assert round(four[key] * 360) == round(one[key] * 360), key
  assert four['loss'] == pytest.approx(one['loss'], rel=1e-5)


def test_throughput_measures_the_configured_batches(digits_dir):
  from jaxcnn.data.throughput import measure
  config = load_config('lenet')
  config.data.data_dir = digits_dir
  result = measure(config, batches=3)
  assert (result['batches'], result['batch_size']) == (3, 32)
  assert result['images_per_sec'] == pytest.approx(3 * 32 / result['seconds'])
