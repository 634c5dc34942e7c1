"""DenseNet: every preset's parameter and multiply-add count, smallest inputs, forward and BN."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from jaxcnn.models import create_model

from conftest import assert_smallest_input, load_config, load_config_module, param_count

pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)


def shapes_and_macs(model, shape):
  """Abstract variables and conv + dense multiply-adds (output elements x kernel fan-in)."""
  macs = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, (nn.Conv, nn.Dense)) and context.method_name == '__call__':
      kernel = context.module.variables['params']['kernel'].shape
      macs.append(int(np.prod(out.shape)) * int(np.prod(kernel[:-1])))
    return out

  def init():
    with nn.intercept_methods(record):
      return model.init(jax.random.key(0), jnp.zeros(shape))

  return jax.eval_shape(init), sum(macs)


def test_presets_default_first():
  assert load_config_module('densenet').PRESETS[0] == 'densenet121'
  assert load_config('densenet').model.depth == 121


@pytest.mark.parametrize('preset, classes, size, params, gmacs', [
    ('densenet121', 1000, 224, 7_978_856, 2.834),
    ('densenet169', 1000, 224, 14_149_480, 3.360),
    ('densenet201', 1000, 224, 20_013_928, 4.291),
    ('cifar_densenet_bc100', 10, 32, 769_162, None),
])
def test_preset_parameter_and_mac_counts(preset, classes, size, params, gmacs):
  config = load_config('densenet', preset)
  assert config.data.image_size == size
  variables, macs = shapes_and_macs(create_model(config.model, classes), (1, size, size, 3))
  assert param_count(variables['params']) == params
  if gmacs is not None:
    assert round(macs / 1e9, 3) == gmacs
  # Running mean and variance for every BN scale: 2 per BN channel, none of them trainable.
  bn_channels = sum(leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(
      variables['params']) if path[-1].key == 'scale')
  assert param_count(variables['batch_stats']) == 2 * bn_channels


def test_recipes():
  imagenet, cifar = load_config('densenet'), load_config('densenet', 'cifar_densenet_bc100')
  for config in (imagenet, cifar):
    opt = config.optimizer
    assert (opt.learning_rate, opt.momentum, opt.weight_decay) == (0.1, 0.9, 1e-4)
    assert opt.nesterov
    assert opt.schedule == 'multistep' and opt.decay_factor == 0.1
  assert (imagenet.train.batch_size, imagenet.train.num_epochs) == (256, 90)
  assert np.allclose(imagenet.optimizer.milestones, (1 / 3, 2 / 3))
  assert (imagenet.data.name, cifar.data.name) == ('imagenet2012', 'cifar10')
  assert (cifar.train.batch_size, cifar.train.num_epochs) == (64, 300)
  assert tuple(cifar.optimizer.milestones) == (0.5, 0.75)
  assert (cifar.model.name, cifar.model.growth_rate, cifar.model.dropout_rate) == (
      'cifar_densenet', 12, 0.0)


def test_smallest_input():
  # densenet: 7x7/2 conv and 3x3/2 pool take 29 to 8x8, the three 2x2 pools to 1x1; 28 ends
  # at 0x0. cifar_densenet: two 2x2 pools.
  assert_smallest_input(create_model(ConfigDict({'name': 'densenet'}), 10), 29)
  assert_smallest_input(create_model(ConfigDict({'name': 'cifar_densenet', 'depth': 16}), 10), 4)


@pytest.mark.parametrize('fields', [{'name': 'densenet', 'depth': 100},
                                    {'name': 'cifar_densenet', 'depth': 41}])
def test_bad_depth(fields):
  with pytest.raises(ValueError, match='depth'):
    jax.eval_shape(lambda: create_model(ConfigDict(fields), 10).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


def test_densenet121_forward_at_smallest_input():
  """Batch 1 at 29x29. Compiling DenseNet-121's random init takes minutes on a busy 2-core
  CPU, so the variables are drawn here (He-scaled normal) into shapes from eval_shape."""
  model = create_model(load_config('densenet').model, 1000)
  x = jax.random.normal(jax.random.key(1), (1, 29, 29, 3))
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  assert param_count(shapes['params']) == 7_978_856
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: rng.normal(
      scale=np.sqrt(2 / np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.1,
      size=s.shape).astype(np.float32), shapes)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])  # variances > 0
  logits = jax.jit(model.apply)(variables, x)
  assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


def test_cifar_densenet_forward_and_batch_stats():
  # DenseNet-BC with 2 bottleneck layers per block. 'rbg' keys: threefry's random bits take
  # XLA:CPU far longer to compile, and this test is about the network, not the generator.
  model = create_model(ConfigDict({'name': 'cifar_densenet', 'depth': 16, 'dropout_rate': 0.2}), 10)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(0, impl='rbg'), x)
  # 24 + 2 * 12 = 48 maps into transition 1, 24 + 24 = 48 into 2, 24 + 24 = 48 at the end.
  assert variables['params']['transition1']['conv']['kernel'].shape == (1, 1, 48, 24)
  assert variables['params']['classifier']['kernel'].shape == (48, 10)

  train_logits, updates = jax.jit(lambda v, x: model.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(2, impl='rbg')},
      mutable=['batch_stats']))(variables, x)
  assert train_logits.shape == (2, 10) and train_logits.dtype == jnp.float32
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), variables['batch_stats'],
                         updates['batch_stats'])
  assert all(jax.tree.leaves(changed))  # every BN's running mean and variance moved

  # Eval needs no dropout rng (dropout is off) and leaves the running statistics alone.
  eval_logits, frozen = jax.jit(lambda v, x: model.apply(
      v, x, train=False, mutable=['batch_stats']))(variables, x)
  assert eval_logits.shape == (2, 10) and eval_logits.dtype == jnp.float32
  jax.tree.map(np.testing.assert_array_equal, variables['batch_stats'], frozen['batch_stats'])
  assert not np.allclose(eval_logits, train_logits)  # running, not batch, statistics
