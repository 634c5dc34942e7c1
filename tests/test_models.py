"""LeNet-5 and AlexNet: parameter counts, output shapes, the paper's init, and LRN by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_smallest_input, load_config, param_count
from ml_collections import ConfigDict

from jaxcnn.config import override
from jaxcnn.errors import UserError
from jaxcnn.models import build_model, create_model, model_names
from jaxcnn.models.layers import LocalResponseNorm, avg_pool

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = [pytest.mark.xdist_group('models'),
              pytest.mark.usefixtures('unoptimized')]  # XLA's optimizations off (conftest)


def abstract_variables(model, shape):
  """Shapes only (jax.eval_shape): no memory is spent on AlexNet's 61M parameters."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


def model(num_classes, **fields):
  return create_model(ConfigDict(fields), num_classes)


@pytest.mark.parametrize('fields, shape, classes, expected', [
    ({'name': 'lenet5'}, (1, 32, 32, 1), 10, 61_706),
    ({'name': 'lenet5', 'batch_norm': True}, (1, 32, 32, 1), 10, 62_158),
    ({'name': 'alexnet'}, (1, 227, 227, 3), 1000, 60_965_224),
    ({'name': 'alexnet', 'towers': 1}, (1, 227, 227, 3), 1000, 62_378_344),
], ids=['lenet5', 'lenet5_bn', 'alexnet', 'alexnet_towers1'])
def test_parameter_counts(fields, shape, classes, expected):
  variables = abstract_variables(model(classes, **fields), shape)
  assert param_count(variables['params']) == expected


def test_lenet_bn_adds_scale_bias_and_running_stats():
  variables = abstract_variables(model(10, name='lenet5', batch_norm=True), (1, 32, 32, 1))
  channels = {'conv1_bn': 6, 'conv2_bn': 16, 'fc1_bn': 120, 'fc2_bn': 84}
  for name, c in channels.items():
    assert variables['params'][name]['scale'].shape == (c,)
    assert variables['params'][name]['bias'].shape == (c,)
    assert variables['batch_stats'][name]['mean'].shape == (c,)
  assert param_count(variables['batch_stats']) == 2 * sum(channels.values())
  assert 62_158 - 61_706 == 2 * sum(channels.values())


def test_alexnet_towers_group_conv2_conv4_conv5():
  params = abstract_variables(model(1000, name='alexnet'), (1, 227, 227, 3))['params']
  assert params['conv1']['kernel'].shape == (11, 11, 3, 96)
  assert params['conv2']['kernel'].shape == (5, 5, 48, 256)   # each tower reads 96 / 2 maps
  assert params['conv3']['kernel'].shape == (3, 3, 256, 384)  # conv3 reads both towers
  assert params['conv4']['kernel'].shape == (3, 3, 192, 384)
  assert params['conv5']['kernel'].shape == (3, 3, 192, 256)
  assert params['fc6']['kernel'].shape == (6 * 6 * 256, 4096)
  assert params['fc8']['kernel'].shape == (4096, 1000)


@pytest.mark.parametrize('fields, shape, classes', [
    ({'name': 'lenet5'}, (3, 32, 32, 1), 10),
    ({'name': 'alexnet'}, (2, 227, 227, 3), 1000),
    ({'name': 'alexnet', 'overlapping_pool': False}, (2, 227, 227, 3), 7),
])
def test_output_shape(fields, shape, classes):
  m = model(classes, **fields)
  variables = abstract_variables(m, shape)
  out = jax.eval_shape(lambda v: m.apply(v, jnp.zeros(shape)), variables)
  assert out.shape == (shape[0], classes)
  assert out.dtype == jnp.float32


@pytest.fixture(scope='module')
def alexnet_digits():
  """AlexNet at its smallest input, 67x67x1 with 10 classes (the alexnet:digits preset)."""
  m = model(10, name='alexnet')
  variables = jax.jit(m.init)(jax.random.key(0), jnp.zeros((1, 67, 67, 1)))
  return m, variables


