"""A torchvision state_dict as the variables of the jaxcnn model with its layout, and the run
that holds them: WORKDIR/config.json and one checkpoint (step 0: params and batch_stats).

Every tensor the jaxcnn model has must come from the state_dict with the shape it implies, and
the state_dict may hold nothing else (but BN's `num_batches_tracked`): the first tensor that
differs is named in a one-line UserError before anything is written.

Normalization: torchvision's weights expect pixel / 255 normalized with ImageNet's mean and
std. GoogLeNet's and Inception v3's (transform_input=True) rescale that inside the model to
(pixel / 255 - 0.5) / 0.5; the converted run's config normalizes with mean 0.5 and std 0.5
instead, which gives the network the same input, and its model has no such step.
"""

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxcnn import config as config_lib
from jaxcnn import restored, rundir
from jaxcnn.checkpoint import Checkpoints
from jaxcnn.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from jaxcnn.errors import UserError
from jaxcnn.pretrained import Arch, layout, names


def run_config(arch: Arch):
  """The preset of `arch`, normalizing its input as torchvision's weights expect."""
  config = config_lib.load(os.path.join(config_lib.CONFIGS_DIR, arch.config))
  if arch.transform_input:
    config.data.mean, config.data.std = (0.5,) * 3, (0.5,) * 3
  else:
    config.data.mean, config.data.std = IMAGENET_MEAN, IMAGENET_STD
  return config


@dataclasses.dataclass(frozen=True)
class Target:
  """Where a torchvision tensor goes in the jaxcnn variables."""
  path: tuple[str, ...]  # collection, module path, leaf
  shape: tuple[int, ...]  # jaxcnn's
  flattened_channels: int | None  # a dense layer reading a flattened map of this many channels


def targets(arch: Arch, config) -> dict[str, Target]:
  """torchvision's state_dict key of every jaxcnn tensor of `arch`, in torchvision's order:
  module by module as the model calls them, each module's weight, bias, running mean, var."""
  model = restored.run_model(config)
  variables, order = restored.traced(lambda image: model.init(jax.random.key(0), image), config)
  family = names.FAMILIES[arch.family]
  flattened = family.flattened(model)
  found = []
  for (collection, *module, name), leaf in traverse_util.flatten_dict(variables).items():
    torch_name = names.LEAVES[collection, name]
    key = f'{family.module_name(model, tuple(module))}.{torch_name}'
    rank = (order.index(tuple(module)), names.LEAF_ORDER.index(torch_name))
    found.append((rank, key, Target((collection, *module, name), leaf.shape,
                                    flattened.get(tuple(module)))))
  return {key: target for _, key, target in sorted(found, key=lambda item: item[0])}


def convert(arch: Arch, state_dict: Mapping[str, np.ndarray], source: str) -> dict:
  """The jaxcnn variables ({'params', 'batch_stats'}, float32 numpy) of `arch` from
  torchvision's `state_dict` (numpy arrays) read from `source`; a UserError naming the first
  tensor that is extra, missing or of another shape."""
  expected = targets(arch, run_config(arch))
  family = names.FAMILIES[arch.family]
  not_arch = f"{source} does not hold torchvision's {arch.name} weights"
  converted = {}
  for key, value in state_dict.items():
    if key.rsplit('.', 1)[-1] in names.IGNORED_BUFFERS:
      continue
    key = family.current_key(key)
    target = expected.get(key)
    if target is None:
      raise UserError(f"{not_arch}: it has a tensor '{key}', which {arch.name} has not "
                      "(another architecture's weights?)")
    shape = layout.torch_shape(target.shape)
    if tuple(value.shape) != shape:
      raise UserError(f"{not_arch}: its tensor '{key}' has shape {tuple(value.shape)} where "
                      f"{arch.name}'s has {shape} (another architecture's weights?)")
    converted[target.path] = layout.to_jaxcnn(np.asarray(value, np.float32),
                                              target.flattened_channels)
  missing = [key for key, target in expected.items() if target.path not in converted]
  if missing:
    raise UserError(f"{not_arch}: it lacks {arch.name}'s tensor '{missing[0]}'"
                    + (f' and {len(missing) - 1} more' if len(missing) > 1 else ''))
  return traverse_util.unflatten_dict(converted)


def check_workdir(workdir: str) -> None:
  """A converted run goes to a new (or empty) directory: nothing of another run is touched."""
  if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
    raise UserError(f'workdir {workdir} exists and is not empty; pass a new --workdir')
  rundir.check_writable(workdir)


def write_run(arch: Arch, variables: dict, workdir: str) -> None:
  """WORKDIR/config.json (the preset of `arch` with torchvision's normalization) and
  checkpoints/0 with `variables`. Written under a temporary name beside WORKDIR and renamed
  into place when complete: a failure leaves nothing behind."""
  check_workdir(workdir)
  parent = os.path.dirname(os.path.abspath(workdir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(workdir))}.converting-',
                             dir=parent)
  try:
    rundir.write_run_config(staging, run_config(arch))
    checkpoints = Checkpoints(staging, keep=1)
    # As jax arrays: orbax writes the converted (transposed, strided) numpy views several
    # times slower (VGG-11: 5.7 s against 1.5 s, the copy included).
    as_saved = jax.tree.map(jnp.asarray, {'params': variables['params'],
                                          'batch_stats': variables.get('batch_stats', {})})
    try:
      checkpoints.save({'step': jnp.int32(0), **as_saved})
    finally:
      checkpoints.close()
    if os.path.isdir(workdir):
      os.rmdir(workdir)  # empty (check_workdir): the staging directory takes its place
    os.rename(staging, workdir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
