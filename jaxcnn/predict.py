"""The top-5 classes of image files, from a trained run's checkpoint.

  python -m jaxcnn.predict --workdir DIR [--step N] IMAGE_FILE...

Images (PNG, JPEG, GIF, BMP or WebP, any size) are preprocessed as the run's evaluation does and
classified on one device. Classes are named by the dataset's label names where the dataset
is prepared on this machine, else by their indices (the first line says which). A file that
is not a readable image is reported on stderr, the others are still predicted, and the exit
status is 1; a bad workdir or checkpoint is one `error:` line and exit status 2.
"""

import re
import sys

from absl import flags

from jaxcnn import cli
from jaxcnn.errors import UserError

TOP_K = 5


def read_image(path: str, channels: int):
  """The uint8 H x W x `channels` pixels of an image file."""
  from jaxcnn.data.tensorflow import keep_off_accelerators, tf
  keep_off_accelerators()
  if not tf.io.gfile.exists(path):
    raise UserError(f'{path}: no such file')
  try:
    return tf.io.decode_image(tf.io.read_file(path), channels=channels,
                              expand_animations=False).numpy()
  except tf.errors.OpError as e:
    reason = re.sub(r'\{\{.*?\}\}|\[Op:.*', '', e.message.splitlines()[0]).strip()  # TF's op names
    raise UserError(f'{path}: not a readable image ({reason})') from None


def format_prediction(path: str, probabilities, class_name) -> str:
  top = probabilities.argsort()[::-1][:TOP_K]
  return '\n'.join([path, *(f'  {100 * probabilities[i]:6.2f}%  {class_name(i)}' for i in top)])


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, "A training run's work directory.")
  flags.DEFINE_integer('step', None, 'The checkpoint step (default: the latest readable one).')
  flags.mark_flags_as_required(['workdir'])


def predict(workdir: str, step: int | None, image_paths: list[str]) -> int:
  """Prints the top-5 classes of each image; returns the exit status (1: a file was skipped).
  Raises UserError for a workdir or checkpoint that cannot be restored."""
  from jaxcnn.restored import input_shape, restore
  restored = restore(workdir, step)
  images, paths, status = [], [], 0
  for path in image_paths:
    try:
      images.append(read_image(path, input_shape(restored.config)[-1]))
      paths.append(path)
    except UserError as e:
      print(f'error: {e}; skipped', file=sys.stderr)
      status = 1
  names = ("the dataset's label names" if restored.label_names else
           f"class indices (dataset '{restored.config.data.name}' has no label names here)")
  print(f"{restored.config.model.name} at step {restored.step} of {workdir}; classes: {names}")
  if images:
    for path, probabilities in zip(paths, restored.predict(images)):
      print(format_prediction(path, probabilities, restored.class_name))
  return status


def main(arguments: list[str]) -> int:
  if not arguments:
    cli.fail('name the image files to classify: python -m jaxcnn.predict --workdir DIR '
             'IMAGE_FILE...')
  return predict(flags.FLAGS.workdir, flags.FLAGS.step, arguments)


if __name__ == '__main__':
  cli.run(main, define_flags, positional_arguments=True)
