"""ResNet: every preset's parameter count (and the ImageNet nets' MACs), forward passes, batch
norm in train and eval, option-A shortcuts by hand, and plain nets versus residual nets."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_smallest_input, load_config, load_config_module, param_count

from jaxcnn import validate
from jaxcnn.models import create_model
from jaxcnn.models.resnet import BasicBlock

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = [pytest.mark.xdist_group('resnet'),
              pytest.mark.usefixtures('unoptimized')]  # XLA's optimizations off (conftest)

# preset -> (classes, input size, parameters, GMACs or None); torchvision's and the paper's counts.
REFERENCE = {
    'resnet18': (1000, 224, 11_689_512, 1.814),
    'resnet34': (1000, 224, 21_797_672, 3.664),
    'resnet50': (1000, 224, 25_557_032, 4.089),
    'resnet101': (1000, 224, 44_549_160, 7.801),
    'resnet152': (1000, 224, 60_192_808, 11.514),
    **{f'cifar_{kind}{depth}': (10, 32, params, None)
       for kind in ('resnet', 'plain')
       for depth, params in ((20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018),
                             (110, 1_727_962))},
}


def shapes_and_macs(model, shape):
  """Abstract variables (jax.eval_shape: no memory for the weights) and conv + dense MACs."""
  macs = 0

  def count_macs(next_fun, args, kwargs, context):
    nonlocal macs
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, (nn.Conv, nn.Dense)):
      kernel = context.module.variables['params']['kernel'].shape
      # conv: output elements x kh x kw x Cin; dense: in x out (one output row).
      macs += int(np.prod(out.shape[1:-1])) * int(np.prod(kernel))
    return out

  with nn.intercept_methods(count_macs):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  return variables, macs


def preset_model(preset, num_classes=None):
  config = load_config('resnet', preset)
  return create_model(config.model, num_classes or REFERENCE[preset][0])


def test_presets_and_recipes():
  module = load_config_module('resnet')
  assert module.PRESETS[0] == 'resnet50' and set(module.PRESETS) == set(REFERENCE) | {'digits'}
  assert module.get_config().to_dict() == module.get_config('resnet50').to_dict()
  for preset in module.PRESETS:
    validate.check_config(load_config('resnet', preset))  # a UserError for a value it refuses
  imagenet, cifar, plain = (load_config('resnet', p) for p in ('resnet50', 'cifar_resnet110',
                                                               'cifar_plain56'))
  assert (imagenet.model.name, imagenet.model.depth, imagenet.data.image_size) == ('resnet', 50, 224)
  assert (imagenet.train.batch_size, imagenet.train.num_epochs) == (256, 90)
  assert tuple(imagenet.optimizer.milestones) == pytest.approx((1 / 3, 2 / 3))
  assert (cifar.model.name, cifar.model.depth, cifar.model.shortcuts) == ('cifar_resnet', 110, True)
  assert (plain.model.depth, plain.model.shortcuts) == (56, False)
  assert (cifar.data.name, cifar.data.image_size, cifar.train.batch_size) == ('cifar10', 32, 128)
  assert cifar.train.num_steps == 64_000 and tuple(cifar.optimizer.milestones) == (0.5, 0.75)
  for config in (imagenet, cifar):
    opt = config.optimizer
    assert (opt.learning_rate, opt.momentum, opt.weight_decay, opt.schedule) == (
        0.1, 0.9, 1e-4, 'multistep')


@pytest.mark.parametrize('preset', list(REFERENCE))
def test_parameter_count(preset):
  classes, size, params, gmacs = REFERENCE[preset]
  variables, macs = shapes_and_macs(preset_model(preset), (1, size, size, 3))
  assert param_count(variables['params']) == params
  if gmacs is not None:
    assert round(macs / 1e9, 3) == gmacs


def batch(size, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((2, size, size, 3)), jnp.float32)


def filled(model, shape, seed=0):
  """Variables from numpy instead of model.init: XLA:CPU takes ~1 s per kernel shape to compile
  the random initializers (cifar_resnet20's real init is tested once, below)."""
  rng = np.random.default_rng(seed)

  def value(path, leaf):
    name = path[-1].key
    if name == 'kernel':  # He normal over fan_in keeps activations at unit scale
      return jnp.asarray(rng.standard_normal(leaf.shape, np.float32)
                         * np.sqrt(2 / np.prod(leaf.shape[:-1])))
    return jnp.full(leaf.shape, 1.0 if name in ('scale', 'var') else 0.0, leaf.dtype)

  variables, _ = shapes_and_macs(model, shape)
  return jax.tree_util.tree_map_with_path(value, variables)


def test_resnet18_forward_at_32():
  model = preset_model('resnet18')
  variables = filled(model, (1, 32, 32, 3))
  logits = jax.jit(model.apply)(variables, batch(32))
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits))) and float(jnp.std(logits)) > 1e-3


