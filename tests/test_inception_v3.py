"""Inception v3: exact parameter counts with and without the aux head, the train/eval output
contract, the smallest inputs, and one real forward pass with its batch norm statistics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_smallest_input, load_config, param_count
from jaxcnn import validate
from jaxcnn.models import create_model


def inception(num_classes=1000, **fields):
  config = load_config('inception_v3')
  config.model.update(fields)
  return create_model(config.model, num_classes)


@functools.lru_cache
def abstract_variables(aux_head, size, num_classes=1000):
  """Shapes only (jax.eval_shape, batch 1: no shape depends on the batch), shared by tests."""
  model = inception(num_classes, aux_head=aux_head)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize('aux_head, expected', [(True, 27_161_264), (False, 23_834_568)])
def test_parameter_counts(aux_head, expected):
  variables = abstract_variables(aux_head, 299)
  assert param_count(variables['params']) == expected
  # Every conv is bias-free and followed by BN: 94 convs, plus 2 in the aux head.
  convs = 94 + 2 * aux_head
  assert len(jax.tree.leaves(variables['batch_stats'])) == 2 * convs  # mean and var
  assert len(jax.tree.leaves(variables['params'])) == 3 * convs + 2 + aux_head * 2  # + fc(s)
  params = variables['params']
  assert params['Mixed_6b']['branch7x7_2']['Conv_0']['kernel'].shape == (1, 7, 128, 128)
  assert params['fc']['kernel'].shape == (2048, 1000)
  if aux_head:
    assert params['AuxLogits']['conv1']['Conv_0']['kernel'].shape == (5, 5, 128, 768)
    assert params['AuxLogits']['fc']['kernel'].shape == (768, 1000)


@pytest.mark.parametrize('aux_head, size', [(True, 299), (False, 75)])
def test_outputs_in_training_and_evaluation(aux_head, size):
  """Training with the aux head: (main, aux); evaluation and no aux head: one array."""
  model = inception(aux_head=aux_head)
  variables = abstract_variables(aux_head, size)
  x = jnp.zeros((2, size, size, 3))
  trained, _ = jax.eval_shape(
      lambda v: model.apply(v, x, train=True, rngs={'dropout': jax.random.key(0)},
                            mutable=['batch_stats']), variables)
  evaluated = jax.eval_shape(lambda v: model.apply(v, x), variables)
  outputs = trained if aux_head else (trained,)
  assert isinstance(outputs, tuple) and len(outputs) == (2 if aux_head else 1)
  for out in (*outputs, evaluated):
    assert (out.shape, out.dtype) == ((2, 1000), jnp.float32)


@pytest.mark.parametrize('aux_head, smallest', [
    (True, 299),  # the aux head's 5x5/3 pool and 5x5 conv need Mixed_6e's map at 17x17
    (False, 75),  # torchvision's min_size: Mixed_7a's stride-2 3x3 convs need a 3x3 map
])
def test_smallest_input(aux_head, smallest):
  assert_smallest_input(inception(10, aux_head=aux_head), smallest)


def test_forward_and_batch_norm_statistics():
  """A real forward at the smallest input (75x75, batch 2, no aux head): train mode updates
  the running statistics of all 94 BN layers, eval mode reads them and writes nothing."""
  model = inception(5, aux_head=False)
  abstract = abstract_variables(False, 75, 5)
  rng = np.random.default_rng(0)
  # Random He-scaled kernels from numpy: compiling flax's random init of ~95 layers costs
  # minutes on a busy CPU. Unit BN scales and running variances, zeros elsewhere.
  variables = jax.tree_util.tree_map_with_path(
      lambda path, leaf: jnp.asarray(
          rng.normal(size=leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1])), jnp.float32)
      if path[-1].key == 'kernel' else
      jnp.ones(leaf.shape) if path[-1].key in ('scale', 'var') else jnp.zeros(leaf.shape),
      abstract)
  x = jnp.asarray(rng.normal(size=(2, 75, 75, 3)), jnp.float32)

  @jax.jit
  def run(variables, x):
    trained, train_updates = model.apply(variables, x, train=True, mutable=['batch_stats'],
                                         rngs={'dropout': jax.random.key(0)})
    evaluated, eval_updates = model.apply(variables, x, train=False, mutable=['batch_stats'])
    return trained, train_updates['batch_stats'], evaluated, eval_updates['batch_stats']

  trained, train_stats, evaluated, eval_stats = jax.device_get(run(variables, x))
  assert trained.shape == evaluated.shape == (2, 5)
  assert np.all(np.isfinite(trained)) and np.all(np.isfinite(evaluated))
  before = jax.device_get(variables['batch_stats'])
  assert len(jax.tree.leaves(before)) == 2 * 94
  for moved, still, initial in zip(*map(jax.tree.leaves, (train_stats, eval_stats, before))):
    assert np.abs(moved - initial).max() > 0
    np.testing.assert_array_equal(still, initial)


def test_default_preset():
  config = load_config('inception_v3')
  assert config.model.name == 'inception_v3'
  assert (config.model.aux_head, config.model.dropout_rate) == (True, 0.5)
  assert (config.data.name, config.data.image_size) == ('imagenet2012', 299)
  assert config.train.label_smoothing == 0.1
  assert config.train.aux_loss_weights == (0.4,)
  assert (config.optimizer.learning_rate, config.optimizer.momentum) == (0.045, 0.9)
  validate.check_config(config)
