"""GoogLeNet: exact parameter counts of both layouts with and without aux heads, the
train/eval output contract, the smallest inputs, the aux-weighted training loss, and batch
norm statistics of the torchvision layout."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import assert_smallest_input, load_config, load_config_module, param_count
from jaxcnn import steps, validate
from jaxcnn.errors import UserError
from jaxcnn.models import create_model

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = [pytest.mark.xdist_group('googlenet'),
              pytest.mark.usefixtures('unoptimized')]  # XLA's optimizations off (conftest)


def googlenet(preset='default', num_classes=1000, **fields):
  config = load_config('googlenet', preset)
  config.model.update(fields)
  return create_model(config.model, num_classes)


@functools.lru_cache
def abstract_variables(preset, aux_heads, size, num_classes=1000):
  """Shapes only (jax.eval_shape, batch 1: no shape depends on the batch), shared by tests."""
  model = googlenet(preset, num_classes, aux_heads=aux_heads)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


def filled(abstract, seed=0):
  """Concrete variables of the given shapes: He-scaled normal kernels, unit BN scales and
  running variances, zeros elsewhere. (Compiling flax's random init of GoogLeNet's 60-odd
  layers takes minutes on a busy 2-core CPU; a forward pass needs only some weights.)"""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      return jnp.asarray(rng.normal(size=leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1])),
                         jnp.float32)
    return jnp.ones(leaf.shape) if name in ('scale', 'var') else jnp.zeros(leaf.shape)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def by_hand_cross_entropy(logits, labels):
  log_probs = jax.nn.log_softmax(np.asarray(logits, np.float64))
  return -float(np.mean(np.asarray(log_probs)[np.arange(len(labels)), labels]))


@pytest.mark.parametrize('preset, aux_heads, expected', [
    ('default', True, 13_378_280),
    ('default', False, 6_998_552),
    ('torchvision', True, 13_004_888),
    ('torchvision', False, 6_624_904),
])
def test_parameter_counts(preset, aux_heads, expected):
  assert param_count(abstract_variables(preset, aux_heads, 224)['params']) == expected


def test_layouts_differ_where_the_papers_do():
  paper = abstract_variables('default', True, 224)
  tv = abstract_variables('torchvision', True, 224)
  # The paper's 5x5 branch is 5x5 with a bias; torchvision's is 3x3, bias-free, with BN.
  assert paper['params']['inception3a']['branch3']['Conv_0']['kernel'].shape == (5, 5, 16, 32)
  assert paper['params']['inception3a']['branch3']['Conv_0']['bias'].shape == (32,)
  assert tv['params']['inception3a']['branch3']['Conv_0']['kernel'].shape == (3, 3, 16, 32)
  assert 'bias' not in tv['params']['inception3a']['branch3']['Conv_0']
  assert 'batch_stats' not in paper and param_count(tv['batch_stats']) > 0
  # Aux heads after 4a (512 channels) and 4d (528): 1x1 conv 128 on a 4x4 map, 2048 -> 1024.
  for variables in (paper, tv):
    params = variables['params']
    assert params['aux1']['conv']['Conv_0']['kernel'].shape == (1, 1, 512, 128)
    assert params['aux2']['conv']['Conv_0']['kernel'].shape == (1, 1, 528, 128)
    assert params['aux1']['fc1']['kernel'].shape == (2048, 1024)
    assert params['aux2']['fc2']['kernel'].shape == (1024, 1000)


@pytest.mark.parametrize('preset, aux_heads, size', [
    ('default', True, 79), ('torchvision', True, 15), ('torchvision', False, 15)])
def test_outputs_in_training_and_evaluation(preset, aux_heads, size):
  """Training with aux heads: (main, aux1, aux2); evaluation and no aux heads: one array."""
  model = googlenet(preset, 10, aux_heads=aux_heads)
  variables = abstract_variables(preset, aux_heads, size, 10)
  x = jnp.zeros((2, size, size, 3))
  trained, _ = jax.eval_shape(
      lambda v: model.apply(v, x, train=True, rngs={'dropout': jax.random.key(0)},
                            mutable=['batch_stats']), variables)
  evaluated = jax.eval_shape(lambda v: model.apply(v, x), variables)
  outputs = trained if aux_heads else (trained,)
  assert isinstance(outputs, tuple) and len(outputs) == (3 if aux_heads else 1)
  for out in (*outputs, evaluated):
    assert (out.shape, out.dtype) == ((2, 10), jnp.float32)


@pytest.mark.parametrize('preset, aux_heads, smallest', [
    ('default', True, 79),  # inception 4a's map must be 5x5 for the aux head's 5x5/3 pool
    ('default', False, 31),  # the 3x3/2 pool after 4e needs a 2x2 map
    ('torchvision', True, 15),  # torchvision's own min_size; its aux pools adaptively
])
def test_smallest_input(preset, aux_heads, smallest):
  assert_smallest_input(googlenet(preset, 10, aux_heads=aux_heads), smallest)


@pytest.fixture(scope='module')
def torchvision_run():
  """One jitted train-mode and eval-mode apply of the torchvision layout at 15x15, batch 2."""
  model = googlenet('torchvision', 5)
  variables = filled(abstract_variables('torchvision', True, 15, 5))
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 15, 15, 3)), jnp.float32)

  @jax.jit
  def run(variables, x):
    trained, train_updates = model.apply(variables, x, train=True, mutable=['batch_stats'],
                                         rngs={'dropout': jax.random.key(0)})
    evaluated, eval_updates = model.apply(variables, x, train=False, mutable=['batch_stats'])
    return trained, train_updates['batch_stats'], evaluated, eval_updates['batch_stats']

  return variables, x, run(variables, x)


def test_training_loss_is_main_plus_weighted_aux_losses(torchvision_run):
  _, _, (outputs, _, evaluated, _) = torchvision_run
  weights = load_config('googlenet').train.aux_loss_weights
  assert weights == (0.3, 0.3)
  labels = jnp.array([1, 3])
  main, aux1, aux2 = outputs
  assert float(jnp.abs(main - aux1).max()) > 1e-3  # three different heads
  loss, logits = steps.classification_loss(outputs, labels, 0.0, weights)
  expected = by_hand_cross_entropy(main, labels) + 0.3 * (
      by_hand_cross_entropy(aux1, labels) + by_hand_cross_entropy(aux2, labels))
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert logits is main
  assert evaluated.shape == (2, 5) and evaluated.dtype == jnp.float32
  with pytest.raises(UserError, match=r'2 auxiliary output\(s\).*has 1 weight'):
    steps.classification_loss(outputs, labels, 0.0, (0.3,))
  with pytest.raises(UserError, match=r'0 auxiliary output\(s\)'):
    steps.classification_loss(evaluated, labels, 0.0, weights)


def test_batch_norm_statistics_update_in_training_only(torchvision_run):
  variables, x, (_, train_stats, _, eval_stats) = torchvision_run
  before = variables['batch_stats']
  # conv1's running mean moves 10% (momentum 0.9) toward its batch mean, by hand.
  conv1 = jax.lax.conv_general_dilated(x, variables['params']['conv1']['Conv_0']['kernel'],
                                       (2, 2), [(3, 3)] * 2,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(train_stats['conv1']['BatchNorm_0']['mean'],
                             0.1 * np.asarray(conv1).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(train_stats['conv1']['BatchNorm_0']['var'],
                             0.9 + 0.1 * np.asarray(conv1).var(axis=(0, 1, 2)), rtol=1e-4)
  # Every BN layer moved, the aux heads' included; evaluation wrote nothing back.
  train_stats, eval_stats, before = jax.device_get((train_stats, eval_stats, before))
  assert 'aux1' in train_stats and 'aux2' in train_stats
  assert len(jax.tree.leaves(before)) == 2 * 59  # mean and var: 3 stem + 9 x 6 + 2 aux convs
  for moved, still, initial in zip(*map(jax.tree.leaves, (train_stats, eval_stats, before))):
    assert np.abs(moved - initial).max() > 0
    np.testing.assert_array_equal(still, initial)


class TinyAuxModel(nn.Module):
  """Returns (main, aux) logits in training, main only in evaluation, like GoogLeNet."""
  num_classes: int = 4

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape(x.shape[0], -1)
    main = nn.Dense(self.num_classes, name='main')(x)
    return (main, nn.Dense(self.num_classes, name='aux')(x)) if train else main


def test_train_step_adds_weighted_aux_loss_and_scores_the_main_head():
  model = TinyAuxModel()
  # One-hot images: the main head (identity) is always right, the aux head (a cyclic shift)
  # always wrong, so top-1 shows which head the metrics read.
  params = {'main': {'kernel': jnp.eye(4), 'bias': jnp.zeros(4)},
            'aux': {'kernel': jnp.roll(jnp.eye(4), 1, axis=1), 'bias': jnp.zeros(4)}}
  state = steps.TrainState.create(
      apply_fn=model.apply, params=params, tx=optax.sgd(0.1, momentum=0.9), batch_stats={},
      dropout_key=jax.random.key_data(jax.random.key(0)), eval_error=jnp.ones(()),
      metric_sums=steps.zero_metric_sums(), first_nonfinite_step=jnp.int32(steps.NO_NONFINITE_STEP))
  labels = jnp.array([0, 1, 2])
  batch = {'image': jax.nn.one_hot(labels, 4).reshape(3, 2, 2, 1) * 3.0, 'label': labels}
  main, aux = model.apply({'params': params}, batch['image'], train=True)

  step = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0, aux_loss_weights=(0.3,)))
  _, metrics = step(state, batch)
  expected = by_hand_cross_entropy(main, labels) + 0.3 * by_hand_cross_entropy(aux, labels)
  assert float(metrics['loss']) == pytest.approx(expected, rel=1e-5)
  assert float(metrics['top1']) == 1.0
  with pytest.raises(UserError, match='aux_loss_weights'):  # when jit traces the step
    jax.jit(functools.partial(steps.train_step, label_smoothing=0.0))(state, batch)


@pytest.mark.parametrize('preset', load_config_module('googlenet').PRESETS)
def test_presets(preset):
  config = load_config('googlenet', preset)
  assert config.model.name == 'googlenet'
  assert config.model.variant == {'default': 'paper', 'torchvision': 'torchvision'}[preset]
  assert config.model.aux_heads is True
  assert config.model.dropout_rate == {'default': 0.4, 'torchvision': 0.2}[preset]
  assert (config.data.name, config.data.image_size) == ('imagenet2012', 224)
  assert config.train.aux_loss_weights == (0.3, 0.3)
  assert (config.optimizer.momentum, config.optimizer.weight_decay) == (0.9, 2e-4)
  validate.check_config(config)


def test_unknown_variant_fails_at_construction():
  with pytest.raises(ValueError, match="unknown model.variant 'v1'; known: paper, torchvision"):
    googlenet(variant='v1')
