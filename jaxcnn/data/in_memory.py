"""The in-memory path: a small dataset's uint8 arrays on every device, each batch made there.

The train and eval splits are read once (arrays.py) and replicated on every device of the
mesh: a shuffled global batch needs arbitrary rows on every device, and with every row at hand
each device gathers its own with no communication (CIFAR-10's 60,000 images take 184 MB a
device). One function makes each batch, a global jax.Array split over the mesh's 'data' axis:
under shard_map every data-parallel device gathers its rows of the global batch and augments
them (jax_augment.py) or cuts their eval views (jax_preprocess.py). The training loop runs it
inside the train step's program (train.py), so a step is one program; `train_batches` runs it
alone, for tools that look at batches.

Each epoch's order is a permutation drawn with jax.random from (seed, epoch), and each
example's augmentation keys come from (seed, epoch, its index in the epoch), so the batch of
step s is a function of the config and s alone: resumed runs, any mesh and any number of
processes see the same global batches. An epoch drops the last partial batch; evaluation
covers every example once, the last batch padded with zeros and `mask` marking the real rows.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.data import arrays, jax_augment, jax_preprocess
from jaxcnn.data.datasets import dataset_spec
from jaxcnn.data.recipes import check_dataset


def epoch_keys(seed: int, epoch) -> tuple[jax.Array, jax.Array]:
  """(the key of the epoch's order, the key its examples' augmentation keys fold in from)."""
  order, examples = jax.random.split(jax.random.fold_in(jax.random.key(seed), epoch))
  return order, examples


def example_key(seed: int, epoch, index) -> jax.Array:
  """The augmentation key of the example at position `index` of epoch `epoch`."""
  return jax.random.fold_in(epoch_keys(seed, epoch)[1], index)


def _replicated(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """`array` on every device of the mesh, from each process's own copy."""
  return jax.make_array_from_callback(array.shape, NamedSharding(mesh, P()),
                                      lambda index: array[index])


class InMemoryData:
  """Global train and eval batches (dicts of jax.Arrays split over the mesh's 'data' axis)."""

  def __init__(self, config, mesh: Mesh):
    self.config = config
    spec = dataset_spec(config.data.name)
    splits = arrays.load(config.data.name, config.data.data_dir, config.data.download)
    train_images, train_labels = splits[spec.train_split]
    eval_images, eval_labels = splits[spec.eval_split]
    check_dataset(config, train_images.shape[1:])
    self.num_classes, self.channels = spec.num_classes, spec.channels
    self.global_batch, self.global_eval_batch = config.train.batch_size, config.eval.batch_size
    self.train_batch = self.global_batch // jax.process_count()  # this process's rows
    self.steps_per_epoch = len(train_images) // self.global_batch
    self.eval_examples = len(eval_images)
    self.eval_steps = math.ceil(self.eval_examples / self.global_eval_batch)
    self._train = _replicated(train_images, mesh), _replicated(train_labels, mesh)
    self._eval = _replicated(eval_images, mesh), _replicated(eval_labels, mesh)
    self._data_devices = mesh.shape['data']
    self._epoch_order = jax.jit(
        lambda epoch: jax.random.permutation(epoch_keys(config.seed, epoch)[0],
                                             len(train_images)),
        out_shardings=NamedSharding(mesh, P()))
    split_rows = functools.partial(jax.shard_map, mesh=mesh, out_specs=P('data'))
    # Traceable, for the one program that makes a batch and takes the step (train.py).
    self.make_train_batch = split_rows(self._train_rows, in_specs=P())
    self._train_batch = jax.jit(self.make_train_batch)
    self._eval_batch = jax.jit(split_rows(self._eval_rows, in_specs=P()))

  def _own_positions(self, global_batch: int, first):
    """Positions, from `first` on, of this device's rows of a global batch."""
    local = global_batch // self._data_devices
    return first + jax.lax.axis_index('data') * local + jnp.arange(local)

  def _train_rows(self, images, labels, order, step):
    epoch, step_in_epoch = jnp.divmod(step, self.steps_per_epoch)
    positions = self._own_positions(self.global_batch, step_in_epoch * self.global_batch)
    rows = order[positions]
    keys = jax.vmap(functools.partial(example_key, self.config.seed, epoch))(positions)
    augment = functools.partial(jax_augment.train_image, config=self.config)
    return {'image': jax.vmap(augment)(images[rows], keys), 'label': labels[rows]}

  def _eval_rows(self, images, labels, step):
    positions = self._own_positions(self.global_eval_batch, step * self.global_eval_batch)
    mask = positions < self.eval_examples
    rows = jnp.minimum(positions, self.eval_examples - 1)
    views = jax.vmap(functools.partial(jax_preprocess.eval_input, config=self.config))(
        images[rows])
    real = mask.reshape(mask.shape + (1,) * (views.ndim - 1))
    return {'image': jnp.where(real, views, 0.0), 'label': jnp.where(mask, labels[rows], 0),
            'mask': mask}

  def train_inputs(self, start_step: int = 0):
    """Yields forever, for each step from `start_step` on, the arrays from which
    make_train_batch(*arrays, step) makes the step's batch: the train images and labels and
    the epoch's order. The step's number comes from the train state, on the devices."""
    epoch, step_in_epoch = divmod(start_step, self.steps_per_epoch)
    while True:
      order = self._epoch_order(epoch)
      for _ in range(step_in_epoch, self.steps_per_epoch):
        yield (*self._train, order)
      epoch, step_in_epoch = epoch + 1, 0

  def train_batches(self, start_step: int = 0):
    """Yields training batches forever, beginning with the batch of `start_step`."""
    for step, arrays in enumerate(self.train_inputs(start_step), start_step):
      yield self._train_batch(*arrays, step)

  def eval_batches(self):
    """Yields `eval_steps` batches covering the eval split, each example once.

    Images are [batch, S, S, C], or [batch, V, S, S, C] with eval.crops=V > 1.
    """
    for step in range(self.eval_steps):
      yield self._eval_batch(*self._eval, step)
