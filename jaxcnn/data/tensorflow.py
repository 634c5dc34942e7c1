"""TensorFlow and TFDS, for the tf.data path only: imported without the C++ start-up lines
they print (oneDNN notices, absl's pre-initialization warning) straight to the terminal.

`from jaxcnn.data.tensorflow import tf, tfds` is how jaxcnn imports them. `keep_off_accelerators`
hides GPUs from TensorFlow before it first runs an op, so tf.data never takes memory from JAX.
"""

import contextlib
import os


@contextlib.contextmanager
def _stderr_muted():
  """Points file descriptor 2 at /dev/null: C++ logging writes there, below Python's reach."""
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
with _stderr_muted():
  import tensorflow as tf  # noqa: E402
  import tensorflow_datasets as tfds  # noqa: E402


def keep_off_accelerators() -> None:
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TensorFlow already runs: it was hidden before, or is past helping
    pass
