"""Every formulation of every convolution direction equals XLA's convolution, on the geometries
of every model family; chosen formulations run on CPU only."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import onednn
from jaxcnn.models import conv
from jaxcnn.models.formulations import DIRECTIONS, FORMULATIONS

pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)

# (input shape, features, kernel, strides, padding, dilation, groups): the geometries the
# families use, small.
CASES = [
    ((2, 9, 9, 4), 6, (3, 3), (1, 1), 'SAME', (1, 1), 1),
    ((2, 9, 9, 4), 6, (3, 3), (2, 2), 'SAME', (1, 1), 1),  # SAME pads 0/1 here: asymmetric
    ((2, 11, 10, 3), 8, (7, 7), (2, 2), 3, (1, 1), 1),  # the ImageNet stem
    ((2, 23, 23, 3), 8, (11, 11), (4, 4), 0, (1, 1), 1),  # AlexNet's and NiN's conv1
    ((3, 8, 8, 16), 32, (1, 1), (1, 1), 'VALID', (1, 1), 1),
    ((3, 9, 8, 16), 32, (1, 1), (2, 2), 'SAME', (1, 1), 1),  # ResNet's projection shortcut
    ((2, 12, 12, 6), 4, (5, 5), (1, 1), 'VALID', (1, 1), 2),  # grouped (GoogLeNet-free)
    ((2, 10, 10, 4), 4, (3, 3), (1, 1), ((2, 1), (0, 3)), (2, 2), 1),
    ((2, 9, 7, 4), 4, (3, 1), (3, 1), 'SAME', (1, 1), 1),  # Inception v3's 7x1-style kernels
    ((4, 32, 32, 1), 6, (5, 5), (1, 1), 'VALID', (1, 1), 1),  # LeNet's conv1 on digits
]
IDS = [f'{"x".join(map(str, c[2]))}-stride{c[3][0]}-groups{c[6]}-{i}' for i, c in enumerate(CASES)]


def geometry_of(shape, features, kernel, strides, padding, dilation, groups):
  x = jnp.zeros(shape)
  w = jnp.zeros((*kernel, shape[-1] // groups, features))
  with conv.recording() as seen:
    jax.eval_shape(lambda x, w: conv.conv_general_dilated(
        x, w, strides, padding if isinstance(padding, str) else
        [(padding, padding)] * 2 if isinstance(padding, int) else padding,
        rhs_dilation=dilation, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=groups), x, w)
  (geometry,) = seen
  assert seen[geometry] == {'forward': 1}  # traced once, and nothing differentiated it
  return geometry


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_every_formulation_equals_xla(case):
  geometry = geometry_of(*case)
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], geometry.input_shape)
  kernel = jax.random.normal(keys[1], geometry.kernel_shape)
  out_grad = jax.random.normal(keys[2], geometry.output_shape)
  xla = FORMULATIONS['xla']
  compared = []
  for direction in DIRECTIONS:
    reference = jax.jit(getattr(xla, direction), static_argnums=3)(x, kernel, out_grad, geometry)
    for name, formulation in FORMULATIONS.items():
      if name != 'xla' and formulation.offers(direction, geometry):
        value = jax.jit(getattr(formulation, direction), static_argnums=3)(
            x, kernel, out_grad, geometry)
        assert value.shape == reference.shape, (name, direction)
        # float32 sums in another order: equal to 1e-5 of the result's scale.
        np.testing.assert_allclose(value, reference, atol=1e-5 * np.abs(reference).max(),
                                   err_msg=f'{name} {direction}')
        compared.append((name, direction))
  assert ('taps', 'kernel_grad') in compared
  assert (('dot', 'forward') in compared) == (geometry.kernel_shape[:2] == (1, 1)
                                              and geometry.padding == ((0, 0), (0, 0)))
  if onednn.library() is not None:
    assert (('onednn', 'forward') in compared) == (geometry.groups == 1)


@pytest.mark.skipif(onednn.library() is None, reason='oneDNN or a C++ compiler is missing')
def test_conv_with_chosen_formulations_matches_flax_conv_end_to_end():
  """nn.Conv's value and gradients, through Conv with oneDNN in every direction."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 4))
  fields = dict(features=6, kernel_size=(3, 3), strides=2, padding='SAME')
  params = nn.Conv(**fields).init(jax.random.key(1), x)
  geometry = geometry_of((2, 9, 9, 4), 6, (3, 3), (2, 2), 'SAME', (1, 1), 1)

  def loss(module, params, x):
    y = module.apply(params, x)  # a non-uniform output gradient: a misplaced tap shows
    return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)

  grad = lambda module: jax.jit(jax.value_and_grad(lambda p, x: loss(module, p, x),
                                                   argnums=(0, 1)))
  reference = grad(nn.Conv(**fields))(params, x)
  with conv.using({geometry: ('onednn',) * 3}):
    ours = grad(conv.Conv(**fields))(params, x)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_chosen_formulations_run_on_cpu_only():
  """A step lowered for GPU and TPU holds XLA's convolutions alone, whatever was chosen."""
  geometry = geometry_of((4, 8, 8, 3), 8, (3, 3), (1, 1), 'SAME', (1, 1), 1)
  x, w = jnp.zeros(geometry.input_shape), jnp.zeros(geometry.kernel_shape)
  grad = jax.jit(jax.grad(lambda x, w: jnp.sum(conv.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) ** 2), argnums=(0, 1)))
  with conv.using({geometry: ('xla', 'xla', 'taps')}):
    accelerators = jax.export.export(grad, platforms=('cuda', 'tpu'))(x, w).mlir_module()
    cpu = jax.export.export(grad, platforms=('cpu',))(x, w).mlir_module()
  # The taps' filter gradient is a sum of 9 matrix products: dot_generals on CPU only.
  assert cpu.count('stablehlo.dot_general') >= 9
  assert accelerators.count('stablehlo.dot_general') == 0
  assert cpu.count('stablehlo.convolution') == 2  # forward and input gradient
  assert accelerators.count('stablehlo.convolution') >= 3  # and the filter gradient
