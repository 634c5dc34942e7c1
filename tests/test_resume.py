"""Runs killed at random moments, stopped by SIGTERM, or left with a damaged checkpoint end
exactly where an uninterrupted run ends; a run whose loss turns non-finite stops with an error
and saves nothing after its last good step."""

import os
import random
import re
import signal
import subprocess
import time

import numpy as np

from conftest import CONFIGS, cli_command, cli_env, committed_steps, leaves, records, saved_state

NUM_STEPS = 300  # > 44 steps per epoch (batch 32): resumed parts cross epoch boundaries
CHECKPOINT_EVERY = 10
EVAL_EVERY = 100
LOG_EVERY = 5  # a line every 5 steps: the test kills a run at a step of its choosing
KILLS = 3


def command(workdir, data_dir, *overrides):
  return cli_command(
      '--config', str(CONFIGS / 'lenet.py'), '--workdir', str(workdir),
      f'--config.train.num_steps={NUM_STEPS}',
      f'--config.checkpoint.every_steps={CHECKPOINT_EVERY}',
      f'--config.eval.every_steps={EVAL_EVERY}',
      f'--config.train.log_every_steps={LOG_EVERY}',
      f'--config.data.data_dir={data_dir}', *overrides)


def run(workdir, data_dir, cwd, *overrides):
  return subprocess.run(command(workdir, data_dir, *overrides), cwd=cwd, env=cli_env(),
                        capture_output=True, text=True, timeout=300)


def start(workdir, data_dir, cwd):
  """Starts a run and returns it once it has begun its steps (with its first output line)."""
  process = subprocess.Popen(command(workdir, data_dir), cwd=cwd, env=cli_env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  line = process.stdout.readline()
  assert re.match(r'(training for|resuming from checkpoint at step \d+ of) ', line), line
  return process, line


def run_past(process, step: int) -> None:
  """Reads the run's output until its train record of `step` or later."""
  for line in process.stdout:
    logged = re.match(r'train step +(\d+) ', line)
    if logged and int(logged.group(1)) >= step:
      return
  raise AssertionError(f'the run ended before step {step}')


def test_killed_and_stopped_run_resumes_to_the_same_result(tmp_path, digits_dir):
  a, b = tmp_path / 'A', tmp_path / 'B'
  uninterrupted = run(a, digits_dir, tmp_path)
  assert uninterrupted.returncode == 0, uninterrupted.stderr
  assert 'resuming' not in uninterrupted.stdout

  # B: the same command, SIGKILLed (no cleanup of any kind) at 3 random moments of its steps,
  # each a few milliseconds after a random step (checkpoint saves included), each time rerun.
  # The moments are random but seeded: JAXCNN_TEST_SEED replays another draw.
  seed = int(os.environ.get('JAXCNN_TEST_SEED', '20261202'))
  print(f'kill moments drawn with seed {seed}')
  rng = random.Random(seed)
  kill_steps = sorted(rng.sample(range(LOG_EVERY, NUM_STEPS - 50, LOG_EVERY), KILLS))
  delays = [round(rng.uniform(0, 0.05), 3) for _ in range(KILLS)]
  starts = []
  for kill_step, delay in zip(kill_steps, delays):
    process, line = start(b, digits_dir, tmp_path)
    starts.append(line)
    run_past(process, kill_step)
    time.sleep(delay)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL, (seed, kill_steps, delays, starts)

  # Then SIGTERM: the run saves a checkpoint at the step it reached and exits 0.
  process, line = start(b, digits_dir, tmp_path)
  run_past(process, rng.randrange(NUM_STEPS - 40, NUM_STEPS - 10, LOG_EVERY))
  process.send_signal(signal.SIGTERM)
  out, _ = process.communicate(timeout=120)
  assert process.returncode == 0, out
  stopped = re.search(rf'stopped by SIGTERM at step (\d+) of {NUM_STEPS}; .* rerun the same command', out)
  assert stopped, out
  assert committed_steps(b)[-1] == int(stopped.group(1)) < NUM_STEPS

  resumed = run(b, digits_dir, tmp_path)
  assert resumed.returncode == 0, resumed.stderr
  assert f'resuming from checkpoint at step {stopped.group(1)} of' in resumed.stdout
  resumed_from = [int(re.search(r'step (\d+)', s).group(1)) if 'resuming' in s else 0
                  for s in starts]
  assert resumed_from == sorted(resumed_from), (seed, kill_steps, resumed_from)
  assert resumed_from[-1] > 0  # the kills came after checkpoints, not all before the first

  # Every eval and train record (but for the measured speed) and the final parameters are
  # equal to the last bit; no record is lost or doubled.
  assert [r['step'] for r in records(a, 'eval')] == [100, 200, 300]
  assert records(b, 'eval') == records(a, 'eval')
  assert records(b, 'train') == records(a, 'train')
  assert [r['step'] for r in records(b, 'train')] == list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY))
  step_a, state_a = saved_state(a)
  step_b, state_b = saved_state(b)
  assert step_a == step_b == NUM_STEPS
  assert len(leaves(state_a['params'])) == 10  # 5 layers x (kernel, bias)
  for x, y in zip(leaves(state_a), leaves(state_b), strict=True):
    np.testing.assert_array_equal(x, y)
  # A damaged latest checkpoint: its root index truncated. The rerun warns, sets it aside,
  # resumes from the one before and again ends with the same parameters.
  latest = b / 'checkpoints' / str(NUM_STEPS)
  for index_file in (latest / 'state' / 'd').iterdir():
    with open(index_file, 'r+b') as f:
      f.truncate(index_file.stat().st_size // 2)
  rerun = run(b, digits_dir, tmp_path)
  assert rerun.returncode == 0, rerun.stderr
  # orbax's own threads may print tracebacks around it, even mid-line: search the whole text.
  warnings = re.findall(r'warning: checkpoint at step (\d+) is unreadable \(.*\); skipped it '
                        r'\(moved to (\S+)\)', rerun.stderr)
  assert warnings == [(str(NUM_STEPS), str(b / 'unreadable_checkpoints' / str(NUM_STEPS)))], (
      rerun.stderr)
  assert f'resuming from checkpoint at step {NUM_STEPS - CHECKPOINT_EVERY} of' in rerun.stdout
  assert (b / 'unreadable_checkpoints' / str(NUM_STEPS) / 'state').is_dir()  # kept, not deleted
  _, state_b = saved_state(b)
  for x, y in zip(leaves(state_a), leaves(state_b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, digits_dir):
  # A learning rate of 1e30 makes the first step's parameters huge (still finite) and the
  # second step's loss non-finite.
  workdir = tmp_path / 'run'
  result = run(workdir, digits_dir, tmp_path, '--config.optimizer.learning_rate=1e30',
               '--config.optimizer.schedule=constant', '--config.checkpoint.every_steps=1')
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip().splitlines() == [
      'error: the loss or the parameters became non-finite (NaN or inf) at step 2; nothing '
      f'after it was saved and the last good checkpoint, step 1, is in {workdir}/checkpoints; '
      'lower optimizer.learning_rate, or pass --config.train.skip_nonfinite_steps=True to skip '
      'such steps']
  assert committed_steps(workdir) == [1]
  step, state = saved_state(workdir)
  assert step == 1
  assert np.max(np.abs(leaves(state['params'])[0])) > 1e20  # huge, and
  assert all(np.isfinite(x).all() for x in leaves(state))  # finite
