"""Both input paths (`jaxcnn.data.create`) on digits: shapes, normalization, eval coverage,
determinism and exact resumption at any step, in memory and through tf.data; tf.data's
per-process shards (the in-memory path makes global batches, the same on any number of
processes: test_parallel)."""

import collections
import itertools

import numpy as np
import pytest

from conftest import load_config
from jaxcnn import data as input_data
from jaxcnn.data.datasets import DATASETS

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('data')

TRAIN, TEST = 1437, 360
# The digits at their stored 8x8, resized (the identity) without augmentation, so each
# example can be traced back; the other tests keep LeNet's random crops.
NATIVE = {'data.image_size': 8, 'data.augment': ('resize',), 'data.resize_size': 0}


def make_config(data_dir, in_memory, **overrides):
  config = load_config('lenet')
  config.data.data_dir, config.data.in_memory = data_dir, in_memory
  for key, value in overrides.items():
    section, field = key.split('.')
    config[section][field] = value
  return config


def take(iterator, n):
  return list(itertools.islice(iterator, n))


def raw_examples(data_dir, split) -> collections.Counter:
  """(8x8 uint8 image bytes, label) of every example of a split, as a multiset."""
  import tensorflow_datasets as tfds
  builder = tfds.builder('digits', data_dir=data_dir)
  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  return collections.Counter(
      (image.tobytes(), int(label)) for image, label in zip(data['image'], data['label']))


def to_raw(images, labels) -> collections.Counter:
  """Inverts the pipeline's normalization at image_size=8 (where the resize is the identity)."""
  spec = DATASETS['digits']
  pixels = (images.astype(np.float64) * spec.std[0] + spec.mean[0]) * 255
  assert np.abs(pixels - np.round(pixels)).max() < 1e-3  # really an identity resize
  pixels = np.round(pixels).astype(np.uint8)
  return collections.Counter((image.tobytes(), int(label)) for image, label in zip(pixels, labels))


@pytest.fixture(scope='module', params=[True, False], ids=['in_memory', 'tf.data'])
def in_memory(request):
  return request.param


@pytest.fixture(scope='module')
def data_128(digits_dir, in_memory):
  """batch 128 -> 11 steps per epoch, so an epoch boundary is a dozen batches away."""
  return input_data.create(make_config(digits_dir, in_memory, **{'train.batch_size': 128}))


@pytest.fixture(scope='module')
def data_8x8(digits_dir, in_memory):
  """Native resolution: the resize is the identity, so each example can be traced back."""
  return input_data.create(make_config(digits_dir, in_memory,
                                       **{'train.batch_size': 128, **NATIVE}))


def test_train_batch_shapes(digits_dir, in_memory):
  data = input_data.create(make_config(digits_dir, in_memory))  # the lenet default: batch 32, 32x32
  assert (data.num_classes, data.channels, data.eval_examples) == (10, 1, TEST)
  assert data.steps_per_epoch == TRAIN // 32 == 44
  batch = next(data.train_batches())
  assert batch['image'].shape == (32, 32, 32, 1)
  assert batch['image'].dtype == np.float32
  assert batch['label'].shape == (32,)
  assert batch['label'].dtype == np.int32
  assert 0 <= batch['label'].min() and batch['label'].max() <= 9
  evals = list(data.eval_batches())  # eval.batch_size 128 does not divide 360
  assert [b['image'].shape for b in evals] == [(128, 32, 32, 1)] * 3
  assert sum(int(b['mask'].sum()) for b in evals) == TEST


def epoch_pixels(data) -> np.ndarray:
  return np.concatenate([b['image'] for b in take(data.train_batches(), data.steps_per_epoch)])


def test_normalization_is_exact_at_native_size(data_8x8):
  # datasets.py's digits mean/std are the train split's pixel statistics at 8x8 (to 4 digits).
  # One epoch drops the last 1437 - 11 * 128 = 29 examples, which moves them by < 0.01.
  pixels = epoch_pixels(data_8x8).astype(np.float64)
  assert pixels.shape == (11 * 128, 8, 8, 1)
  assert abs(pixels.mean()) < 0.01
  assert abs(pixels.std() - 1) < 0.01


def test_normalization_at_training_size(digits_dir, in_memory):
  # At 32x32 (resized whole: LeNet's random crops would drop part of the dark border and
  # raise the mean) the 8x8 images are upsampled bilinearly. Interpolation keeps the mean (to within
  # the border handling), so it stays near 0; but every new pixel is a weighted average of
  # neighbours, which lowers the variance: the std is about 0.86, not 1 (see the report).
  # The band accepts both this and statistics recomputed at the training size.
  data = input_data.create(make_config(
      digits_dir, in_memory, **{'train.batch_size': 128, 'data.augment': ('resize',), 'data.resize_size': 0}))
  pixels = epoch_pixels(data).astype(np.float64)
  assert pixels.shape == (11 * 128, 32, 32, 1)
  assert abs(pixels.mean()) < 0.05
  assert 0.80 < pixels.std() < 1.05


