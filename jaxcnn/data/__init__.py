"""Input data. `create(config)` returns per-process train and eval batch iterators.

Both sources expose `num_classes`, `channels`, `steps_per_epoch`, `eval_examples`,
`eval_steps`, `train_batches(start_step)` and `eval_batches()`. Only the TFDS path imports
TensorFlow, so `synthetic` runs where TensorFlow is not installed.
"""

import jax

from jaxcnn.data.datasets import (  # noqa: F401
    DATASETS, OFFLINE_BUILDERS, dataset_spec, not_prepared_error)
from jaxcnn.errors import UserError


def create(config, process_index: int | None = None, process_count: int | None = None):
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if config.data.name == 'synthetic':
    from jaxcnn.data.synthetic import SyntheticData
    return SyntheticData(config, process_index, process_count)
  name = config.data.name
  if name not in OFFLINE_BUILDERS and not config.data.download:
    problem = not_prepared_error(name, config.data.data_dir)  # before TensorFlow's slow import
    if problem:
      raise UserError(problem)
  from jaxcnn.data.pipeline import TfdsData
  return TfdsData(config, process_index, process_count)
