"""Model registry: every architecture is a Flax linen module registered by name.

`create_model(config.model, num_classes)` builds a model from the `model` block of a config:
`model.name` picks the class, every other key of the block is passed as a constructor field.
"""

import dataclasses
import difflib
import importlib
import pkgutil

import flax.linen as nn

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


# Importing each family's module registers its models.
for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f'{__name__}.{_module.name}')
