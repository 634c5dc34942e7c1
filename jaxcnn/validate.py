"""Config checks that run before any compute; each failure is one UserError line."""

import difflib
import json
import os
import tempfile

import jax
import jax.numpy as jnp

from jaxcnn import optim
from jaxcnn.data.datasets import DATASETS
from jaxcnn.data.recipes import recipe_problem
from jaxcnn.errors import UserError
from jaxcnn.models import create_model, model_class
from jaxcnn.summary import called_jaxprs

_LARGEST_INPUT_TRIED = 1024


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)


def check_config(config) -> None:
  try:
    model_class(config.model.name)
  except ValueError as e:
    raise UserError(str(e)) from None
  close = difflib.get_close_matches(config.data.name, DATASETS, n=1)
  _require(config.data.name in DATASETS, f"unknown data.name '{config.data.name}'; "
           + (f"did you mean '{close[0]}'? " if close else '')
           + f"known: {', '.join(sorted(DATASETS))}")
  train, opt = config.train, config.optimizer
  _require(train.batch_size > 0, f'train.batch_size={train.batch_size} must be > 0')
  _require(config.eval.batch_size > 0, f'eval.batch_size={config.eval.batch_size} must be > 0')
  _require(config.data.image_size > 0, f'data.image_size={config.data.image_size} must be > 0')
  _require(train.num_steps >= 0, f'train.num_steps={train.num_steps} must be >= 0 (0: use num_epochs)')
  _require(train.num_steps > 0 or train.num_epochs > 0,
           f'train.num_epochs={train.num_epochs} must be > 0 when train.num_steps is 0')
  for key in ('train.log_every_steps', 'checkpoint.every_steps', 'checkpoint.keep'):
    section, name = key.split('.')
    _require(config[section][name] > 0, f'{key}={config[section][name]} must be > 0')
  _require(config.eval.every_steps >= 0, f'eval.every_steps={config.eval.every_steps} must be >= 0')
  _require(opt.learning_rate > 0, f'optimizer.learning_rate={opt.learning_rate} must be > 0')
  _require(0 <= opt.momentum < 1, f'optimizer.momentum={opt.momentum} must be in [0, 1)')
  _require(opt.weight_decay >= 0, f'optimizer.weight_decay={opt.weight_decay} must be >= 0')
  _require(opt.schedule in optim.SCHEDULES, f"unknown optimizer.schedule '{opt.schedule}'; "
           f"known: {', '.join(optim.SCHEDULES)}")
  _require(0 < opt.decay_factor < 1, f'optimizer.decay_factor={opt.decay_factor} must be in (0, 1)')
  _require(all(0 < m < 1 for m in opt.milestones) and list(opt.milestones) == sorted(opt.milestones),
           f'optimizer.milestones={tuple(opt.milestones)} must be increasing fractions in (0, 1)')
  _require(train.compute_dtype in ('float32', 'bfloat16', 'float64'), f"train.compute_dtype="
           f"'{train.compute_dtype}' must be 'float32', 'bfloat16' (mixed precision) or 'float64'")
  _require(train.compute_dtype != 'float64' or jax.config.jax_enable_x64,
           "train.compute_dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1")
  _require(0 <= train.label_smoothing < 1,
           f'train.label_smoothing={train.label_smoothing} must be in [0, 1)')
  dropout = config.model.get('dropout_rate', 0.0)
  _require(0 <= dropout < 1, f'model.dropout_rate={dropout} must be in [0, 1)')
  _require(config.eval.crops in (1, 5, 10), f'eval.crops={config.eval.crops} must be 1 (one '
           'image), 5 (4 corner and centre crops) or 10 (those and their mirror images)')
  _require(config.eval.crops == 1 or config.data.resize_size > config.data.image_size,
           f'eval.crops={config.eval.crops} cuts data.image_size={config.data.image_size} crops '
           f'from images resized to data.resize_size={config.data.resize_size}; set '
           'data.resize_size above image_size (e.g. 256 for 224) so that the crops differ')
  recipe = recipe_problem(config.data)
  _require(recipe is None, recipe or '')
  channels = DATASETS[config.data.name].channels
  for key in ('mean', 'std'):
    values = tuple(config.data[key])
    _require(len(values) in (0, channels), f'data.{key}={values} has {len(values)} values but '
             f"'{config.data.name}' has {channels} channel(s); give {channels} or () for the "
             "dataset's own")