def test_alexnet_paper_initialization(alexnet_digits):
  _, variables = alexnet_digits
  params = variables['params']
  for name in ('conv1', 'conv3', 'fc8'):
    assert float(jnp.abs(params[name]['bias']).max()) == 0.0, name
  for name in ('conv2', 'conv4', 'conv5', 'fc6', 'fc7'):
    assert float(jnp.abs(params[name]['bias'] - 1).max()) == 0.0, name
  std = float(jnp.std(params['fc7']['kernel']))  # 16.8M draws of N(0, 0.01^2)
  assert abs(std - 0.01) < 1e-4


def test_alexnet_dropout_only_in_training(alexnet_digits):
  m, variables = alexnet_digits
  x = np.random.default_rng(2).standard_normal((2, 67, 67, 1)).astype(np.float32)
  evals = [m.apply(variables, x, train=False) for _ in range(2)]
  np.testing.assert_array_equal(evals[0], evals[1])
  train_a = m.apply(variables, x, train=True, rngs={'dropout': jax.random.key(3)})
  train_b = m.apply(variables, x, train=True, rngs={'dropout': jax.random.key(4)})
  assert train_a.shape == (2, 10)
  assert float(jnp.abs(train_a - train_b).max()) > 1e-4


# Every family and each option that moves its smallest input, with that input.
SMALLEST_INPUTS = [
    ({'name': 'lenet5'}, 16),
    ({'name': 'alexnet'}, 67),
    ({'name': 'alexnet', 'overlapping_pool': False}, 39),
    ({'name': 'alexnet', 'conv1_padding': 2, 'towers': 1, 'widths': (64, 192, 384, 256, 256)}, 63),
    ({'name': 'vgg', 'depth': 11}, 32),
    ({'name': 'nin'}, 67),
    ({'name': 'googlenet'}, 79),
    ({'name': 'googlenet', 'aux_heads': False}, 31),
    ({'name': 'googlenet', 'variant': 'torchvision'}, 15),
    ({'name': 'inception_v3', 'aux_head': False}, 75),
    ({'name': 'resnet', 'depth': 18, 'stem': 'cifar'}, 1),
    ({'name': 'cifar_resnet', 'depth': 8}, 1),
    ({'name': 'cifar_densenet', 'depth': 10}, 4),
]  # inception_v3 with its aux head (299), resnet and densenet: in their own test files


@pytest.mark.parametrize('fields, smallest', SMALLEST_INPUTS,
                         ids=['-'.join(f'{v}' for v in f.values()) for f, _ in SMALLEST_INPUTS])
def test_declared_smallest_input_is_what_the_layers_accept(fields, smallest):
  assert_smallest_input(model(10, **fields), smallest)


def build(**overrides):
  config = load_config('alexnet', 'digits')
  return build_model(override(config, overrides), 10, 1)


def test_build_model_refuses_an_input_below_the_smallest():
  assert build(**{'data.image_size': 67}).min_input_size() == 67
  with pytest.raises(UserError, match=r"^data.image_size=66 is too small for model 'AlexNet': "
                                      'the smallest input it accepts is 67x67$'):
    build(**{'data.image_size': 66})


def test_build_model_names_a_bad_option():
  with pytest.raises(UserError, match=r"^cannot build model 'alexnet': unknown activation "
                                      "'swish'; known: relu, tanh, sigmoid$"):
    build(**{'model.activation': 'swish'})
  config = load_config('alexnet', 'digits')
  config.model.depth = 3  # a field AlexNet does not have
  with pytest.raises(UserError, match=r"^cannot build model 'alexnet': model 'alexnet' has no "
                                      r'option\(s\) depth; its options are: activation, '):
    build_model(config, 10, 1)


def test_build_model_computes_in_the_compute_dtype():
  built = build(**{'train.compute_dtype': 'bfloat16'})
  assert built.dtype == jnp.bfloat16


def test_registry():
  assert {'lenet5', 'alexnet'} <= set(model_names())
  with pytest.raises(ValueError, match="did you mean 'lenet5'"):
    create_model(ConfigDict({'name': 'lenet6'}), 10)
  with pytest.raises(ValueError, match='no option'):
    create_model(ConfigDict({'name': 'lenet5', 'widths': 3}), 10)


