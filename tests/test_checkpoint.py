"""jaxcnn.checkpoint.Checkpoints: a saved TrainState restores into a fresh one, field for field;
damaged checkpoints are skipped with a warning or named in a one-line error."""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import data as input_data
from jaxcnn import optim, steps
from jaxcnn.checkpoint import Checkpoints
from jaxcnn.errors import UserError
from jaxcnn.models import create_model

pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)


def make_state(config, data):
  model = create_model(config.model, data.num_classes)
  schedule = optim.learning_rate_schedule(config.optimizer, 100, data.steps_per_epoch)
  tx = optim.create_optimizer(config.optimizer, schedule, steps_per_eval=2)
  return steps.create_train_state(config, model, tx, (1, 32, 32, 1))


def leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y) for x, y in zip(la, lb))


def test_save_and_restore_round_trip(tmp_path, digits_config):
  # BN (non-empty batch_stats) and the plateau schedule (its state lives in opt_state).
  config = digits_config('lenet', 'bn', **{'optimizer.schedule': 'plateau'})
  data = input_data.create(config)
  state = make_state(config, data)
  step = jax.jit(functools.partial(steps.train_step, label_smoothing=0.0))
  batches = data.train_batches()
  for _ in range(3):  # momentum, running statistics and the plateau average all non-trivial
    state, _ = step(state, next(batches))
  state = state.replace(eval_error=jnp.float32(0.25))

  checkpoints = Checkpoints(str(tmp_path), keep=2)
  assert checkpoints.latest_step() is None
  checkpoints.save(state)
  checkpoints.close()

  config.seed = 7  # a fresh state that differs in every field the checkpoint must restore
  fresh = make_state(config, data)
  assert not leaves_equal(fresh.params, state.params)
  assert not leaves_equal(fresh.dropout_key, state.dropout_key)
  assert int(fresh.step) == 0 and float(fresh.eval_error) == 1.0

  reopened = Checkpoints(str(tmp_path), keep=2)
  assert reopened.latest_step() == 3
  restored = reopened.restore(fresh)
  reopened.close()
  assert int(restored.step) == 3
  assert float(restored.eval_error) == 0.25
  for field in ('params', 'batch_stats', 'opt_state', 'dropout_key'):
    assert leaves_equal(getattr(restored, field), getattr(state, field)), field
  assert jax.tree.structure(restored.opt_state) == jax.tree.structure(state.opt_state)
  # The plateau state came back: 3 steps of value 1.0 with 2 steps per evaluation leave one
  # value in the running average, and the best average so far is 1.0.
  assert float(optax.tree_utils.tree_get(restored.opt_state, 'avg_value')) == 1.0
  assert float(optax.tree_utils.tree_get(restored.opt_state, 'best_value')) == 1.0
  # And training continues from it exactly as from the original.
  batch = next(batches)
  a, _ = step(state, batch)
  b, _ = step(restored, batch)
  assert leaves_equal(a.params, b.params)




@flax.struct.dataclass
class TinyState:
  """A stand-in for a train state: a step, and an array holding the step's value."""
  step: jax.Array
  w: jax.Array

  @classmethod
  def at(cls, step: int):
    return cls(jnp.int32(step), jnp.full(1000, float(step)))


def test_damaged_checkpoints_are_skipped_or_named(tmp_path, capsys):
  checkpoints = Checkpoints(str(tmp_path), keep=3)
  for step in (1, 2):
    checkpoints.save(TinyState.at(step))
  checkpoints.close()
  data_file = max((tmp_path / 'checkpoints' / '2' / 'state' / 'd').iterdir(),
                  key=lambda p: p.stat().st_size)
  with open(data_file, 'r+b') as f:
    f.truncate(data_file.stat().st_size // 2)

  # Read-only: the damaged step 2 is skipped with a warning, and left where it is.
  reader = Checkpoints(str(tmp_path), create=False)
  assert float(reader.restore(TinyState.at(0)).w[0]) == 1.0
  assert capsys.readouterr().err.startswith('warning: checkpoint at step 2 is unreadable (')
  assert reader.all_steps() == [1, 2]
  with pytest.raises(UserError, match=r'checkpoint at step 2 in .* is unreadable .*\[1, 2\]'):
    reader.restore(TinyState.at(0), step=2)
  with pytest.raises(UserError, match=r'no checkpoint at step 5 in .*; saved steps: 1, 2'):
    reader.restore(TinyState.at(0), step=5)
  reader.close()
  with pytest.raises(UserError, match=r'has no checkpoints/ directory'):
    Checkpoints(str(tmp_path / 'elsewhere'), create=False)
  assert not (tmp_path / 'elsewhere').exists()

  # Writable (a run resuming): the damaged one is moved aside, so its step can be saved anew.
  writer = Checkpoints(str(tmp_path), keep=3)
  assert int(writer.restore(TinyState.at(0)).step) == 1
  assert writer.all_steps() == [1]
  assert (tmp_path / 'unreadable_checkpoints' / '2' / 'state').is_dir()
  writer.save(TinyState.at(2))
  writer.close()
  assert float(Checkpoints(str(tmp_path), create=False).restore(TinyState.at(0)).w[0]) == 2.0
