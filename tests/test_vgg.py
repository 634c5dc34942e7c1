"""VGG: exact parameter counts of every preset, VGG-16's multiply-adds, forward and BN stats."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (assert_smallest_input, load_config, load_config_module, param_count,
                      preset_model)

from jaxcnn.models import create_model
from jaxcnn.models.layers import adaptive_avg_pool

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('vgg')

PRESETS = load_config_module('vgg').PRESETS
# torchvision's vgg*/vgg*_bn at 1000 classes (REFERENCE.md).
EXPECTED = {'vgg11': 132_863_336, 'vgg13': 133_047_848, 'vgg16': 138_357_544,
            'vgg19': 143_667_240, 'vgg11_bn': 132_868_840, 'vgg13_bn': 133_053_736,
            'vgg16_bn': 138_365_992, 'vgg19_bn': 143_678_248}

# XLA:CPU compiles threefry random draws slowly (about 2 s per weight shape, 20-30 s per model
# on busy cores); the RngBitGenerator key draws the same distributions at a fraction of that.
INIT_KEY = jax.random.key(0, impl='rbg')


def conv_dense_macs(model, shape) -> int:
  """Output elements x kernel elements x input channels, summed over every Conv and Dense."""
  macs = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, (nn.Conv, nn.Dense)):
      kernel = context.module.variables['params']['kernel']
      macs.append(int(np.prod(out.shape[1:])) * int(np.prod(kernel.shape[:-1])))
    return out

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  return sum(macs)


def test_presets_cover_the_reference_table():
  assert PRESETS[0] == 'vgg16' and set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize('preset', PRESETS)
def test_parameter_counts(preset):
  model, config = preset_model('vgg', preset)
  assert config.data.image_size == 224 and config.model.dropout_rate == 0.5
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  assert param_count(shapes['params']) == EXPECTED[preset]
  if config.model.batch_norm:  # running mean and variance of every conv
    assert param_count(shapes['batch_stats']) == EXPECTED[preset] - EXPECTED[preset[:-3]]
  else:
    assert 'batch_stats' not in shapes


def test_vgg16_macs_at_224():
  macs = conv_dense_macs(preset_model('vgg', 'vgg16')[0], (1, 224, 224, 3))
  assert abs(macs / 15.470e9 - 1) < 0.005, macs


def test_adaptive_pool_averages_larger_and_repeats_smaller_maps():
  x = jnp.arange(2 * 14 * 14 * 3, dtype=jnp.float32).reshape(2, 14, 14, 3)
  expected = x.reshape(2, 7, 2, 7, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(adaptive_avg_pool(x, 7), expected, rtol=1e-6)
  one = jnp.arange(2 * 3, dtype=jnp.float32).reshape(2, 1, 1, 3)
  np.testing.assert_array_equal(adaptive_avg_pool(one, 7), jnp.broadcast_to(one, (2, 7, 7, 3)))


def test_smallest_input_is_32():
  assert_smallest_input(preset_model('vgg', 'vgg11', 10)[0], 32)


def test_unknown_depth_fails_when_built():
  config = load_config('vgg')
  config.model.depth = 12
  with pytest.raises(ValueError, match='unknown VGG depth 12'):
    create_model(config.model, 10)


@pytest.fixture(scope='module')
def vgg11_bn_variables():
  """One init serves both tests (XLA:CPU compiles and fills 129M random weights slowly)."""
  model = preset_model('vgg', 'vgg11_bn', 10)[0]
  x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
  return model, jax.jit(model.init)(INIT_KEY, x), x


def test_vgg11_forward_at_32(vgg11_bn_variables):
  model = preset_model('vgg', 'vgg11', 10)[0]
  _, bn_variables, x = vgg11_bn_variables
  # VGG-11's parameters are VGG-11-BN's less the BN layers: same names, same shapes.
  params = {k: v for k, v in bn_variables['params'].items() if not k.endswith('_bn')}
  assert jax.tree.map(np.shape, params) == jax.tree.map(
      np.shape, jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params'])
  logits = jax.jit(model.apply)({'params': params}, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))


def test_vgg11_bn_statistics_update_only_in_training(vgg11_bn_variables):
  model, variables, x = vgg11_bn_variables
  stats = variables['batch_stats']
  apply = jax.jit(model.apply, static_argnames=('train', 'mutable'))
  logits, updates = apply(variables, x, train=True, rngs={'dropout': jax.random.key(1)},
                          mutable=('batch_stats',))
  assert logits.shape == (2, 10)
  for name in stats:
    for stat in ('mean', 'var'):
      change = jnp.abs(updates['batch_stats'][name][stat] - stats[name][stat]).max()
      assert float(change) > 0, (name, stat)

  logits, unchanged = apply(variables, x, train=False, mutable=('batch_stats',))
  assert logits.shape == (2, 10)
  jax.tree.map(np.testing.assert_array_equal, unchanged['batch_stats'], stats)
