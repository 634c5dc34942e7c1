"""Per-channel statistics of a prepared dataset's train split, stored next to its TFDS files.

  python -m jaxcnn.data.stats NAME [--data_dir DIR] [--max_examples N]

Computes, over every pixel (pixel / 255) of the train split at its stored size, each
channel's mean and std and the eigenvalues and eigenvectors of the channels' covariance
(what AlexNet's PCA lighting shifts colours along), and writes them to jaxcnn_stats.json in
the dataset's directory. The input pipeline then normalizes with them instead of the
built-in figures, unless the config sets data.mean and data.std.
"""

import json
import os

from absl import flags

from jaxcnn import cli
from jaxcnn.data.datasets import DATASETS, STATS_FILE


def compute_statistics(builder, max_examples: int = 0) -> dict:
  """mean, std, eigval (descending) and eigvec (columns) of the train split's pixels / 255."""
  import numpy as np
  from jaxcnn.data.tensorflow import tf, tfds

  from jaxcnn.data.datasets import dataset_spec
  spec = dataset_spec(builder.name)
  ds = builder.as_dataset(split=spec.train_split, decoders={'image': tfds.decode.SkipDecoding()})
  if max_examples:
    ds = ds.take(max_examples)

  def moments(example):
    image = tf.io.decode_image(example['image'], channels=spec.channels, expand_animations=False)
    pixels = tf.reshape(tf.cast(image, tf.float64) / 255.0, [-1, spec.channels])
    return (tf.cast(tf.shape(pixels)[0], tf.float64), tf.reduce_sum(pixels, 0),
            tf.matmul(pixels, pixels, transpose_a=True))

  zero = (tf.constant(0.0, tf.float64), tf.zeros([spec.channels], tf.float64),
          tf.zeros([spec.channels] * 2, tf.float64))
  count, total, outer = ds.map(moments, num_parallel_calls=tf.data.AUTOTUNE).reduce(
      zero, lambda a, b: tuple(x + y for x, y in zip(a, b)))
  mean = total.numpy() / count.numpy()
  covariance = outer.numpy() / count.numpy() - np.outer(mean, mean)
  eigval, eigvec = np.linalg.eigh(covariance)
  order = np.argsort(eigval)[::-1]
  return {'mean': mean.tolist(), 'std': np.sqrt(np.diag(covariance)).tolist(),
          'eigval': eigval[order].tolist(), 'eigvec': eigvec[:, order].tolist(),
          'pixels': int(count.numpy())}


def write_statistics(name: str, data_dir: str | None, max_examples: int = 0) -> str:
  """Computes the statistics of a prepared dataset and stores them with it; returns the path."""
  from jaxcnn.data.pipeline import prepared_builder
  builder = prepared_builder(name, data_dir, download=False)
  stats = compute_statistics(builder, max_examples)
  path = os.path.join(str(builder.data_dir), STATS_FILE)
  with open(path, 'w') as f:
    json.dump(stats, f, indent=2)
  return path


def define_flags() -> None:
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: $TFDS_DATA_DIR or '
                      '~/tensorflow_datasets).')
  flags.DEFINE_integer('max_examples', 0, 'Use only the first N train examples (0: all; '
                       '50,000 estimate ImageNet to about 3 digits).')


def main(arguments: list[str]) -> None:
  names = [n for n in arguments if n in DATASETS and n != 'synthetic']
  if len(arguments) != 1 or not names:
    known = ', '.join(n for n in sorted(DATASETS) if n != 'synthetic')
    cli.fail(f'name one prepared dataset (known: {known})')
  path = write_statistics(names[0], flags.FLAGS.data_dir, flags.FLAGS.max_examples)
  with open(path) as f:
    print(f'{names[0]}: {json.dumps(json.load(f))}\nwritten to {path}')


if __name__ == '__main__':
  cli.run(main, define_flags, positional_arguments=True)
