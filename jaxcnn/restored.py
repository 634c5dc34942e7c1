"""A trained run, restored for use: `jaxcnn.restore(workdir)` (notebooks, jaxcnn.predict).

    restored = jaxcnn.restore('runs/lenet-default')
    probabilities = restored.predict(images)  # uint8 H x W x C images -> [N, classes]

Restoring needs only the run's config.json, its model and the model's variables in one
checkpoint (the optimizer state is not read, and no trainer is imported). It runs on one
device (the first of this process, a laptop's CPU included) whatever mesh and number of
processes wrote the checkpoint: checkpoints keep the single-device parameter layout. The
file is not named restore.py, which would make the submodule shadow the `jaxcnn.restore`
function.
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from ml_collections import config_dict

from jaxcnn import models, rundir
from jaxcnn.checkpoint import Checkpoints
from jaxcnn.data import arrays, jax_preprocess
from jaxcnn.data.datasets import dataset_spec, not_prepared_error, trains_in_memory
from jaxcnn.errors import UserError


def input_shape(config) -> tuple[int, int, int]:
  """The model's input for one image: image_size x image_size x the dataset's channels."""
  size = config.data.image_size
  return size, size, dataset_spec(config.data.name).channels


def run_model(config) -> nn.Module:
  """The model of a run's `config`, for its dataset's classes and channels. Its layers are not
  traced to check the config, which built the model before (DenseNet-201: a second); the
  callers trace the model anyway."""
  spec = dataset_spec(config.data.name)
  return models.build_model(config, spec.num_classes, spec.channels, check_layers=False)


def traced(forward, config) -> tuple[Any, list[tuple[str, ...]]]:
  """`forward(image)` traced (nothing is computed) on one image of the run's input shape: the
  shapes it returns, and the paths of the modules it calls in the order of their first call."""
  called = {}

  def record(call, args, kwargs, context):
    called.setdefault(context.module.path, None)
    return call(*args, **kwargs)

  with nn.intercept_methods(record):
    shapes = jax.eval_shape(forward, jax.ShapeDtypeStruct((1, *input_shape(config)), jnp.float32))
  return shapes, list(called)


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

  @functools.cached_property
  def _eval_image(self):
    return jax.jit(functools.partial(jax_preprocess.eval_image, config=self.config))

  def predict(self, images) -> np.ndarray:
    """Class probabilities [N, classes] of N uint8 images (H x W x C each, C the run's
    channels, any H and W), preprocessed as the run's evaluation preprocesses (with
    eval.crops=10: its centre view, whose accuracy the run logs as center_top1). The JAX
    preprocessing of the in-memory path serves both paths (tf.data's resizes and crops are
    the same, to float rounding), so predicting needs no TensorFlow; it compiles once per
    image size."""
    size = min(len(images), self.config.eval.batch_size)
    outputs = []
    for start in range(0, len(images), size):
      chunk = np.stack([self._eval_image(np.asarray(image)) for image in images[start:start + size]])
      # Padded to one batch shape, so that a single program is compiled.
      padded = np.pad(chunk, [(0, size - len(chunk))] + [(0, 0)] * (chunk.ndim - 1))
      outputs.append(np.asarray(self._probabilities(self.variables, padded))[:len(chunk)])
    return np.concatenate(outputs)

  @functools.cached_property
  def label_names(self) -> list[str] | None:
    """The class names of the run's dataset, where it is prepared here and TensorFlow reads
    it; else None."""
    name, data_dir = self.config.data.name, self.config.data.data_dir
    if name == 'synthetic' or not_prepared_error(name, data_dir):
      return None
    try:
      from jaxcnn.data.pipeline import prepared_builder
    except ImportError:  # no TensorFlow here
      return None
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
    if trains_in_memory(self.config.data):
      images, labels = arrays.load(name, self.config.data.data_dir, self.config.data.download)[
          dataset_spec(name).eval_split]
      return list(images[:count]), labels[:count]
    from jaxcnn.data.tensorflow import tfds
    from jaxcnn.data.pipeline import prepared_builder
    builder = prepared_builder(name, self.config.data.data_dir, self.config.data.download)
    examples = builder.as_dataset(split=dataset_spec(name).eval_split)
    if count is not None:
      examples = examples.take(count)
    examples = list(tfds.as_numpy(examples))
    return [e['image'] for e in examples], np.array([e['label'] for e in examples])

  def first_layer_filters(self) -> np.ndarray:
    """The kernel [height, width, in channels, filters] of the layer that reads the image:
    the first one with a 4-D kernel that the model calls."""
    _, called = traced(lambda image: self.model.apply(self.variables, image, train=False),
                       self.config)
    kernels = traverse_util.flatten_dict(self.variables['params'])
    first = next(path for path in called if getattr(kernels.get((*path, 'kernel')), 'ndim', 0) == 4)
    return np.asarray(kernels[(*first, 'kernel')])


def restore(workdir: str, step: int | None = None) -> Restored:
  """The run in `workdir` at checkpoint `step` (default: the latest readable one).

  Raises UserError (one line) for a missing workdir, a workdir with no config.json or no
  checkpoint, a missing step, or checkpoints that cannot be read.
  """
  config = rundir.read_run_config(workdir)
  model = run_model(config)
  variables, _ = traced(lambda image: model.init(jax.random.key(0), image), config)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                      {'step': jax.ShapeDtypeStruct((), jnp.int32),
                       'params': variables['params'],
                       'batch_stats': variables.get('batch_stats', {})})
  checkpoints = Checkpoints(workdir, create=False)
  try:
    saved = checkpoints.restore(like, step, partial=True)
  finally:
    checkpoints.close()
  return Restored(config, model, {'params': saved['params'], 'batch_stats': saved['batch_stats']},
                  int(saved['step']))