def check_batch_sizes(config, data_devices: int, process_count: int) -> None:
  _require(not (config.train.batch_norm_per_device and config.mesh.model > 1),
           'train.batch_norm_per_device=True is for data-parallel meshes; set '
           '--config.mesh.model=1 (the model-parallel AlexNet has no batch norm)')
  for key in ('train.batch_size', 'eval.batch_size'):
    section, name = key.split('.')
    size = config[section][name]
    _require(size % data_devices == 0 and size % process_count == 0,
             f'{key}={size} does not divide over {data_devices} data-parallel devices and '
             f'{process_count} processes; use a multiple of {data_devices * process_count}')


def build_model(config, num_classes: int, mesh):
  """The configured model, computing in `train.compute_dtype`, checked against the mesh."""
  try:
    model = create_model(config.model, num_classes)
  except (ValueError, TypeError) as e:
    raise UserError(f"cannot build model '{config.model.name}': {e}") from None
  # Parameters stay float32 (flax's param_dtype); only the layers' computation changes.
  model = model.clone(dtype=jnp.dtype(config.train.compute_dtype))
  split = mesh.shape['model']
  if split > 1:
    _require(hasattr(model, 'partition_specs'),
             f"mesh.model={split}: model '{config.model.name}' has no model-parallel layout "
             '(only alexnet splits its towers over devices); set --config.mesh.model=1')
    towers = getattr(model, 'towers', 1)
    _require(towers % split == 0, f'mesh.model={split} must divide model.towers={towers}: '
             'each device holds whole towers')
  return model


def _all_shapes(jaxpr):
  for eqn in jaxpr.eqns:
    yield from (v.aval.shape for v in eqn.outvars)
    for sub in called_jaxprs(eqn):
      yield from _all_shapes(sub)


def input_problem(model, size: int, channels: int) -> str | None:
  """None if the model runs on size x size inputs and no activation is empty, else why not."""
  x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
  try:
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x).jaxpr
  except Exception as e:  # noqa: BLE001  (any layer's shape error)
    return str(e).splitlines()[0] if str(e) else type(e).__name__
  shapes = [leaf.shape for leaf in jax.tree.leaves(variables)] + list(_all_shapes(jaxpr))
  return 'a layer output is empty' if any(0 in shape for shape in shapes) else None


def check_input_size(model, input_shape) -> None:
  _, size, _, channels = input_shape
  reason = input_problem(model, size, channels)
  if reason is None:
    return
  name = model.__class__.__name__
  if input_problem(model, _LARGEST_INPUT_TRIED, channels) is not None:  # not a matter of size
    raise UserError(f"model '{name}' cannot run on {size}x{size} inputs: {reason}")
  low, high = size, _LARGEST_INPUT_TRIED  # smallest accepted size lies in (low, high]
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (low, middle) if input_problem(model, middle, channels) is None else (middle, high)
  raise UserError(f"data.image_size={size} is too small for model '{name}': the smallest input "
                  f'it accepts is {high}x{high}')


# What a resumed run may change: how long it trains, how it evaluates, checkpoints and
# reports, where its data lies, and the devices it runs on. Anything else would make the
# resumed steps those of another experiment.
_RESUMABLE_CHANGES = ('train.num_epochs', 'train.num_steps', 'train.log_every_steps', 'eval.',
                      'checkpoint.', 'data.data_dir', 'data.download', 'distributed.', 'mesh.')


def _flat(tree, prefix: str = '') -> dict:
  if not isinstance(tree, dict):
    return {prefix[:-1]: tree}
  return {k: v for key, value in tree.items() for k, v in _flat(value, f'{prefix}{key}.').items()}


def resume_conflicts(saved, config) -> list[str]:
  """The keys on which `config` differs from the `saved` config of a run it would resume,
  other than those a resumed run may change, as 'key: saved -> new'. Keys the saved config
  lacks (added to jaxcnn after that run began) are not compared."""
  as_plain = lambda c: _flat(json.loads(c.to_json_best_effort()))
  old, new = as_plain(saved), as_plain(config)
  return [f'{key}: {old[key]!r} -> {new.get(key)!r}' for key in sorted(old)
          if old[key] != new.get(key) and not key.startswith(_RESUMABLE_CHANGES)]


def check_workdir_writable(workdir: str) -> None:
  """Proves that `workdir`, or where it would be created, takes files; creates nothing."""
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise UserError(f'workdir {workdir} is not writable ({e.strerror or e}); pass a --workdir '
                    'you can write to') from None