def lrn_by_hand(a, k=2.0, alpha=1e-4, beta=0.75, size=5, groups=1):
  """b_c = a_c / (k + alpha * sum_{|c'-c| <= size//2, same group} a_c'^2) ** beta."""
  a = np.asarray(a, np.float64)
  channels = a.shape[-1]
  per_group = channels // groups
  b = np.empty_like(a)
  for c in range(channels):
    g = c // per_group
    lo, hi = max(g * per_group, c - size // 2), min((g + 1) * per_group - 1, c + size // 2)
    window = np.sum(a[..., lo:hi + 1] ** 2, axis=-1)
    b[..., c] = a[..., c] / (k + alpha * window) ** beta
  return b


def lrn_input(seed=0, channels=12):
  # ReLU-sized activations of ~100: alpha * sum a^2 is then ~5, well above k = 2.
  return 100 * np.random.default_rng(seed).standard_normal((2, 3, 3, channels)).astype(np.float32)


def test_local_response_norm_matches_the_paper():
  x = lrn_input()
  out = LocalResponseNorm().apply({}, x)
  expected = lrn_by_hand(x)
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  # The normalization really matters at this scale (not just x / k**beta).
  plain = x / 2.0 ** 0.75
  assert np.median(np.abs(np.asarray(out) / plain)) < 0.5


def test_local_response_norm_groups_do_not_mix():
  x = lrn_input(channels=12)
  out = LocalResponseNorm(groups=2).apply({}, x)
  np.testing.assert_allclose(out, lrn_by_hand(x, groups=2), rtol=1e-5)
  # Channel 5 is the last of group 1: with one group its window reaches channels 6 and 7.
  assert not np.allclose(lrn_by_hand(x, groups=1)[..., 5], lrn_by_hand(x, groups=2)[..., 5])
  changed = x.copy()
  changed[..., 6:] = lrn_input(seed=1, channels=6) * 3
  out_changed = LocalResponseNorm(groups=2).apply({}, changed)
  np.testing.assert_array_equal(out_changed[..., :6], out[..., :6])  # group 1 untouched
  assert float(jnp.abs(out_changed[..., 6:] - out[..., 6:]).max()) > 1.0


def test_grouped_conv_equals_flax_feature_groups():
  """GroupedConv (one convolution per tower) computes exactly nn.Conv(feature_group_count)."""
  import flax.linen as nn
  import jax
  import numpy as np

  from jaxcnn.models.layers import GroupedConv

  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
  ours = GroupedConv(6, (3, 3), groups=2, strides=2, padding=1)
  theirs = nn.Conv(6, (3, 3), strides=2, padding=1, feature_group_count=2)
  variables = ours.init(jax.random.key(1), x)
  assert variables['params']['kernel'].shape == (3, 3, 4, 6)
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape, window, stride', [
    ((4, 28, 28, 6), 2, 2),  # LeNet-5's pools (the second on an odd 10x10 map below)
    ((4, 10, 10, 16), 2, 2),
    ((2, 17, 17, 8), 5, 3),  # GoogLeNet's and Inception v3's auxiliary heads: overlapping
    ((2, 7, 9, 3), 3, 2),  # a non-square map whose last row and column no window reaches
])
def test_avg_pool_equals_flax_avg_pool_and_its_gradient(shape, window, stride):
  x = jax.random.normal(jax.random.key(0), shape)
  reference = lambda x: nn.avg_pool(x, (window, window), strides=(stride, stride))
  ours = lambda x: avg_pool(x, window, stride)
  weights = jax.random.normal(jax.random.key(1), reference(x).shape)
  loss = lambda pool: lambda x: jnp.sum(pool(x) * weights)
  np.testing.assert_allclose(ours(x), reference(x), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.grad(loss(ours))(x), jax.grad(loss(reference))(x), rtol=1e-6,
                             atol=1e-6)
