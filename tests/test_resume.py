"""A run killed with SIGKILL and rerun ends exactly where an uninterrupted run ends."""

import json
import os
import re
import subprocess
import time

import numpy as np

from conftest import CONFIGS, cli_command, cli_env

NUM_STEPS = 100  # > 44 steps per epoch (batch 32): the resumed part crosses an epoch boundary
CHECKPOINT_EVERY = 20
EVAL_EVERY = 25
LOG_EVERY = 10


def command(workdir, data_dir):
  return cli_command(
      '--config', str(CONFIGS / 'lenet.py'), '--workdir', str(workdir),
      f'--config.train.num_steps={NUM_STEPS}',
      f'--config.checkpoint.every_steps={CHECKPOINT_EVERY}',
      f'--config.eval.every_steps={EVAL_EVERY}',
      f'--config.train.log_every_steps={LOG_EVERY}',
      f'--config.data.data_dir={data_dir}')


def committed_steps(workdir) -> list[int]:
  """Steps of the finished checkpoints (orbax writes into a temporary name, then renames)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if re.fullmatch(r'\d+', name))


def records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def final_params(workdir):
  """Params of the last checkpoint, read back with orbax as numpy arrays."""
  import orbax.checkpoint as ocp
  step = committed_steps(workdir)[-1]
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state',)) as m:
    restored = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  state = restored.state
  params = state['params'] if isinstance(state, dict) else state.params
  return step, params


def run(workdir, data_dir, cwd):
  return subprocess.run(command(workdir, data_dir), cwd=cwd, env=cli_env(), capture_output=True,
                        text=True, timeout=300)


def test_killed_run_resumes_to_the_same_result(tmp_path, digits_dir):
  a, b = tmp_path / 'A', tmp_path / 'B'

  uninterrupted = run(a, digits_dir, tmp_path)
  assert uninterrupted.returncode == 0, uninterrupted.stderr
  assert 'resuming' not in uninterrupted.stdout

  # B: the same command, killed (SIGKILL: no cleanup of any kind) once it has committed a
  # checkpoint before the last step.
  process = subprocess.Popen(command(b, digits_dir), cwd=tmp_path, env=cli_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 240  # a hang guard, not a pass condition
    while not [s for s in committed_steps(b) if s < NUM_STEPS]:
      assert process.poll() is None, f'run B ended (rc {process.returncode}) before a checkpoint'
      assert time.monotonic() < deadline, 'no checkpoint appeared'
      time.sleep(0.02)
    process.kill()
  finally:
    process.kill()
    process.wait()
  assert process.returncode == -9
  steps_at_kill = committed_steps(b)
  assert steps_at_kill and max(steps_at_kill) < NUM_STEPS, steps_at_kill

  resumed = run(b, digits_dir, tmp_path)
  assert resumed.returncode == 0, resumed.stderr
  match = re.search(r'resuming from checkpoint at step (\d+)', resumed.stdout)
  assert match, resumed.stdout
  start = int(match.group(1))
  assert 0 < start < NUM_STEPS
  assert start % CHECKPOINT_EVERY == 0 and start >= max(steps_at_kill)

  # The final eval, and every eval on the way, are equal to the last bit.
  eval_a = [r for r in records(a) if r['split'] == 'eval']
  eval_b = [r for r in records(b) if r['split'] == 'eval']
  assert [r['step'] for r in eval_a] == [25, 50, 75, 100]
  assert eval_b == eval_a
  assert eval_b[-1]['num_examples'] == 360
  # Train records too, but for the measured speed; no record is lost or doubled.
  def without_speed(rs):
    return [{k: v for k, v in r.items() if k != 'images_per_sec'} for r in rs
            if r['split'] == 'train']
  assert [r['step'] for r in without_speed(records(b))] == list(range(10, 101, 10))
  assert without_speed(records(b)) == without_speed(records(a))
  assert f'step {NUM_STEPS}' in resumed.stdout.splitlines()[-1]

  step_a, params_a = final_params(a)
  step_b, params_b = final_params(b)
  assert step_a == step_b == NUM_STEPS
  leaves_a, leaves_b = jax_leaves(params_a), jax_leaves(params_b)
  assert len(leaves_a) == len(leaves_b) == 10  # 5 layers x (kernel, bias)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def jax_leaves(tree):
  import jax
  return jax.tree.leaves(tree)
