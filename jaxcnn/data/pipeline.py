"""The TFDS + tf.data input pipeline: every dataset but `synthetic` is read through it.

Training data is reshuffled each epoch with a seed derived from (seed, epoch), and each
example is augmented with random numbers derived from (seed, epoch, its index in the
epoch), so the batch at any step is a function of the config alone: a resumed run starts at
the right epoch, skips the examples it has seen, and continues exactly as an uninterrupted
run would.
Each process walks the same record stream and keeps its own rows of every global batch
(decoding only those), so the global batches are the same for any number of processes.
Evaluation reads every example of the split once; the last batch is padded and `mask` marks
the real examples.
"""

import contextlib
import functools
import io
import math

from jaxcnn.data import augment, preprocess
from jaxcnn.data import digits  # noqa: F401  (registers the offline `digits` builder)
from jaxcnn.data.datasets import OFFLINE_BUILDERS, data_root, dataset_spec, not_prepared_error
from jaxcnn.data.recipes import check_dataset
from jaxcnn.data.tensorflow import keep_off_accelerators, tf, tfds
from jaxcnn.errors import UserError, reason


def prepared_builder(name: str, data_dir: str | None, download: bool):
  """Returns the TFDS builder of a prepared dataset, or fails at once saying how to prepare it."""
  keep_off_accelerators()  # tf.data runs on the host
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
      return builder
    if name in OFFLINE_BUILDERS:
      # Seconds of work: keep the console to our own lines (TFDS prints a progress bar and
      # two lines of its own).
      tfds.display_progress_bar(False)
      try:
        with contextlib.redirect_stdout(io.StringIO()):
          builder.download_and_prepare()
      finally:
        tfds.display_progress_bar(True)
      print(f"prepared dataset '{name}' in {builder.data_dir}")
      return builder
    if download:
      builder.download_and_prepare()
      return builder
  except OSError as e:  # a data_dir that cannot be created, read or written
    raise UserError(f'data_dir {data_root(data_dir)} cannot be used ({reason(e)}: '
                    f'{e.filename}); pass --config.data.data_dir=DIR with a directory you can '
                    'create and write (or read, for a prepared dataset)') from None
  raise UserError(not_prepared_error(name, data_dir) or f"dataset '{name}' is not prepared")


class TfdsData:
  """This process's rows of the global train and eval batches (numpy dicts) of a TFDS dataset."""

  def __init__(self, config, process_index: int, process_count: int):
    self.config = config
    self.spec = dataset_spec(config.data.name)
    self.builder = prepared_builder(config.data.name, config.data.data_dir, config.data.download)
    check_dataset(config, self.builder.info.features['image'].shape)
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

  def _own_rows(self, indexed: tf.data.Dataset, global_batch: int, local_batch: int):
    """The (index, record) pairs that fall in this process's rows of each global batch."""
    first = self.process_index * local_batch
    mine = lambda i, _: (first <= i % global_batch) & (i % global_batch < first + local_batch)
    return indexed.filter(tf.autograph.experimental.do_not_convert(mine))

  def _decode(self, example) -> tf.Tensor:
    return tf.io.decode_image(example['image'], channels=self.channels, expand_animations=False)

  def _label(self, example) -> tf.Tensor:
    return tf.cast(example['label'], tf.int32)

  # Plain TF ops: AutoGraph, which would rewrite them from their source files, is not needed.
  @tf.autograph.experimental.do_not_convert
  def _train_example(self, epoch: int, index, example) -> dict[str, tf.Tensor]:
    seed = augment.example_seed(self.seed, epoch, index)
    return {'image': augment.train_image(self._decode(example), seed, self.config),
            'label': self._label(example)}

  @tf.autograph.experimental.do_not_convert
  def _eval_example(self, index, example) -> dict[str, tf.Tensor]:
    del index
    return {'image': preprocess.eval_input(self._decode(example), self.config),
            'label': self._label(example), 'mask': tf.constant(True)}

  def train_batches(self, start_step: int = 0):
    """Yields training batches forever, beginning with the batch of `start_step`."""
    epoch, step_in_epoch = divmod(start_step, self.steps_per_epoch)
    records = self._read(self.spec.train_split)
    while True:
      ds = records.shuffle(self.shuffle_buffer, seed=augment.epoch_seed(self.seed, epoch),
                           reshuffle_each_iteration=False)
      ds = ds.take(self.steps_per_epoch * self.global_batch).enumerate()
      ds = ds.skip(step_in_epoch * self.global_batch)
      ds = self._own_rows(ds, self.global_batch, self.train_batch)
      ds = ds.map(functools.partial(self._train_example, epoch),
                  num_parallel_calls=tf.data.AUTOTUNE)
      ds = ds.batch(self.train_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
      yield from ds.as_numpy_iterator()
      epoch, step_in_epoch = epoch + 1, 0

  def eval_batches(self):
    """Yields `eval_steps` batches: this process's rows of the eval split, each example once.

    Images are [batch, S, S, C], or [batch, V, S, S, C] with eval.crops=V > 1.
    """
    ds = self._own_rows(self._read(self.spec.eval_split).enumerate(), self.global_eval_batch,
                        self.eval_batch)
    ds = ds.map(self._eval_example, num_parallel_calls=tf.data.AUTOTUNE)
    padding = tf.data.Dataset.from_tensors(
        tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), ds.element_spec))
    ds = ds.concatenate(padding.repeat()).take(self.eval_steps * self.eval_batch)
    yield from ds.batch(self.eval_batch).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
