"""The convolution with a tap-by-tap filter gradient matches XLA's own, value and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models.conv import Conv

# (input shape, features, kernel, strides, padding, dilation, groups)
CASES = [
    ((2, 9, 9, 4), 6, (3, 3), (1, 1), 'SAME', (1, 1), 1),
    ((2, 9, 9, 4), 6, (3, 3), (2, 2), 'SAME', (1, 1), 1),  # SAME pads 0/1 here: asymmetric
    ((2, 11, 10, 3), 8, (7, 7), (2, 2), 3, (1, 1), 1),  # the ImageNet stem
    ((3, 8, 8, 16), 32, (1, 1), (1, 1), 'VALID', (1, 1), 1),
    ((3, 9, 8, 16), 32, (1, 1), (2, 2), 'SAME', (1, 1), 1),  # ResNet's projection shortcut
    ((2, 12, 12, 6), 4, (5, 5), (1, 1), 'VALID', (1, 1), 2),  # AlexNet's grouped layers
    ((2, 10, 10, 4), 4, (3, 3), (1, 1), ((2, 1), (0, 3)), (2, 2), 1),
    ((2, 9, 7, 4), 4, (3, 1), (3, 1), 'SAME', (1, 1), 1),  # Inception v3's 7x1-style kernels
]


@pytest.mark.parametrize('shape, features, kernel, strides, padding, dilation, groups', CASES)
def test_value_and_gradients_match_flax_conv(shape, features, kernel, strides, padding, dilation,
                                              groups):
  fields = dict(features=features, kernel_size=kernel, strides=strides, padding=padding,
                kernel_dilation=dilation, feature_group_count=groups)
  ours, reference = Conv(**fields), nn.Conv(**fields)
  x = jax.random.normal(jax.random.key(0), shape)
  params = reference.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)

  def loss(module, params, x):
    # A non-uniform output gradient, so that a misplaced tap cannot cancel out.
    y = module.apply(params, x)
    return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)

  ours_value, (ours_params_grad, ours_x_grad) = jax.jit(
      jax.value_and_grad(lambda p, x: loss(ours, p, x), argnums=(0, 1)))(params, x)
  ref_value, (ref_params_grad, ref_x_grad) = jax.jit(
      jax.value_and_grad(lambda p, x: loss(reference, p, x), argnums=(0, 1)))(params, x)
  np.testing.assert_allclose(ours_value, ref_value, rtol=1e-6)
  for ours_grad, ref_grad in [(ours_x_grad, ref_x_grad),
                              *zip(jax.tree.leaves(ours_params_grad), jax.tree.leaves(ref_params_grad))]:
    assert ours_grad.shape == ref_grad.shape
    # float32 sums in another order: equal to 1e-5 of the gradient's scale.
    np.testing.assert_allclose(ours_grad, ref_grad, atol=1e-5 * np.abs(ref_grad).max())


def test_cpu_filter_gradient_is_not_a_convolution():
  """On CPU the filter gradient must be the taps' matrix products, not XLA's convolution."""
  x = jnp.ones((4, 8, 8, 3))

  def convolutions_in_gradient(conv):
    params = conv.init(jax.random.key(0), x)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(conv.apply(p, x) ** 2), argnums=(0, 1)))
    return grad.lower(params, x).compile().as_text().count(' convolution(')

  # Forward pass and input gradient; XLA's filter gradient would be a third.
  assert convolutions_in_gradient(Conv(8, (3, 3))) == 2
  assert convolutions_in_gradient(nn.Conv(8, (3, 3))) == 3

