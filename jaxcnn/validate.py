"""Config checks that need nothing but the config; each failure is one UserError line.

What only the data, the model or the devices can tell (a dataset that is not prepared, an
input too small for the model, a batch that does not divide over the mesh) is checked where
those are built: jaxcnn/data, jaxcnn/models and jaxcnn/parallel.py.
"""

import difflib

import jax

from jaxcnn import optim
from jaxcnn.data.datasets import DATASETS
from jaxcnn.data.recipes import recipe_problem
from jaxcnn.errors import UserError
from jaxcnn.models import model_class


# Counts, sizes and lengths: (key, smallest value, what 0 means where 0 is allowed). The
# model keys are checked where the model has them.
COUNTS = (('train.batch_size', 1, None), ('eval.batch_size', 1, None),
          ('data.image_size', 1, None), ('data.shuffle_buffer', 1, None),
          ('data.resize_size', 0, 'resize the whole image'),
          ('train.num_steps', 0, 'use num_epochs'), ('train.num_epochs', 0, None),
          ('train.log_every_steps', 1, None),
          ('eval.every_steps', 0, 'after every epoch'), ('checkpoint.every_steps', 1, None),
          ('checkpoint.keep', 1, None), ('optimizer.plateau_patience', 1, None),
          ('optimizer.warmup_epochs', 0, None), ('distributed.num_processes', 1, None),
          ('distributed.initialization_timeout_seconds', 1, None),
          ('distributed.heartbeat_timeout_seconds', 1, None),
          ('distributed.shutdown_timeout_seconds', 1, None), ('train.stop_grace_seconds', 1, None),
          ('model.hidden_units', 1, None), ('model.towers', 1, None),
          ('model.growth_rate', 1, None), ('model.conv1_padding', 0, None))


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
  for key, smallest, zero_means in COUNTS:
    section, name = key.split('.')
    value = config[section].get(name, smallest)
    _require(value >= smallest, f'{key}={value} must be {"> 0" if smallest else ">= 0"}'
             + (f' (0: {zero_means})' if zero_means else ''))
  _require(train.num_steps > 0 or train.num_epochs > 0,
           f'train.num_epochs={train.num_epochs} must be > 0 when train.num_steps is 0')
  _require(0 < opt.plateau_min_scale <= 1,
           f'optimizer.plateau_min_scale={opt.plateau_min_scale} must be in (0, 1]')
  processes = config.distributed.num_processes
  _require(0 <= config.distributed.process_id < processes,
           f'distributed.process_id={config.distributed.process_id} must be in [0, '
           f'distributed.num_processes={processes})')
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
  _require(not (train.batch_norm_per_device and config.mesh.model > 1),
           'train.batch_norm_per_device=True is for data-parallel meshes; set '
           '--config.mesh.model=1 (the model-parallel AlexNet has no batch norm)')
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
