"""Config checks that run before any compute; each failure is one UserError line."""

import jax
import jax.numpy as jnp

from jaxcnn import optim
from jaxcnn.data.datasets import DATASETS
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
  _require(config.data.name in DATASETS, f"unknown data.name '{config.data.name}'; known: "
           f"{', '.join(sorted(DATASETS))}")
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
  _require(0 <= train.label_smoothing < 1,
           f'train.label_smoothing={train.label_smoothing} must be in [0, 1)')
  dropout = config.model.get('dropout_rate', 0.0)
  _require(0 <= dropout < 1, f'model.dropout_rate={dropout} must be in [0, 1)')
  _require(config.eval.crops == 1, f'eval.crops={config.eval.crops}: only 1 (whole image) is '
           'implemented so far; set --config.eval.crops=1')


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
  """The configured model, checked against the mesh it will be split over."""
  try:
    model = create_model(config.model, num_classes)
  except (ValueError, TypeError) as e:
    raise UserError(f"cannot build model '{config.model.name}': {e}") from None
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
