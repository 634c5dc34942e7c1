"""Training on digits: the loss falls, batch norm's running statistics behave, and
`train_and_evaluate` writes its metrics, config, TensorBoard events and checkpoints."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxcnn import steps, train

pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)


def setup(config, total_steps):
  """Data and a fresh train state, as train_and_evaluate builds them (one device); the tests
  compile steps of their own, which keep the states they are given (no donation)."""
  config.train.num_steps = total_steps
  run = train.setup(config)
  return run.data, run.state


def eval_loss(eval_step, state, batch):
  sums = jax.device_get(eval_step(state, batch))
  return float(sums['loss']) / float(sums['num_examples']), float(sums['top1']) / float(
      sums['num_examples'])


def test_training_lowers_the_loss(digits_config):
  config = digits_config('lenet', **{'optimizer.schedule': 'constant'})  # lr 0.05, batch 32
  data, state = setup(config, total_steps=30)
  step = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0))
  eval_step = jax.jit(steps.eval_step)
  held_out = next(data.eval_batches())  # 128 test examples, all real
  assert int(held_out['mask'].sum()) == 128
  loss_before, top1_before = eval_loss(eval_step, state, held_out)
  assert 1.5 < loss_before < 4.0  # about ln(10) = 2.3 for an untrained 10-way classifier
  batches = data.train_batches()
  for _ in range(30):
    state, metrics = step(state, next(batches))
  assert int(state.step) == 30
  loss_after, top1_after = eval_loss(eval_step, state, held_out)
  assert loss_after < 0.5 * loss_before, (loss_before, loss_after)
  assert top1_after > 0.6 > top1_before
  assert float(metrics['loss']) < 0.5 * loss_before


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_label_rank_gives_lax_top_k_membership_with_ties_and_nans(dtype):
  # Few distinct values, so most rows have ties; NaNs, infinities and both zeros among them.
  values = np.array([np.nan, -np.inf, -1.5, -0.0, 0.0, 0.5, 2.0, np.inf], np.float32)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.choice(values, size=(512, 12)), dtype)
  labels = jnp.asarray(rng.integers(0, 12, size=512))
  rank = steps.label_rank(logits, labels)
  for k in (1, 2, 5, 12):
    top_k = jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)
    np.testing.assert_array_equal(rank < k, top_k, err_msg=f'k={k}')
  assert 0 < int(jnp.sum(rank < 1)) < 512


def test_a_nonfinite_step_leaves_the_state_as_it_was(digits_config):
  config = digits_config('lenet', 'bn')  # batch_stats too must stay as they were
  data, state = setup(config, total_steps=10)
  step = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0))
  batch = next(data.train_batches())
  state, metrics = step(state, batch)
  assert int(metrics['nonfinite_steps']) == 0
  assert int(state.first_nonfinite_step) == steps.NO_NONFINITE_STEP

  poisoned = {**batch, 'image': batch['image'].at[3, 0, 0, 0].set(np.nan)}
  after, metrics = step(state, poisoned)
  assert int(after.step) == 2  # the data position moves on
  assert int(metrics['nonfinite_steps']) == 1
  assert int(after.first_nonfinite_step) == 2
  assert float(metrics['loss']) == 0.0  # left out of the train record's means
  assert int(after.metric_sums['nonfinite_steps']) == 1
  np.testing.assert_array_equal(after.metric_sums['loss'], state.metric_sums['loss'])
  for field in ('params', 'batch_stats', 'opt_state'):
    for x, y in zip(jax.tree.leaves(getattr(after, field)), jax.tree.leaves(getattr(state, field)),
                    strict=True):
      np.testing.assert_array_equal(x, y)


def test_batch_norm_statistics(digits_config):
  config = digits_config('lenet', 'bn')
  data, state = setup(config, total_steps=10)
  batch = next(data.train_batches())
  stats = jax.device_get(state.batch_stats)
  assert np.all(stats['conv1_bn']['mean'] == 0) and np.all(stats['conv1_bn']['var'] == 1)

  new_state, _ = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0))(state, batch)
  new_stats = jax.device_get(new_state.batch_stats)
  # The running mean moved 10% (momentum 0.9) toward conv1's batch mean, computed by hand
  # from the initial conv1 weights; likewise the running (biased) variance.
  conv1 = nn.Conv(6, (5, 5), padding='VALID').apply({'params': state.params['conv1']},
                                                    batch['image'])
  batch_mean = np.asarray(conv1).mean(axis=(0, 1, 2))
  batch_var = np.asarray(conv1).var(axis=(0, 1, 2))
  np.testing.assert_allclose(new_stats['conv1_bn']['mean'], 0.1 * batch_mean, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(new_stats['conv1_bn']['var'], 0.9 + 0.1 * batch_var, rtol=1e-4)
  assert np.abs(new_stats['conv1_bn']['mean']).max() > 1e-3
  for name in ('conv2_bn', 'fc1_bn', 'fc2_bn'):
    assert np.abs(new_stats[name]['mean']).max() > 1e-4, name

  eval_batch = next(data.eval_batches())
  eval_step = jax.jit(steps.eval_step)
  first, second = jax.device_get(eval_step(new_state, eval_batch)), jax.device_get(
      eval_step(new_state, eval_batch))
  assert first == second
  assert int(first['num_examples']) == 128
  # Evaluation reads the running statistics and never writes them back.
  variables = {'params': new_state.params, 'batch_stats': new_state.batch_stats}
  logits, updated = state.apply_fn(variables, eval_batch['image'], train=False,
                                mutable=['batch_stats'])
  for a, b in zip(jax.tree.leaves(updated['batch_stats']), jax.tree.leaves(new_stats)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(state.apply_fn(variables, eval_batch['image'], train=False), logits)
  # So an example's logits do not depend on the rest of its batch.
  alone = state.apply_fn(variables, eval_batch['image'][:1], train=False)
  np.testing.assert_allclose(alone[0], logits[0], rtol=1e-5, atol=1e-5)
  in_train_mode, _ = state.apply_fn(variables, eval_batch['image'][:2], train=True,
                                 mutable=['batch_stats'])
  assert float(jnp.abs(in_train_mode[0] - logits[0]).max()) > 1e-3


def cosine_lr(lr, step, total):
  return lr * 0.5 * (1 + math.cos(math.pi * step / total))


def test_train_and_evaluate_writes_a_run(tmp_path, digits_config, capsys):
  config = digits_config('lenet', **{'train.num_steps': 12, 'train.log_every_steps': 4,
                                     'eval.every_steps': 6, 'checkpoint.every_steps': 6})
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(config, workdir)

  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  train_records = [r for r in records if r['split'] == 'train']
  eval_records = [r for r in records if r['split'] == 'eval']
  assert [r['step'] for r in train_records] == [4, 8, 12]
  assert [r['step'] for r in eval_records] == [6, 12]
  for r in train_records:
    assert {'step', 'split', 'loss', 'top1', 'top5', 'learning_rate', 'images_per_sec'} <= set(r)
    assert 0 < r['loss'] < 10
    assert 0 <= r['top1'] <= r['top5'] <= 1
    assert r['images_per_sec'] > 0
    # lenet's cosine schedule (no warmup) over 12 steps: the rate the next step will use.
    assert r['learning_rate'] == pytest.approx(cosine_lr(0.05, r['step'], 12), abs=1e-7)
    assert r['epoch'] == pytest.approx(r['step'] / 44)
  assert train_records[-1]['loss'] < train_records[0]['loss']
  for r in eval_records:
    assert {'step', 'split', 'loss', 'top1', 'top5', 'num_examples'} <= set(r)
    assert r['num_examples'] == 360
    assert r['top1'] * 360 == pytest.approx(round(r['top1'] * 360), abs=1e-6)  # a count / 360
    assert 0 <= r['top1'] <= r['top5'] <= 1
  assert final == eval_records[-1]
  assert final['top1'] > 0.3  # 12 steps are enough to beat chance (0.1) by far

  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['train']['num_steps'] == 12
  assert saved['data']['data_dir'] == config.data.data_dir
  assert saved['model']['name'] == 'lenet5'

  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']

  import tensorflow as tf
  event_files = [os.path.join(workdir, 'tensorboard', f)
                 for f in os.listdir(os.path.join(workdir, 'tensorboard'))]
  assert event_files
  scalars = {}
  for path in event_files:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        scalars[(value.tag, event.step)] = value.simple_value
  assert scalars[('eval/top1', 12)] == pytest.approx(final['top1'], rel=1e-6)
  assert scalars[('train/loss', 4)] == pytest.approx(train_records[0]['loss'], rel=1e-6)

  # Rerunning the finished run trains nothing and returns the same final eval.
  metrics_before = open(os.path.join(workdir, 'metrics.jsonl')).read()
  capsys.readouterr()
  again = train.train_and_evaluate(config, workdir)
  assert again == final
  assert 'already finished at step 12' in capsys.readouterr().out
  assert open(os.path.join(workdir, 'metrics.jsonl')).read() == metrics_before
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']


def test_per_device_batch_norm_normalizes_each_slice_alone(digits_config):
  """batch_norm_groups=2: each half of the batch is normalized by its own statistics, so the
  running statistics average the two halves' and the step differs from a global-statistics
  step on the same batch."""
  source, state = setup(digits_config('lenet', 'bn'), total_steps=10)
  batch = next(source.train_batches())

  def logits_and_stats(images):
    return state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats}, images,
                       train=True, mutable=['batch_stats'])

  halves = [logits_and_stats(half) for half in np.split(batch['image'], 2)]
  grouped, _ = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0,
                                         batch_norm_groups=2))(state, batch)
  whole, _ = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0))(state, batch)
  mean = lambda stats: np.asarray(stats['batch_stats']['conv1_bn']['mean'])
  np.testing.assert_allclose(np.asarray(grouped.batch_stats['conv1_bn']['mean']),
                             (mean(halves[0][1]) + mean(halves[1][1])) / 2, rtol=1e-5, atol=1e-7)
  assert not np.allclose(np.asarray(grouped.params['fc3']['kernel']),
                         np.asarray(whole.params['fc3']['kernel']), rtol=1e-6, atol=0)


def test_in_memory_loop_step_equals_the_step_on_the_batch_made_alone(digits_config):
  """The loop's one program (make the batch of the state's step on the device, then step)
  gives the state that the bare train step gives on train_batches' batches, from the same
  step, across an epoch's end."""
  config = digits_config('lenet', **{'train.num_steps': 100})
  run = train.setup(config)
  start = run.data.steps_per_epoch - 2
  inputs, batches = run.data.train_inputs(start), run.data.train_batches(start)
  copy = lambda state: jax.tree.map(jnp.copy, state)  # both steps donate their state
  state = run.state.replace(step=run.state.step + start)  # the fused step reads its number
  fused, alone, losses = copy(state), copy(state), []
  for _ in range(4):
    fused, fused_metrics = run.loop_step(fused, next(inputs))
    alone, alone_metrics = run.train_step(alone, next(batches))
    losses.append((float(fused_metrics['loss']), float(alone_metrics['loss'])))
  assert [fused_loss for fused_loss, _ in losses] == pytest.approx(
      [alone_loss for _, alone_loss in losses], rel=1e-6)
  assert len({loss for loss, _ in losses}) == 4  # four different batches
  for a, b in zip(jax.tree.leaves(fused.params), jax.tree.leaves(alone.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
