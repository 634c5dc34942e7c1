"""`digits`: the UCI handwritten digits that scikit-learn ships, as an offline TFDS dataset.

The split is sklearn_digits.py's, the in-memory path's too. Preparing it needs no network, so
the same TFDS pipeline that reads ImageNet can serve the digits (with data.in_memory=False).
"""

from jaxcnn.data import sklearn_digits
from jaxcnn.data.tensorflow import tfds


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's copy of the UCI ML handwritten digits test set."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 80/20 split of sklearn.datasets.load_digits.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=sklearn_digits.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1)),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://archive.ics.uci.edu/dataset/80',
    )

  def _split_generators(self, dl_manager):
    images, labels = sklearn_digits.images_and_labels()
    return {split: self._generate_examples(images, labels, indices)
            for split, indices in sklearn_digits.split_indices(labels).items()}

  def _generate_examples(self, images, labels, indices):
    for i in indices:  # keyed by scikit-learn's index, which orders TFDS's files
      yield int(i), {'image': images[i], 'label': int(labels[i])}
