"""Config checks that run before any compute; each failure is one UserError line."""

import jax
import jax.numpy as jnp

from jaxcnn import optim
from jaxcnn.data.datasets import DATASETS
from jaxcnn.errors import UserError
from jaxcnn.models import model_class

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
  _require(config.mesh.model == 1, f'mesh.model={config.mesh.model}: model parallelism is not '
           'implemented yet; set --config.mesh.model=1')


def check_batch_sizes(config, data_devices: int, process_count: int) -> None:
  for key in ('train.batch_size', 'eval.batch_size'):
    section, name = key.split('.')
    size = config[section][name]
    _require(size % data_devices == 0 and size % process_count == 0,
             f'{key}={size} does not divide over {data_devices} data-parallel devices and '
             f'{process_count} processes; use a multiple of {data_devices * process_count}')


def _accepts(model, size: int, channels: int) -> bool:
  """Whether the model runs on size x size inputs with no layer left empty."""
  try:
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels))))
  except Exception:  # noqa: BLE001  (shape errors of any layer mean "too small")
    return False
  return all(0 not in leaf.shape for leaf in jax.tree.leaves(shapes))


def check_input_size(model, input_shape) -> None:
  _, size, _, channels = input_shape
  if _accepts(model, size, channels):
    return
  low, high = size, _LARGEST_INPUT_TRIED  # smallest accepted size lies in (low, high]
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (low, middle) if _accepts(model, middle, channels) else (middle, high)
  raise UserError(f"data.image_size={size} is too small for model '{model.__class__.__name__}': "
                  f'the smallest input it accepts is {high}x{high}')
