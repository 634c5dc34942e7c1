"""The ('data', 'model') device mesh, and placing the train state and batches on it."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.errors import UserError


def make_mesh(data: int, model: int) -> Mesh:
  """A data x model mesh; -1 on the data axis takes every device the model axis leaves."""
  devices = jax.devices()
  if model < 1 or (data < 1 and data != -1):
    raise UserError(f'mesh.data={data}, mesh.model={model}: sizes must be >= 1 (or mesh.data=-1)')
  if data == -1:
    data = len(devices) // model
  if data < 1 or data * model > len(devices):
    raise UserError(f'mesh.data={data} x mesh.model={model} needs {max(data, 1) * model} devices '
                    f'but {len(devices)} are present; lower the mesh sizes')
  return Mesh(np.asarray(devices[:data * model]).reshape(data, model), ('data', 'model'))


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Global arrays, split over the data axis, from each process's share of the batch."""
  sharding = NamedSharding(mesh, P('data'))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def prefetch_to_mesh(batches, mesh: Mesh, size: int = 2):
  """Keeps `size` batches in flight to the devices ahead of the step that consumes them."""
  queue = []
  for batch in batches:
    queue.append(shard_batch(batch, mesh))
    if len(queue) == size:
      yield queue.pop(0)
  yield from queue
