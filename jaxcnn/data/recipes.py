"""The train augmentation ops by name, the rules of a recipe, the statistics it normalizes
with and the order of the 10-crop views, without TensorFlow: the config checks, both input
paths and the eval step use them. The tf.data path runs the ops with TensorFlow
(jaxcnn/data/augment.py and preprocess.py), the in-memory path with JAX (jax_augment.py and
jax_preprocess.py).
"""

import numpy as np

from jaxcnn.data.datasets import DatasetSpec, dataset_stats
from jaxcnn.errors import UserError

# Multi-crop testing's views, in order: the four corner crops and the centre crop, then (10
# crops) the same five mirrored. The centre crop alone is the single-crop evaluation.
CENTER_VIEW = 4

# Each op and whether it sets the image's size: 'final' makes it image_size x image_size,
# 'resizes' leaves another size for a later op to crop, None keeps the size.
OPS = {
    'resize': 'final',
    'resize_shorter': 'resizes',
    'pad': 'resizes',
    'random_crop': 'final',
    'random_resized_crop': 'final',
    'flip': None,
    'pca_lighting': None,
}


def recipe_problem(data) -> str | None:
  """What is wrong with the `data` config block's train recipe, or None."""
  ops = tuple(data.augment)
  unknown = [op for op in ops if op not in OPS]
  if unknown:
    return (f"unknown op '{unknown[0]}' in data.augment={ops}; known: {', '.join(OPS)}")
  sizing = [op for op in ops if OPS[op]]
  if not sizing or OPS[sizing[-1]] != 'final':
    return (f'data.augment={ops} must end its resizing with resize, random_crop or '
            'random_resized_crop, which give image_size x image_size images')
  if 'resize_shorter' in ops and not data.resize_size:
    return 'data.augment has resize_shorter but data.resize_size=0; set data.resize_size'
  if data.resize_size and data.resize_size < data.image_size:
    return (f'data.resize_size={data.resize_size} is smaller than data.image_size='
            f'{data.image_size}, the crops taken from it; set it >= image_size (or 0)')
  if data.pad < 0:
    return f'data.pad={data.pad} must be >= 0'
  area, aspect = tuple(data.crop_area), tuple(data.crop_aspect)
  if len(area) != 2 or not 0 < area[0] <= area[1] <= 1:
    return f'data.crop_area={area} must be (low, high) with 0 < low <= high <= 1'
  if len(aspect) != 2 or not 0 < aspect[0] <= aspect[1]:
    return f'data.crop_aspect={aspect} must be (low, high) with 0 < low <= high'
  if data.lighting_std < 0:
    return f'data.lighting_std={data.lighting_std} must be >= 0'
  return None


def crop_problem(data, stored_shape) -> str | None:
  """Why the recipe would crop an image_size square out of a smaller image, given the
  dataset's stored image shape (None for a side that varies), or None."""
  height, width = stored_shape[:2]
  side = None if None in (height, width) else min(height, width)  # the shorter side, if known
  for op in data.augment:
    if op == 'random_crop' and side is not None and side < data.image_size:
      return (f'data.augment={tuple(data.augment)} crops {data.image_size}x{data.image_size} '
              f'out of the {height}x{width} images of {data.name} when they are {side} px a side; '
              'resize them first (resize or resize_shorter before random_crop)')
    if OPS[op] == 'final':
      side = data.image_size
    elif op == 'resize_shorter':
      side = data.resize_size
    elif op == 'pad' and side is not None:
      side += 2 * data.pad
  return None


def statistics(config) -> DatasetSpec:
  """The dataset's spec with the statistics that `config.data.data_dir` stores, if any."""
  return dataset_stats(config.data.name, config.data.data_dir)


def normalization(config) -> tuple[np.ndarray, np.ndarray]:
  """float32 per-channel (mean, std) that images are normalized with: `data.mean` and
  `data.std` where set, else the dataset's statistics."""
  stats = statistics(config)
  return (np.asarray(config.data.mean or stats.mean, np.float32),
          np.asarray(config.data.std or stats.std, np.float32))


def check_dataset(config, stored_shape) -> None:
  """Fails (one line) unless the recipe suits the dataset: the statistics it needs are there
  and no crop is larger than the images it is cut from (`stored_shape`: a stored image's
  shape, None for a side that varies)."""
  if 'pca_lighting' in config.data.augment and statistics(config).eigval is None:
    raise UserError(f"data.augment has pca_lighting but dataset '{config.data.name}' has no "
                    f'colour eigenvectors; run `python -m jaxcnn.data.stats {config.data.name} '
                    f'--data_dir DIR` first')
  problem = crop_problem(config.data, stored_shape)
  if problem:
    raise UserError(problem)
