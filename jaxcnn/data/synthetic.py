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

  def __init__(self, config, process_index: int, process_count: int):
    self.spec = dataset_spec('synthetic')
    self.num_classes = self.spec.num_classes
    self.channels = self.spec.channels
    self.steps_per_epoch = TRAIN_EXAMPLES // config.train.batch_size
    self.eval_examples = EVAL_EXAMPLES
    self.local_eval_examples = EVAL_EXAMPLES // process_count
    self.eval_batch = config.eval.batch_size // process_count
    self.eval_steps = math.ceil(self.local_eval_examples / self.eval_batch)
    rng = np.random.default_rng([config.seed, process_index])
    size = config.data.image_size

    def random_batch(n):
      return {'image': rng.standard_normal((n, size, size, self.channels), np.float32),
              'label': rng.integers(0, self.num_classes, n, dtype=np.int32)}

    self.train_batch = random_batch(config.train.batch_size // process_count)
    self.eval_batch_data = random_batch(self.eval_batch)

  def train_batches(self, start_step: int = 0):
    del start_step  # every batch is the same
    while True:
      yield self.train_batch

  def eval_batches(self):
    """`eval_steps` batches; the examples past this process's share are masked out."""
    for step in range(self.eval_steps):
      index = step * self.eval_batch + np.arange(self.eval_batch)
      yield {**self.eval_batch_data, 'mask': index < self.local_eval_examples}
