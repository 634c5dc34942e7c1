"""jaxcnn/optim.py: the paper's SGD update, and the multistep, cosine and plateau schedules."""

import math

import jax
import numpy as np
import optax
import pytest

from jaxcnn import optim
from jaxcnn.config import base_config


def optimizer_config(**fields):
  opt = base_config().optimizer
  for key, value in fields.items():
    opt[key] = value
  return opt


def varying_lr(count):
  return 0.1 / (1.0 + count)  # a different learning rate at every step


@pytest.mark.parametrize('schedule_name', ['constant', 'plateau'])
def test_sgd_update_is_the_paper_equation(schedule_name):
  # With `plateau` in the chain (scale 1 until a plateau), the update must be unchanged.
  momentum, weight_decay = 0.9, 0.05  # a large decay, so that wd * w matters next to g
  opt = optimizer_config(momentum=momentum, weight_decay=weight_decay, schedule=schedule_name,
                         plateau_patience=100)
  tx = optim.create_optimizer(opt, varying_lr, steps_per_eval=2)
  rng = np.random.default_rng(0)
  params = {'w': rng.standard_normal((3, 4)).astype(np.float32),
            'b': rng.standard_normal(4).astype(np.float32)}
  state = tx.init(params)
  w = {k: v.astype(np.float64) for k, v in params.items()}
  v = {k: np.zeros_like(x) for k, x in w.items()}
  w_other = dict(w)  # optax.sgd's form: lr outside the momentum buffer
  v_other = {k: np.zeros_like(x) for k, x in w.items()}
  for t in range(6):
    grads = {k: rng.standard_normal(x.shape).astype(np.float32) for k, x in params.items()}
    updates, state = tx.update(grads, state, params, value=0.5)
    params = optax.apply_updates(params, updates)
    lr = varying_lr(t)
    for k in w:
      v[k] = momentum * v[k] - lr * (grads[k] + weight_decay * w[k])
      w[k] = w[k] + v[k]
      v_other[k] = momentum * v_other[k] + grads[k] + weight_decay * w_other[k]
      w_other[k] = w_other[k] - lr * v_other[k]
  for k in w:
    np.testing.assert_allclose(params[k], w[k], rtol=1e-5, atol=1e-6)
    # The check can tell the two forms apart: they differ once the lr changes.
    assert np.abs(w[k] - w_other[k]).max() > 1e-2


def test_multistep_drops_at_milestone_fractions():
  opt = optimizer_config(schedule='multistep', learning_rate=0.1, milestones=(0.5, 0.75),
                         decay_factor=0.1)
  schedule = optim.learning_rate_schedule(opt, total_steps=200, steps_per_epoch=10)
  # schedule(n) is the learning rate of the update made after n steps.
  expected = {0: 0.1, 99: 0.1, 100: 0.01, 149: 0.01, 150: 0.001, 199: 0.001}
  for step, lr in expected.items():
    assert float(schedule(step)) == pytest.approx(lr, rel=1e-6), step


def test_cosine_with_warmup():
  opt = optimizer_config(schedule='cosine', learning_rate=0.2, warmup_epochs=1.0)
  schedule = optim.learning_rate_schedule(opt, total_steps=110, steps_per_epoch=10)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.1, rel=1e-6)
  assert float(schedule(10)) == pytest.approx(0.2, rel=1e-6)
  assert float(schedule(35)) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)), rel=1e-5)
  assert float(schedule(60)) == pytest.approx(0.1, rel=1e-5)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)


def test_constant_and_plateau_schedules_are_flat():
  for name in ('constant', 'plateau'):
    schedule = optim.learning_rate_schedule(optimizer_config(schedule=name, learning_rate=0.03),
                                            total_steps=50, steps_per_epoch=5)
    assert [float(schedule(n)) for n in (0, 25, 49)] == pytest.approx([0.03] * 3)


def run_plateau(values, accumulation, patience=3, momentum=0.0):
  """Drives the plateau optimizer; returns current_learning_rate and the update after each step."""
  opt = optimizer_config(schedule='plateau', learning_rate=0.01, momentum=momentum,
                         weight_decay=0.0, decay_factor=0.1, plateau_patience=patience,
                         plateau_min_scale=1e-3)
  schedule = optim.learning_rate_schedule(opt, total_steps=1000, steps_per_epoch=accumulation)
  tx = optim.create_optimizer(opt, schedule, steps_per_eval=accumulation)
  params = {'w': np.zeros(3, np.float32)}
  grads = {'w': np.ones(3, np.float32)}
  state = tx.init(params)
  update = jax.jit(lambda s, value: tx.update(grads, s, params, value=value))
  rates, steps = [], []
  for step, value in enumerate(values, start=1):
    updates, state = update(state, np.float32(value))
    rates.append(optim.current_learning_rate(schedule, state, step))
    steps.append(float(updates['w'][0]))
  return rates, steps


def test_plateau_reduces_after_patience_evaluations_without_improvement():
  a, patience = 4, 3  # 4 steps per evaluation; each evaluation period averages to one value
  rates, updates = run_plateau([0.3] * 60, accumulation=a, patience=patience)
  # Evaluation 1 sets the best error; evaluations 2..4 do not improve on it, so the rate
  # drops after evaluation 1 + patience = 4 (step 16), then every `patience` more evaluations
  # (steps 28 and 40), until the 1000x floor (min_scale 1e-3) holds it at 1e-5.
  def expected(step):
    drops = sum(step >= (1 + patience * n) * a for n in (1, 2, 3))
    return 0.01 * 0.1 ** drops

  assert rates == pytest.approx([expected(step) for step in range(1, 61)], rel=1e-5)
  assert rates[15 - 1] == pytest.approx(0.01) and rates[16 - 1] == pytest.approx(0.001)
  assert rates[-1] == pytest.approx(1e-5)
  # The reduced rate is what the steps use (momentum 0, grad 1: update = -lr).
  assert updates[20 - 1] == pytest.approx(-0.001, rel=1e-5)
  assert updates[59 - 1] == pytest.approx(-1e-5, rel=1e-4)


def test_plateau_keeps_the_rate_while_the_error_improves():
  a = 4
  values = [0.5 * 0.9 ** (step // a) for step in range(60)]  # 10% better every evaluation
  rates, _ = run_plateau(values, accumulation=a)
  assert rates == pytest.approx([0.01] * 60)


@pytest.mark.parametrize('schedule_name', ['constant', 'plateau'])
def test_current_learning_rate_with_batch_norm_params(schedule_name):
  # BN layers have params named 'scale', and the momentum trace mirrors the params: looking
  # the plateau 'scale' up by name alone finds those too.
  opt = optimizer_config(schedule=schedule_name, learning_rate=0.07)
  schedule = optim.learning_rate_schedule(opt, total_steps=10, steps_per_epoch=5)
  tx = optim.create_optimizer(opt, schedule, steps_per_eval=5)
  params = {'conv_bn': {'scale': np.full(3, 2.0, np.float32), 'bias': np.zeros(3, np.float32)}}
  state = tx.init(params)
  grads = jax.tree.map(np.ones_like, params)
  _, state = tx.update(grads, state, params, value=0.5)
  assert optim.current_learning_rate(schedule, state, 1) == pytest.approx(0.07)


def test_unknown_schedule_is_refused():
  with pytest.raises(ValueError, match="unknown optimizer.schedule 'linear'"):
    optim.learning_rate_schedule(optimizer_config(schedule='linear'), 10, 5)
