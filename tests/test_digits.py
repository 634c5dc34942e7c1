"""The offline `digits`: the TFDS builder's sizes, stratified split, pixel format and
reproducibility; the in-memory path's arrays of the same split; the quick start without
TensorFlow."""

import collections

import numpy as np
import pytest

from conftest import REPO, without_tensorflow


def read_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All (images, labels) of a split, in the builder's file order."""
  import tensorflow_datasets as tfds

  from jaxcnn.data.pipeline import prepared_builder
  builder = prepared_builder('digits', data_dir, download=False)
  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return data['image'], data['label']


@pytest.fixture(scope='module')
def splits(digits_dir):
  return {split: read_split(digits_dir, split) for split in ('train', 'test')}


def test_split_sizes_and_info(digits_dir, splits):
  from jaxcnn.data.pipeline import prepared_builder
  info = prepared_builder('digits', digits_dir, download=False).info
  assert info.name == 'digits'
  assert info.splits['train'].num_examples == 1437
  assert info.splits['test'].num_examples == 360
  assert info.features['label'].num_classes == 10
  assert len(splits['train'][1]) == 1437
  assert len(splits['test'][1]) == 360


def test_split_is_stratified(splits):
  train = collections.Counter(splits['train'][1].tolist())
  test = collections.Counter(splits['test'][1].tolist())
  assert sorted(train) == list(range(10))
  assert sorted(test) == list(range(10))
  for label in range(10):
    total = train[label] + test[label]
    assert abs(test[label] - 0.2 * total) <= 1, (label, train[label], test[label])


def test_images_are_uint8_8x8x1_scaled_to_255(splits):
  levels = set(np.round(np.arange(17) * 255 / 16).astype(np.uint8).tolist())  # 0..16 -> 0..255
  for images, _ in splits.values():
    assert images.dtype == np.uint8
    assert images.shape[1:] == (8, 8, 1)
    assert images.max() == 255
    assert images.min() == 0
    assert set(np.unique(images).tolist()) <= levels


def test_splits_partition_sklearn_digits(splits):
  from sklearn.datasets import load_digits
  digits = load_digits()
  expected = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]

  def examples(images, labels):
    return collections.Counter((image.tobytes(), int(label)) for image, label in zip(images, labels))

  both = examples(*splits['train']) + examples(*splits['test'])
  assert both == examples(expected, digits.target)


def test_second_prepare_gives_the_same_split(tmp_path, splits):
  from jaxcnn.data.pipeline import prepared_builder
  other = tmp_path / 'tfds_again'
  assert prepared_builder('digits', str(other), download=False).is_prepared()
  for split in ('train', 'test'):
    images, labels = read_split(str(other), split)
    # Same examples in the same file order: the train order the pipeline shuffles from.
    np.testing.assert_array_equal(images, splits[split][0])
    np.testing.assert_array_equal(labels, splits[split][1])


def test_in_memory_arrays_are_the_tfds_split(splits):
  """scikit-learn's arrays (no TensorFlow) hold the builder's examples (in scikit-learn's
  order; TFDS orders its files by a hash of the keys)."""
  from jaxcnn.data import arrays
  in_memory = arrays.load('digits', data_dir=None)

  def examples(images, labels):
    return collections.Counter((image.tobytes(), int(label)) for image, label in zip(images, labels))

  for split in ('train', 'test'):
    assert in_memory[split][0].dtype == np.uint8 and in_memory[split][1].dtype == np.int32
    assert examples(*in_memory[split]) == examples(*splits[split])


def test_a_prepared_data_dir_caches_the_same_arrays_in_the_same_order(digits_dir):
  """Runs on a prepared data_dir read its cache (without importing scikit-learn): the arrays
  that runs without one take from scikit-learn, bit for bit."""
  from jaxcnn.data import arrays
  from jaxcnn.data.datasets import ARRAYS_FILE, prepared_files
  assert len(prepared_files('digits', digits_dir, ARRAYS_FILE)) == 1
  cached, direct = arrays.load('digits', digits_dir), arrays.load('digits', data_dir=None)
  for split in ('train', 'test'):
    for ours, theirs in zip(cached[split], direct[split]):
      assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
      np.testing.assert_array_equal(ours, theirs)


def test_quick_start_trains_without_tensorflow_and_prints_its_own_lines_first(tmp_path, run_cli):
  """The quick start's command, cut to a few steps, where `import tensorflow` fails."""
  result = run_cli(tmp_path, '--config', str(REPO / 'configs' / 'lenet.py'),
                   '--workdir', str(tmp_path / 'run'), '--config.train.num_steps=3',
                   '--config.train.log_every_steps=3', '--config.eval.every_steps=3',
                   env=without_tensorflow(tmp_path / 'no_tf'))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stderr == ''
  lines = result.stdout.splitlines()
  # First the run's own lines: where this session's processes have not tuned LeNet's
  # convolutions yet, the two lines of their tuning, then the start of training.
  first = [line.startswith('conv tuning: ') for line in lines].index(False)
  assert first in (0, 2)
  assert lines[first] == f"training for 3 steps (44 per epoch) in {tmp_path / 'run'}"
  assert lines[-1].startswith('final eval top-1 ') and '360 examples, step 3' in lines[-1]
