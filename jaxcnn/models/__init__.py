"""Model registry and factory: every architecture is a Flax linen module registered by name.

`create_model(config.model, num_classes)` builds a model from the `model` block of a config:
`model.name` picks the class, every other key of the block is passed as a constructor field.
`build_model(config, num_classes, channels)` is what training and restoring use: that model,
computing in `train.compute_dtype`, checked against the config's input size.

Every model declares `min_input_size()`, the smallest image side its layers accept (see
`layers.smallest_input`), so one check serves them all.
"""

import contextlib
import dataclasses
import difflib
import importlib
import pkgutil

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.errors import UserError

_MODELS: dict[str, type[nn.Module]] = {}


def register(name: str):
  """Class decorator that makes a module available to configs as `model.name=name`."""

  def add(cls):
    if name in _MODELS:
      raise ValueError(f'model name {name!r} is registered twice')
    _MODELS[name] = cls
    return cls

  return add


def model_names() -> list[str]:
  return sorted(_MODELS)


def model_class(name: str) -> type[nn.Module]:
  if name not in _MODELS:
    close = difflib.get_close_matches(name, _MODELS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ''
    raise ValueError(f"unknown model.name '{name}'; {hint}known: {', '.join(model_names())}")
  return _MODELS[name]


def create_model(model_config, num_classes: int) -> nn.Module:
  """Builds the registered module named by `model_config.name` with the block's other keys."""
  fields = dict(model_config)
  cls = model_class(fields.pop('name'))
  known = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name'}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"model '{model_config.name}' has no option(s) {', '.join(unknown)}; "
                     f"its options are: {', '.join(sorted(known - {'num_classes'}))}")
  return cls(num_classes=num_classes, **fields)


def build_model(config, num_classes: int, channels: int, check_layers: bool = True) -> nn.Module:
  """The configured model, computing in `train.compute_dtype` (parameters stay float32).

  Raises UserError when a model option is bad or data.image_size is below the model's
  smallest input. `check_layers=False` skips tracing the model to check the options that
  only its layers check: for a caller whose next step traces it under `layer_errors`
  (steps.create_train_state), and for the config of a run, which built this model when it
  trained.
  """
  name = config.model.name
  try:
    model = create_model(config.model, num_classes).clone(
        dtype=jnp.dtype(config.train.compute_dtype))
    smallest = model.min_input_size()
  except (ValueError, TypeError) as e:
    raise UserError(f"cannot build model '{name}': {e}") from None
  size = config.data.image_size
  if size < smallest:
    raise UserError(f"data.image_size={size} is too small for model '{type(model).__name__}': "
                    f'the smallest input it accepts is {smallest}x{smallest}')
  if check_layers:
    with layer_errors(name):
      jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                     jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32))
  return model


@contextlib.contextmanager
def layer_errors(name: str):
  """An option that only the layers of model `name` check (an unknown activation, say) fails
  when the model is first traced: inside this block, as a one-line UserError."""
  try:
    yield
  except (ValueError, TypeError) as e:
    raise UserError(f"cannot build model '{name}': {str(e).splitlines()[0]}") from None


# Importing each family's module registers its models.
for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f'{__name__}.{_module.name}')
