"""Input data. `create(config)` returns the train and eval batch iterators of a run.

Every source exposes `num_classes`, `channels`, `steps_per_epoch`, `eval_examples`,
`eval_steps`, `train_batches(start_step)` and `eval_batches()`. Three sources, by the config:
- in memory (in_memory.py): the datasets that datasets.trains_in_memory accepts
  (data.in_memory, and small enough), batches made on the devices as global jax.Arrays;
  TensorFlow only to read a TFDS dataset the first time;
- tf.data (pipeline.py): the other TFDS datasets, each process's rows as numpy arrays;
- `synthetic` (synthetic.py): one fixed random batch.
"""

import jax
import numpy as np
from jax.sharding import Mesh

from jaxcnn.data.datasets import (  # noqa: F401
    DATASETS, OFFLINE_BUILDERS, dataset_spec, not_prepared_error, preparation_problem,
    require_prepared, trains_in_memory)


def create(config, process_index: int | None = None, process_count: int | None = None,
           mesh: Mesh | None = None):
  """The config's data source. The in-memory path puts its arrays and batches on `mesh`
  (default: one device of this process, for tools that look at batches outside a run)."""
  if trains_in_memory(config.data):
    from jaxcnn.data.in_memory import InMemoryData
    if mesh is None:
      mesh = Mesh(np.asarray(jax.local_devices()[:1]).reshape(1, 1), ('data', 'model'))
    return InMemoryData(config, mesh)
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if config.data.name == 'synthetic':
    from jaxcnn.data.synthetic import SyntheticData
    return SyntheticData(config, process_index, process_count)
  require_prepared(config.data.name, config.data.data_dir, config.data.download)
  from jaxcnn.data.pipeline import TfdsData
  return TfdsData(config, process_index, process_count)
