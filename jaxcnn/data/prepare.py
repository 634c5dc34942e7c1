"""Download (where TFDS can) and prepare a dataset into a TFDS data_dir.

  python -m jaxcnn.data.prepare NAME [--data_dir DIR]

Run it once on a machine with internet; training then reads the prepared files offline. The
datasets that train in memory are also written as arrays (arrays.py), which training reads
without TensorFlow.
imagenet2012 cannot be downloaded: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
DIR/downloads/manual first. `digits` needs no network at all.
"""

from absl import flags

from jaxcnn import cli
from jaxcnn.data.datasets import ARRAYS_FILE, DATASETS, fits_in_memory


def define_flags() -> None:
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: $TFDS_DATA_DIR or '
                      '~/tensorflow_datasets).')


def main(arguments: list[str]) -> None:
  unknown = [n for n in arguments if n not in DATASETS or n == 'synthetic']
  if not arguments or unknown:
    known = ', '.join(n for n in sorted(DATASETS) if n != 'synthetic')
    cli.fail(f"name the dataset(s) to prepare{'; unknown: ' + ', '.join(unknown) if unknown else ''}"
             f' (known: {known})')
  from jaxcnn.data.arrays import write_cache
  from jaxcnn.data.pipeline import prepared_builder
  for name in arguments:
    builder = prepared_builder(name, flags.FLAGS.data_dir, download=True)
    cached = ''
    # So that training reads it with no TensorFlow (and digits with no scikit-learn).
    if fits_in_memory(name):
      write_cache(name, flags.FLAGS.data_dir)
      cached = f', and as arrays in {ARRAYS_FILE} there'
    print(f'{name}: prepared in {builder.data_dir}{cached}')


if __name__ == '__main__':
  cli.run(main, define_flags, positional_arguments=True)
