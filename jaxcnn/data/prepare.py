"""Download (where TFDS can) and prepare a dataset into a TFDS data_dir.

  python -m jaxcnn.data.prepare NAME [--data_dir DIR]

Run it once on a machine with internet; training then reads the prepared files offline.
imagenet2012 cannot be downloaded: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
DIR/downloads/manual first. `digits` needs no network at all.
"""

import os
import sys

from absl import app, flags

from jaxcnn.data.datasets import DATASETS

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: $TFDS_DATA_DIR or '
                                '~/tensorflow_datasets).')


def main(argv: list[str]) -> None:
  names = argv[1:]
  unknown = [n for n in names if n not in DATASETS or n == 'synthetic']
  if not names or unknown:
    known = ', '.join(n for n in sorted(DATASETS) if n != 'synthetic')
    print(f"error: name the dataset(s) to prepare{'; unknown: ' + ', '.join(unknown) if unknown else ''}"
          f' (known: {known})', file=sys.stderr)
    sys.exit(2)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from jaxcnn.data.pipeline import prepared_builder
  for name in names:
    builder = prepared_builder(name, _DATA_DIR.value, download=True)
    print(f'{name}: prepared in {builder.data_dir}')


if __name__ == '__main__':
  app.run(main)
