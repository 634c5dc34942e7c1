"""scikit-learn's copy of the UCI handwritten digits, and the one fixed train / test split of
them that both input paths read: the TFDS `digits` builder (digits.py) writes it as TFRecords
for tf.data, the in-memory path (arrays.py) takes it as arrays. No TensorFlow here.

1,797 grayscale 8x8 images (pixel values 0..16, stored as 0..255), 10 classes; a stratified
20% (360 images) is the test split.
"""

import numpy as np

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def images_and_labels() -> tuple[np.ndarray, np.ndarray]:
  """uint8 [1797, 8, 8, 1] images scaled to 0..255, and int32 labels, in scikit-learn's order."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  return (np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None],
          digits.target.astype(np.int32))


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """{'train': indices, 'test': indices} into scikit-learn's order, each sorted: a fixed
  stratified 80/20 split."""
  from sklearn.model_selection import train_test_split
  train, test = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                 random_state=SPLIT_SEED, stratify=labels)
  return {'train': np.sort(train), 'test': np.sort(test)}
