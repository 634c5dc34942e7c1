"""NiN: exact parameter counts of both presets, multiply-adds, the smallest input, forward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_smallest_input, load_config_module, param_count, preset_model


PRESETS = load_config_module('nin').PRESETS
# default: REFERENCE.md (1000 classes). imagenette: the same blocks with a 10-map class block,
# 3*3*384*10+10 + 2*(10*10+10) = 34,790 parameters where 1000 classes take 5,459,000.
EXPECTED = {'default': 7_439_608, 'imagenette': 7_439_608 - 5_459_000 + 34_790}

# XLA:CPU compiles threefry random draws slowly (about 2 s per weight shape, 20-30 s per model
# on busy cores); the RngBitGenerator key draws the same distributions at a fraction of that.
INIT_KEY = jax.random.key(0, impl='rbg')


@pytest.mark.parametrize('preset', PRESETS)
def test_parameter_counts(preset):
  model, config = preset_model('nin', preset)
  assert config.data.image_size == 224 and config.model.dropout_rate == 0.5
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  assert param_count(shapes['params']) == EXPECTED[preset]
  assert set(shapes) == {'params'}


def test_macs_at_224():
  macs = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, nn.Conv):
      kernel = context.module.variables['params']['kernel']
      macs.append(int(np.prod(out.shape[1:])) * int(np.prod(kernel.shape[:-1])))
    return out

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: preset_model('nin', 'default')[0].init(jax.random.key(0),
                                                           jnp.zeros((1, 224, 224, 3))))
  assert len(macs) == 12
  assert abs(sum(macs) / 0.966e9 - 1) < 0.005, sum(macs)


def test_smallest_input_is_67():
  assert_smallest_input(preset_model('nin', 'imagenette')[0], 67)


def test_forward_at_smallest_input():
  model = preset_model('nin', 'imagenette')[0]
  x = np.random.default_rng(0).standard_normal((2, 67, 67, 3)).astype(np.float32)
  variables = jax.jit(model.init)(INIT_KEY, x)
  apply = jax.jit(model.apply, static_argnames='train')
  logits = apply(variables, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  np.testing.assert_array_equal(logits, apply(variables, x))  # no dropout in eval
  train_a = apply(variables, x, train=True, rngs={'dropout': jax.random.key(1)})
  train_b = apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)})
  assert float(jnp.abs(train_a - train_b).max()) > 0