def test_eval_covers_each_test_example_once(digits_dir, data_8x8):
  assert data_8x8.eval_steps == 3  # 360 = 128 + 128 + 104: the last batch is padded
  batches = list(data_8x8.eval_batches())
  assert len(batches) == 3
  for batch in batches:
    assert batch['image'].shape == (128, 8, 8, 1)
    assert batch['mask'].dtype == bool
  assert [int(b['mask'].sum()) for b in batches] == [128, 128, 104]
  assert batches[-1]['mask'][:104].all() and not batches[-1]['mask'][104:].any()
  assert np.all(batches[-1]['image'][104:] == 0)
  images = np.concatenate([b['image'][b['mask']] for b in batches])
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  assert to_raw(images, labels) == raw_examples(digits_dir, 'test')
  # The same, twice: evaluation is a fixed pass over the split.
  again = list(data_8x8.eval_batches())
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a['image'], b['image'])


def test_epoch_is_a_permutation_reshuffled_each_epoch(digits_dir, data_8x8):
  batches = take(data_8x8.train_batches(), 2 * data_8x8.steps_per_epoch)
  first, second = batches[:11], batches[11:]

  def examples(bs):
    return to_raw(np.concatenate([b['image'] for b in bs]), np.concatenate([b['label'] for b in bs]))

  train = raw_examples(digits_dir, 'train')
  for epoch in (first, second):
    seen = examples(epoch)
    assert sum(seen.values()) == 11 * 128
    assert not seen - train  # no example repeats within an epoch
  assert not np.array_equal(first[0]['label'], second[0]['label'])


def test_same_seed_same_batches_other_seed_others(digits_dir, in_memory, data_128):
  again = input_data.create(make_config(digits_dir, in_memory, **{'train.batch_size': 128}))
  for a, b in zip(take(data_128.train_batches(), 3), take(again.train_batches(), 3)):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  config = make_config(digits_dir, in_memory, **{'train.batch_size': 128})
  config.seed = 1
  other = input_data.create(config)
  assert not np.array_equal(next(other.train_batches())['label'],
                            next(data_128.train_batches())['label'])


def test_start_step_yields_the_batch_at_that_position(data_128):
  assert data_128.steps_per_epoch == TRAIN // 128 == 11
  sequence = take(data_128.train_batches(0), 14)
  for k in (1, 5, 10, 11, 12, 13):  # 11 is the first batch of the second epoch
    resumed = take(data_128.train_batches(start_step=k), 14 - k)
    for offset, batch in enumerate(resumed):
      np.testing.assert_array_equal(batch['image'], sequence[k + offset]['image'],
                                    err_msg=f'start_step={k}, batch {k + offset}')
      np.testing.assert_array_equal(batch['label'], sequence[k + offset]['label'])


def test_process_shares_split_the_data(digits_dir):
  config = make_config(digits_dir, False, **{'train.batch_size': 128, **NATIVE})
  assert config.eval.batch_size == 128
  shares = [input_data.create(config, process_index=i, process_count=2) for i in (0, 1)]
  # Every process must run the same number of steps (they are one SPMD program).
  assert shares[0].steps_per_epoch == shares[1].steps_per_epoch > 0
  assert shares[0].eval_steps == shares[1].eval_steps >= 3  # 180 or more per process / 64
  eval_parts, train_parts = [], []
  for share in shares:
    batches = list(share.eval_batches())
    assert len(batches) == share.eval_steps
    assert all(b['image'].shape == (64, 8, 8, 1) for b in batches)  # half of each global batch
    eval_parts.append(to_raw(np.concatenate([b['image'][b['mask']] for b in batches]),
                             np.concatenate([b['label'][b['mask']] for b in batches])))
    epoch = take(share.train_batches(), share.steps_per_epoch)
    assert all(b['image'].shape == (64, 8, 8, 1) for b in epoch)
    train_parts.append(to_raw(np.concatenate([b['image'] for b in epoch]),
                              np.concatenate([b['label'] for b in epoch])))
  # Together the eval shares are the test split, each example in exactly one share.
  assert sum(eval_parts[0].values()) + sum(eval_parts[1].values()) == TEST
  assert eval_parts[0] + eval_parts[1] == raw_examples(digits_dir, 'test')
  # In an epoch, the train shares are disjoint parts of the train split.
  assert not (train_parts[0] + train_parts[1]) - raw_examples(digits_dir, 'train')


def test_augmented_global_batches_do_not_depend_on_the_process_count(digits_dir):
  # LeNet's random crops: each example's crop follows its index in the epoch, not the process.
  config = make_config(digits_dir, False, **{'train.batch_size': 128})
  whole = input_data.create(config)
  assert tuple(config.data.augment) == ('resize_shorter', 'random_crop')
  shares = [take(input_data.create(config, process_index=i, process_count=2).train_batches(10), 2)
            for i in (0, 1)]
  for step, batch in enumerate(take(whole.train_batches(10), 2)):  # 11: the next epoch
    np.testing.assert_array_equal(
        np.concatenate([shares[0][step]['image'], shares[1][step]['image']]), batch['image'])
