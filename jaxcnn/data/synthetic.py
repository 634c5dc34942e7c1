"""`synthetic`: random images of any size, generated with numpy (no TensorFlow needed).

For benchmarks: one fixed batch is made once and served for every step, so the input costs
nothing and the train step alone is measured. Labels are random, so nothing is learned.
"""

import math

import numpy as np

from jaxcnn.data.datasets import dataset_spec

TRAIN_EXAMPLES = 50_000
EVAL_EXAMPLES = 10_000


class SyntheticData:
  """This process's rows of a fixed random global batch (the same for any process count),
  with the classes and channels of dataset `like` (jaxcnn.bench's stand-in for a dataset
  that is not prepared)."""

  def __init__(self, config, process_index: int, process_count: int, like: str = 'synthetic'):
    self.spec = dataset_spec(like)
    self.num_classes = self.spec.num_classes
    self.channels = self.spec.channels
    self.steps_per_epoch = TRAIN_EXAMPLES // config.train.batch_size
    self.eval_examples = EVAL_EXAMPLES
    self.eval_steps = math.ceil(EVAL_EXAMPLES / config.eval.batch_size)
    rng = np.random.default_rng(config.seed)
    size = config.data.image_size
    eval_views = (config.eval.crops,) if config.eval.crops > 1 else ()  # [batch, V, S, S, C]

    def own_rows(global_batch: int, views: tuple[int, ...] = ()):
      local = global_batch // process_count
      rows = slice(process_index * local, (process_index + 1) * local)
      batch = {'image': rng.standard_normal((global_batch, *views, size, size, self.channels),
                                            np.float32),
               'label': rng.integers(0, self.num_classes, global_batch, dtype=np.int32),
               'row': np.arange(global_batch)}
      return {key: value[rows] for key, value in batch.items()}

    self.train_batch = own_rows(config.train.batch_size)
    self.eval_batch = own_rows(config.eval.batch_size, eval_views)
    self.global_eval_batch = config.eval.batch_size

  def train_batches(self, start_step: int = 0):
    del start_step  # every batch is the same
    batch = {key: self.train_batch[key] for key in ('image', 'label')}
    while True:
      yield batch

  def eval_batches(self):
    """`eval_steps` batches; the rows past the end of the eval set are masked out."""
    rows = self.eval_batch['row']
    for step in range(self.eval_steps):
      yield {'image': self.eval_batch['image'], 'label': self.eval_batch['label'],
             'mask': step * self.global_eval_batch + rows < EVAL_EXAMPLES}
