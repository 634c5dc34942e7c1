"""jaxcnn's BatchNorm against flax's: the same variables, outputs, running averages and
gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models.batch_norm import BatchNorm

pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)


def both(train: bool, dtype=jnp.float32):
  fields = dict(use_running_average=not train, momentum=0.9, epsilon=1e-3, dtype=dtype)
  return BatchNorm(**fields), nn.BatchNorm(**fields)


def assert_close_trees(ours, theirs, rtol):
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = float(jnp.max(jnp.abs(b.astype(jnp.float32)))) or 1.0
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                               atol=rtol * scale)


@pytest.mark.parametrize('dtype, rtol', [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
def test_training_outputs_running_averages_and_gradients_equal_flax(dtype, rtol):
  ours, theirs = both(train=True, dtype=dtype)
  x = (3.0 * jax.random.normal(jax.random.key(0), (8, 5, 5, 6)) + 2.0).astype(dtype)
  variables = theirs.init(jax.random.key(1), x)
  assert_close_trees(ours.init(jax.random.key(1), x), variables, 0.0)
  # Trained scales and biases and stale running statistics, so that every term counts.
  params = {'scale': jnp.linspace(0.5, 2.0, 6), 'bias': jnp.linspace(-1.0, 1.0, 6)}
  stats = {'mean': jnp.full(6, 0.5), 'var': jnp.full(6, 4.0)}
  weights = jax.random.normal(jax.random.key(2), x.shape)

  def loss(module, params, x):
    y, updates = module.apply({'params': params, 'batch_stats': stats}, x,
                              mutable=['batch_stats'])
    return jnp.sum(nn.relu(y.astype(jnp.float32)) * weights), (y, updates['batch_stats'])

  gradient = lambda module: jax.grad(loss, argnums=(1, 2), has_aux=True)(module, params, x)
  (our_grads, (our_y, our_stats)), (their_grads, (their_y, their_stats)) = map(
      gradient, (ours, theirs))
  assert_close_trees(our_y, their_y, rtol)
  assert_close_trees(our_stats, their_stats, 1e-6)
  assert_close_trees(our_grads, their_grads, rtol)
  assert float(jnp.abs(our_grads[1]).max()) > 0.1  # the input gradient is no trivial zero


def test_evaluation_uses_the_running_statistics_as_flax():
  ours, theirs = both(train=False)
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 6))
  variables = {'params': {'scale': jnp.linspace(0.5, 2.0, 6), 'bias': jnp.linspace(-1, 1, 6)},
               'batch_stats': {'mean': jnp.linspace(-0.5, 0.5, 6), 'var': jnp.linspace(1, 3, 6)}}
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-6,
                             atol=1e-6)
