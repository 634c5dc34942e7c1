"""A dataset's train and eval splits as whole uint8 arrays, for the in-memory path.

`digits` come from scikit-learn (sklearn_digits.py). A TFDS dataset is read once through TFDS,
which needs TensorFlow, and cached as datasets.ARRAYS_FILE next to its TFDS files
(DIR/NAME/VERSION/); later runs read the cache alone, with no TensorFlow. Preparing `digits`
(jaxcnn.data.prepare) caches scikit-learn's arrays likewise, which later runs read without
importing scikit-learn (a second per process). A split's order is its source's
(scikit-learn's, or the TFDS files'); each epoch permutes it anyway.
"""

import os
import sys
import tempfile

import numpy as np

from jaxcnn.data import sklearn_digits
from jaxcnn.data.datasets import (
    ARRAYS_FILE, data_root, dataset_spec, prepared_files, require_prepared)
from jaxcnn.errors import UserError

Splits = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 [N, H, W, C], int32 [N])


def load(name: str, data_dir: str | None, download: bool = False) -> Splits:
  """The train and eval splits of `name` (by their TFDS names) as arrays."""
  cached = prepared_files(name, data_dir, ARRAYS_FILE)
  if cached:
    with np.load(cached[-1]) as arrays:
      return {split: (arrays[f'{split}_images'], arrays[f'{split}_labels'])
              for split in _splits(name)}
  if name == 'digits':
    return _digits()
  require_prepared(name, data_dir, download)
  try:
    return write_cache(name, data_dir, download)
  except ImportError as e:
    raise UserError(f"dataset '{name}' has no {ARRAYS_FILE} in data_dir {data_root(data_dir)} "
                    f'and reading its TFDS files needs TensorFlow ({e}); run `python -m '
                    f'jaxcnn.data.prepare {name} --data_dir DIR` where TensorFlow is installed, '
                    'which writes the arrays') from e


def _splits(name: str) -> tuple[str, str]:
  spec = dataset_spec(name)
  return spec.train_split, spec.eval_split


def _digits() -> Splits:
  images, labels = sklearn_digits.images_and_labels()
  return {split: (images[indices], labels[indices])
          for split, indices in sklearn_digits.split_indices(labels).items()}


def write_cache(name: str, data_dir: str | None, download: bool = False) -> Splits:
  """Reads the prepared TFDS dataset `name` (TensorFlow; `digits` from scikit-learn) and
  writes its arrays next to its files; returns them. A data_dir that cannot be written only
  costs the next run the read."""
  from jaxcnn.data.pipeline import prepared_builder
  from jaxcnn.data.tensorflow import tfds
  builder = prepared_builder(name, data_dir, download)
  if name == 'digits':
    splits = _digits()
  else:
    splits = {}
    for split in _splits(name):
      examples = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
      splits[split] = examples['image'], examples['label'].astype(np.int32)
  arrays = {f'{split}_{key}': value for split, (images, labels) in splits.items()
            for key, value in (('images', images), ('labels', labels))}
  directory = str(builder.data_dir)
  try:
    # Written under a temporary name and renamed into place: a reader never sees half a file.
    with tempfile.NamedTemporaryFile(dir=directory, suffix='.npz', delete=False) as f:
      np.savez(f, **arrays)
    os.replace(f.name, os.path.join(directory, ARRAYS_FILE))
  except OSError as e:
    print(f'warning: could not cache {name} as arrays in {directory} ({e}); the next run '
          'reads it through TFDS again', file=sys.stderr)
  return splits
