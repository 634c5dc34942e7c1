"""The TFDS + tf.data input pipeline: every dataset but `synthetic` is read through it.

Training data is reshuffled each epoch with a seed derived from (seed, epoch), so the batch
at any step is a function of the config alone: a resumed run starts at the right epoch,
skips the examples it has seen, and continues exactly as an uninterrupted run would.
Each process walks the same record stream and keeps its own rows of every global batch
(decoding only those), so the global batches are the same for any number of processes.
Evaluation reads every example of the split once; the last batch is padded and `mask` marks
the real examples.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxcnn.data import digits  # noqa: F401  (registers the offline `digits` builder)
from jaxcnn.data.datasets import OFFLINE_BUILDERS, dataset_spec, not_prepared_error
from jaxcnn.errors import UserError

# tf.data runs on the host; it must never take accelerator memory from JAX.
tf.config.set_visible_devices([], 'GPU')

def prepared_builder(name: str, data_dir: str | None, download: bool):
  """Returns the TFDS builder of a prepared dataset, or fails at once saying how to prepare it."""
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  if name in OFFLINE_BUILDERS:
    tfds.display_progress_bar(False)  # seconds of work; keep the console to our own lines
    try:
      builder.download_and_prepare()
    finally:
      tfds.display_progress_bar(True)
    return builder
  if download:
    builder.download_and_prepare()
    return builder
  raise UserError(not_prepared_error(name, data_dir) or f"dataset '{name}' is not prepared")


class TfdsData:
  """This process's rows of the global train and eval batches (numpy dicts) of a TFDS dataset."""

  def __init__(self, config, process_index: int, process_count: int):
    self.spec = dataset_spec(config.data.name)
    self.builder = prepared_builder(config.data.name, config.data.data_dir, config.data.download)
    self.image_size = config.data.image_size
    self.mean = np.asarray(config.data.mean or self.spec.mean, np.float32)
    self.std = np.asarray(config.data.std or self.spec.std, np.float32)
    self.seed = config.seed
    self.shuffle_buffer = config.data.shuffle_buffer
    self.process_index = process_index
    self.global_batch, self.global_eval_batch = config.train.batch_size, config.eval.batch_size
    self.train_batch = self.global_batch // process_count
    self.eval_batch = self.global_eval_batch // process_count
    self.num_classes = self.spec.num_classes
    self.channels = self.spec.channels
    splits = self.builder.info.splits
    self.steps_per_epoch = splits[self.spec.train_split].num_examples // self.global_batch
    self.eval_examples = splits[self.spec.eval_split].num_examples
    self.eval_steps = math.ceil(self.eval_examples / self.global_eval_batch)

  def _read(self, split: str) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    return self.builder.as_dataset(
        split=split, decoders={'image': tfds.decode.SkipDecoding()}).with_options(options)

  def _own_rows(self, records: tf.data.Dataset, global_batch: int, local_batch: int):
    """The records that fall in this process's rows of each global batch."""
    first = self.process_index * local_batch
    mine = lambda i, _: (first <= i % global_batch) & (i % global_batch < first + local_batch)
    return records.enumerate().filter(mine).map(lambda _, record: record)

  def _preprocess(self, example) -> dict[str, tf.Tensor]:
    image = tf.io.decode_image(example['image'], channels=self.channels, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0,
                            (self.image_size, self.image_size), antialias=True)
    image = (image - self.mean) / self.std
    return {'image': image, 'label': tf.cast(example['label'], tf.int32)}

  def train_batches(self, start_step: int = 0):
    """Yields training batches forever, beginning with the batch of `start_step`."""
    epoch, step_in_epoch = divmod(start_step, self.steps_per_epoch)
    records = self._read(self.spec.train_split)
    while True:
      ds = records.shuffle(self.shuffle_buffer, seed=self.seed * 100_003 + epoch,
                           reshuffle_each_iteration=False)
      ds = ds.take(self.steps_per_epoch * self.global_batch).skip(step_in_epoch * self.global_batch)
      ds = self._own_rows(ds, self.global_batch, self.train_batch)
      ds = ds.map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE)
      ds = ds.batch(self.train_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
      yield from ds.as_numpy_iterator()
      epoch, step_in_epoch = epoch + 1, 0

  def eval_batches(self):
    """Yields `eval_steps` batches: this process's rows of the eval split, each example once."""
    ds = self._own_rows(self._read(self.spec.eval_split), self.global_eval_batch, self.eval_batch)
    ds = ds.map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda example: {**example, 'mask': tf.constant(True)})
    padding = tf.data.Dataset.from_tensors(
        tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), ds.element_spec))
    ds = ds.concatenate(padding.repeat()).take(self.eval_steps * self.eval_batch)
    yield from ds.batch(self.eval_batch).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
