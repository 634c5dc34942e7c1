"""Stand-in copies of registered TFDS datasets, written offline into a data_dir.

`write_dataset('imagenet2012', data_dir, splits)` prepares a dataset that TFDS reads back as
`imagenet2012` (same name, version, config and features as the real builder's) but holds the
given examples. Tests use it to train from a prepared data_dir with downloads off, and the
throughput tool to time the input pipeline on JPEGs of ImageNet's sizes where ImageNet
itself is not at hand.
"""

from collections.abc import Iterable, Mapping

import numpy as np
from jaxcnn.data.tensorflow import tfds


def write_dataset(name: str, data_dir: str,
                  splits: Mapping[str, Iterable[tuple[np.ndarray, int]]]) -> str:
  """Prepares `name` in `data_dir` from (uint8 HxWxC image, label) pairs per split; returns
  the directory of the files. Features other than image and label get fixed placeholders."""
  real = tfds.builder_cls(name)

  with tfds.core.registered.skip_registration():

    class StandIn(real):  # pylint: disable=abstract-method

      def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        return {split: self._generate_examples(examples) for split, examples in splits.items()}

      def _generate_examples(self, examples):
        features = self.info.features
        others = {key: ('' if isinstance(feature, tfds.features.Text) else 0)
                  for key, feature in features.items() if key not in ('image', 'label')}
        for index, (image, label) in enumerate(examples):
          yield index, {**others, 'image': image, 'label': label}

  StandIn.name = real.name  # files and metadata under the real dataset's name
  builder = StandIn(data_dir=data_dir)
  tfds.display_progress_bar(False)
  try:
    builder.download_and_prepare()
  finally:
    tfds.display_progress_bar(True)
  return str(builder.data_dir)


def random_images(count: int, sizes: tuple[int, int], channels: int, num_classes: int,
                  seed: int = 0):
  """`count` (image, label) pairs of random pixels, each side drawn from `sizes` (inclusive)."""
  rng = np.random.default_rng(seed)
  for _ in range(count):
    height, width = rng.integers(sizes[0], sizes[1] + 1, size=2)
    yield (rng.integers(0, 256, (height, width, channels), dtype=np.uint8),
           int(rng.integers(num_classes)))
