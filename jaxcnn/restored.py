"""A trained run, restored for use: `jaxcnn.restore(workdir)` (notebooks, jaxcnn.predict).

    restored = jaxcnn.restore('runs/lenet-default')
    probabilities = restored.predict(images)  # uint8 H x W x C images -> [N, classes]

Restoring needs only the run's config.json and one checkpoint. It runs on one device (the
first of this process, a laptop's CPU included) whatever mesh and number of processes wrote
the checkpoint: checkpoints keep the single-device parameter layout. The file is not named
restore.py, which would make the submodule shadow the `jaxcnn.restore` function.
"""

import dataclasses
import functools
from typing import Any

import jax
import numpy as np
import optax
from flax import traverse_util
from ml_collections import config_dict

from jaxcnn import optim, parallel, train, validate
from jaxcnn.checkpoint import Checkpoints, read_run_config
from jaxcnn.data.datasets import dataset_spec, not_prepared_error
from jaxcnn.errors import UserError
from jaxcnn.summary import summarize


def input_shape(config) -> tuple[int, int, int]:
  """The model's input for one image: image_size x image_size x the dataset's channels."""
  size = config.data.image_size
  return size, size, dataset_spec(config.data.name).channels


@dataclasses.dataclass
class Restored:
  config: config_dict.ConfigDict  # the run's config, as it trained
  model: Any  # the flax module, built for one device
  variables: dict  # {'params': ..., 'batch_stats': ...}, on one device
  step: int  # the training step of the checkpoint

  @functools.cached_property
  def _probabilities(self):
    return jax.jit(lambda variables, images: jax.nn.softmax(
        self.model.apply(variables, images, train=False)))

  def predict(self, images) -> np.ndarray:
    """Class probabilities [N, classes] of N uint8 images (H x W x C each, C the run's
    channels, any H and W), preprocessed by the function the run's evaluation uses (with
    eval.crops=10: its centre view, whose accuracy the run logs as center_top1)."""
    import tensorflow as tf  # only here: restoring and the model do not need TensorFlow
    from jaxcnn.data.preprocess import eval_image
    size = min(len(images), self.config.eval.batch_size)
    channels = input_shape(self.config)[-1]
    inputs = tf.data.Dataset.from_generator(
        lambda: iter(images), output_signature=tf.TensorSpec([None, None, channels], tf.uint8))
    inputs = inputs.map(functools.partial(eval_image, config=self.config)).batch(size)
    outputs = []
    for chunk in inputs.as_numpy_iterator():
      # Padded to one batch shape, so that a single program is compiled.
      padded = np.pad(chunk, [(0, size - len(chunk))] + [(0, 0)] * (chunk.ndim - 1))
      outputs.append(np.asarray(self._probabilities(self.variables, padded))[:len(chunk)])
    return np.concatenate(outputs)

  @functools.cached_property
  def label_names(self) -> list[str] | None:
    """The class names of the run's dataset, where it is prepared here; else None."""
    name, data_dir = self.config.data.name, self.config.data.data_dir
    if name == 'synthetic' or not_prepared_error(name, data_dir):
      return None
    from jaxcnn.data.pipeline import prepared_builder
    return list(prepared_builder(name, data_dir, download=False).info.features['label'].names)

  def class_name(self, index: int) -> str:
    """The label name of class `index`, or the index itself where there are no names."""
    return self.label_names[index] if self.label_names else str(index)

  def eval_examples(self, count: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The first `count` (default: all) uint8 images of the run's eval split, in the order
    the run's evaluation reads them, and their labels."""
    name = self.config.data.name
    if name == 'synthetic':
      raise UserError("data.name 'synthetic' has no stored eval images; use a run trained on "
                      'a TFDS dataset')
    import tensorflow_datasets as tfds
    from jaxcnn.data.pipeline import prepared_builder
    builder = prepared_builder(name, self.config.data.data_dir, self.config.data.download)
    examples = builder.as_dataset(split=dataset_spec(name).eval_split)
    if count is not None:
      examples = examples.take(count)
    examples = list(tfds.as_numpy(examples))
    return [e['image'] for e in examples], np.array([e['label'] for e in examples])

  def first_layer_filters(self) -> np.ndarray:
    """The kernel [height, width, in channels, filters] of the layer that reads the image."""
    first = summarize(self.model, (1, *input_shape(self.config)))['layers'][0]['path']
    params = traverse_util.flatten_dict(self.variables['params'], sep='/')
    return np.asarray(params[f'{first}/kernel'])


def _abstract_state(config, model) -> train.TrainState:
  """Shapes, dtypes and one-device shardings of the run's TrainState: what a checkpoint is
  restored into, made without computing an initialization."""
  # The optimizer state's structure, all that restoring needs of it, is the same for any
  # schedule and evaluation period.
  tx = optim.create_optimizer(config.optimizer,
                              optax.constant_schedule(config.optimizer.learning_rate),
                              steps_per_eval=1)
  shapes = jax.eval_shape(
      lambda: train.create_train_state(config, model, tx, (1, *input_shape(config))))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)


def restore(workdir: str, step: int | None = None) -> Restored:
  """The run in `workdir` at checkpoint `step` (default: the latest readable one).

  Raises UserError (one line) for a missing workdir, a workdir with no config.json or no
  checkpoint, a missing step, or checkpoints that cannot be read.
  """
  config = read_run_config(workdir)
  num_classes = dataset_spec(config.data.name).num_classes
  model = validate.build_model(config, num_classes, parallel.make_mesh(1, 1))
  like = _abstract_state(config, model)
  checkpoints = Checkpoints(workdir, create=False)
  try:
    state = checkpoints.restore(like, step)
  finally:
    checkpoints.close()
  return Restored(config, model, {'params': state.params, 'batch_stats': state.batch_stats},
                  int(state.step))