def test_smallest_inputs_are_one_pixel():
  # Every stride-2 layer pads, so n -> ceil(n / 2) never reaches 0: a 1x1 image runs through.
  assert_smallest_input(preset_model('resnet50'), 1)
  assert_smallest_input(preset_model('cifar_resnet20'), 1)


@pytest.fixture(scope='module')
def cifar20():
  model = preset_model('cifar_resnet20')
  x = batch(32)
  # An 'rbg' key draws from the same initializers; XLA:CPU compiles it 4x faster than threefry.
  return model, x, jax.jit(model.init)(jax.random.key(0, impl='rbg'), x[:1])


def test_cifar_resnet20_forward(cifar20):
  model, x, variables = cifar20
  logits = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert set(variables) == {'params', 'batch_stats'}
  assert bool(jnp.all(jnp.isfinite(logits))) and float(jnp.std(logits)) > 1e-3


def test_he_fan_out_initialization(cifar20):
  _, _, variables = cifar20
  kernel = variables['params']['layer3_2']['conv2']['kernel']  # 3x3x64x64: 36,864 draws
  assert abs(float(jnp.std(kernel)) / np.sqrt(2 / (9 * 64)) - 1) < 0.03
  assert float(jnp.abs(kernel).max()) > 3 * np.sqrt(2 / (9 * 64))  # untruncated, as torch's
  fc = variables['params']['fc']
  assert float(jnp.abs(fc['kernel']).max()) <= 1 / 8 and float(jnp.abs(fc['bias']).max()) <= 1 / 8
  assert float(jnp.abs(fc['bias']).max()) > 0  # PyTorch's Linear default: U(+-1/sqrt(64))


def test_batch_stats_update_in_train_and_freeze_in_eval(cifar20):
  model, x, variables = cifar20
  train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
  _, updates = train_apply(variables, x)
  before, after = variables['batch_stats'], updates['batch_stats']
  assert jax.tree.structure(before) == jax.tree.structure(after)
  # mean <- 0.9 mean + 0.1 batch mean, from zeros: the stem's new mean is a tenth of the batch's.
  stem = jax.lax.conv_general_dilated(x, variables['params']['conv1']['kernel'], (1, 1),
                                      [(1, 1)] * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(after['bn1']['mean'], 0.1 * stem.mean(axis=(0, 1, 2)), atol=1e-5)
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    assert float(jnp.abs(new - old).max()) > 1e-6
  eval_apply = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=['batch_stats']))
  _, eval_state = eval_apply(variables, x)
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(eval_state['batch_stats'])):
    np.testing.assert_array_equal(new, old)


def test_option_a_shortcut_subsamples_and_zero_pads():
  """With zeroed convs the residual is 0 and a block's output is relu(its shortcut)."""
  block = BasicBlock(32, strides=2, shortcut='zero_pad')
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 7, 7, 16)), jnp.float32)
  variables = filled(block, x.shape)
  assert param_count(variables['params']) == 9 * 16 * 32 + 9 * 32 * 32 + 4 * 32  # no shortcut weights
  zeroed = {**variables, 'params': jax.tree.map(jnp.zeros_like, variables['params'])}
  out = jax.jit(block.apply)(zeroed, x)
  assert out.shape == (2, 4, 4, 32)  # 7 -> ceil(7 / 2)
  np.testing.assert_array_equal(out[..., :16], jax.nn.relu(x[:, ::2, ::2, :]))
  np.testing.assert_array_equal(out[..., 16:], 0.0)


def test_plain_net_has_the_same_parameters_but_no_skips(cifar20):
  residual, x, variables = cifar20
  plain = preset_model('cifar_plain20')
  plain_shapes, _ = shapes_and_macs(plain, (1, 32, 32, 3))
  assert jax.tree.map(lambda a: a.shape, plain_shapes) == jax.tree.map(jnp.shape, variables)
  residual_logits = jax.jit(residual.apply)(variables, x)
  plain_logits = jax.jit(plain.apply)(variables, x)
  assert plain_logits.shape == (2, 10)
  assert float(jnp.abs(residual_logits - plain_logits).max()) > 1e-3


def test_unknown_depths_are_rejected():
  for preset, depth, message in (('resnet50', 26, 'resnet has depths 18, 34, 50, 101, 152'),
                                 ('cifar_resnet20', 21, 'needs depth 6n [+] 2')):
    config = load_config('resnet', preset)
    config.model.depth = depth
    with pytest.raises(ValueError, match=message):
      shapes_and_macs(create_model(config.model, 10), (1, 32, 32, 3))
