"""`digits`: the UCI handwritten digits that scikit-learn ships, as an offline TFDS dataset.

1,797 grayscale 8x8 images (pixel values 0..16, stored as 0..255), 10 classes. A fixed
stratified split keeps 20% (360 images) for `test`. Preparing it needs no network, so the
same TFDS pipeline that reads ImageNet serves tests and the quick start.
"""

import numpy as np
from jaxcnn.data.tensorflow import tfds

TEST_FRACTION = 0.2
SPLIT_SEED = 0


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's copy of the UCI ML handwritten digits test set."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 80/20 split of sklearn.datasets.load_digits.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1)),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://archive.ics.uci.edu/dataset/80',
    )

  def _split_generators(self, dl_manager):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    indices = np.arange(len(images))
    train, test = train_test_split(indices, test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                                   stratify=digits.target)
    return {
        'train': self._generate_examples(images, digits.target, np.sort(train)),
        'test': self._generate_examples(images, digits.target, np.sort(test)),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {'image': images[i], 'label': int(labels[i])}
