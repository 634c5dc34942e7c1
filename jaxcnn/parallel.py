"""The ('data', 'model') device mesh, and placing the train state and batches on it.

Every model is data parallel: the batch is split over `data` and the train step is one
`jax.jit` program, so batch-norm statistics are those of the global batch. A model that can
split itself over `model` (AlexNet's towers) says how with a `partition_specs(params)` method
and runs under `jax.shard_map`; its parameters and their optimizer state live split too.
"""

import dataclasses
import os
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.errors import UserError


def initialize_distributed(distributed) -> None:
  """Starts JAX's multi-controller runtime when the config or the environment asks for it.

  Must run before anything touches a JAX device; a second call does nothing.
  """
  if jax.distributed.is_initialized():
    return
  timeouts = dict(initialization_timeout=distributed.initialization_timeout_seconds,
                  heartbeat_timeout_seconds=distributed.heartbeat_timeout_seconds,
                  shutdown_timeout_seconds=distributed.shutdown_timeout_seconds)
  if distributed.coordinator_address:
    jax.distributed.initialize(distributed.coordinator_address, distributed.num_processes,
                               distributed.process_id, **timeouts)
  elif (int(os.environ.get('SLURM_NTASKS', '1')) > 1
        or len(os.environ.get('TPU_WORKER_HOSTNAMES', '').split(',')) > 1):
    jax.distributed.initialize(**timeouts)  # reads SLURM's or the TPU slice's environment


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


def check_fits(config, model, mesh: Mesh) -> None:
  """The batches divide over the data devices and processes, and the model over the model axis
  (a UserError if not): checked before the model is initialized, so that the run fails at once."""
  data_devices, processes = mesh.shape['data'], jax.process_count()
  for key in ('train.batch_size', 'eval.batch_size'):
    section, name = key.split('.')
    size = config[section][name]
    if size % data_devices or size % processes:
      raise UserError(f'{key}={size} does not divide over {data_devices} data-parallel devices '
                      f'and {processes} processes; use a multiple of {data_devices * processes}')
  split = mesh.shape['model']
  if split > 1 and not hasattr(model, 'partition_specs'):
    raise UserError(f"mesh.model={split}: model '{config.model.name}' has no model-parallel "
                    'layout (only alexnet splits its towers over devices); set '
                    '--config.mesh.model=1')
  towers = getattr(model, 'towers', 1)
  if towers % split:
    raise UserError(f'mesh.model={split} must divide model.towers={towers}: each device holds '
                    'whole towers')


def _model_apply(model, mesh: Mesh):
  """`model.apply`; on a mesh whose model axis is > 1, the same under `jax.shard_map`, each
  device running its part of the model with its slice of the parameters."""
  if mesh.shape['model'] == 1:
    return model.apply
  local = model.clone(mesh_axes=('data', 'model'))

  def apply(variables, images, train=False, rngs=None, mutable=False):
    specs = {name: model.partition_specs(tree) if name == 'params' else P()
             for name, tree in variables.items()}

    def local_apply(variables, images, rngs):
      return local.apply(variables, images, train=train, rngs=rngs, mutable=mutable)

    return jax.shard_map(local_apply, mesh=mesh, in_specs=(specs, P('data'), P()),
                         out_specs=(P('data'), P()) if mutable else P('data'))(
                             variables, images, rngs or {})

  return apply


def _state_shardings(state, model, mesh: Mesh):
  """Shardings of a TrainState: parameters, and the optimizer state that mirrors them, split
  as the model asks on the model axis (else replicated); everything else replicated."""
  replicated = NamedSharding(mesh, P())
  if mesh.shape['model'] > 1:
    param_shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                                   model.partition_specs(state.params),
                                   is_leaf=lambda x: isinstance(x, P))
  else:
    param_shardings = jax.tree.map(lambda _: replicated, state.params)
  opt_shardings = optax.tree_utils.tree_map_params(
      state.tx, lambda _, sharding: sharding, state.opt_state, param_shardings,
      transform_non_params=lambda _: replicated)
  return jax.tree.map(lambda _: replicated, state).replace(
      params=param_shardings, opt_state=opt_shardings)


@dataclasses.dataclass
class Placement:
  mesh: Mesh
  state: Any  # the train state on the mesh, running the model as the mesh splits it
  shardings: Any  # of `state`
  batch_sharding: NamedSharding  # batches split over the data axis


def place(model, state, mesh: Mesh) -> Placement:
  """A fresh train state of `model` placed on `mesh` (check_fits has passed), running the
  model under shard_map where the mesh splits it. A state of shapes (jax.eval_shape's) is
  placed as shapes with shardings."""
  state = state.replace(apply_fn=_model_apply(model, mesh))
  shardings = _state_shardings(state, model, mesh)
  if isinstance(jax.tree.leaves(state)[0], jax.ShapeDtypeStruct):
    state = jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(
        leaf.shape, leaf.dtype, sharding=sharding), state, shardings)
  else:
    state = put(state, shardings)
  return Placement(mesh, state, shardings, batch_sharding(mesh))


def put(tree, shardings):
  """`tree` placed with `shardings`, from a host copy of its values: each process holds the
  whole value and keeps its own devices' parts. (A jax.Array on this process's one device,
  put straight onto a mesh of several processes with one device each, becomes an array
  whose shard claims every device of the mesh, which orbax cannot save.)"""
  return jax.device_put(jax.device_get(tree), shardings)


def replicate(tree, mesh: Mesh):
  return put(tree, NamedSharding(mesh, P()))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split over the data axis (and repeated over the model axis)."""
  return NamedSharding(mesh, P('data'))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Global arrays, split over the data axis, from each process's share of the batch (numpy);
  global jax.Arrays, which the in-memory path makes on the mesh, pass through unchanged."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: x if isinstance(x, jax.Array)
                      else jax.make_array_from_process_local_data(sharding, x), local_batch)


def prefetch_to_mesh(batches, mesh: Mesh, size: int = 2):
  """Keeps `size` batches in flight to the devices ahead of the step that consumes them."""
  queue = []
  for batch in batches:
    queue.append(shard_batch(batch, mesh))
    if len(queue) == size:
      yield queue.pop(0)
  yield from queue
