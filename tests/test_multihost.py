"""Two processes on localhost with one CPU device each (mesh.data=2), the layout of two machines
with one GPU each: the run matches one process with two devices and its checkpoint restores
on one; a lost process ends the other; both killed after a checkpoint and rerun,
they resume to the same bits; workdirs that are not one shared directory stop both before
any training."""

import os
import subprocess
import time

import jax
import numpy as np
import pytest

import jaxcnn
from conftest import (CONFIGS, UNOPTIMIZED, cli_command, cli_env, committed_steps, finish,
                      leaves, max_relative_error, records, saved_state)
from jaxcnn.launch import free_port

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('multihost')

NUM_STEPS = 100
CHECKPOINT_EVERY = 50


def command(workdir, data_dir, *overrides):
  return cli_command(
      '--config', str(CONFIGS / 'lenet.py'), '--workdir', str(workdir),
      f'--config.data.data_dir={data_dir}', f'--config.train.num_steps={NUM_STEPS}',
      f'--config.checkpoint.every_steps={CHECKPOINT_EVERY}',
      f'--config.eval.every_steps={CHECKPOINT_EVERY}',
      f'--config.train.log_every_steps={CHECKPOINT_EVERY}', '--config.mesh.data=2', *overrides)


# Every process here runs unoptimized (conftest.UNOPTIMIZED): their results are compared with
# each other only, and optimizing LeNet's programs took longer than its 100 steps.
def start(workdirs, data_dir, cwd):
  """The processes of one run, process i in workdirs[i], each with one CPU device."""
  port = free_port()
  return [subprocess.Popen(
      command(workdir, data_dir, f'--config.distributed.coordinator_address=localhost:{port}',
              f'--config.distributed.num_processes={len(workdirs)}',
              f'--config.distributed.process_id={i}'),
      cwd=cwd, env=cli_env(JAX_NUM_CPU_DEVICES='1', **UNOPTIMIZED), text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i, workdir in enumerate(workdirs)]


def start_one_process(workdir, data_dir, cwd):
  """The same run in one process with two CPU devices."""
  return subprocess.Popen(command(workdir, data_dir), cwd=cwd,
                          env=cli_env(JAX_NUM_CPU_DEVICES='2', **UNOPTIMIZED), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def flat_params(workdir) -> dict:
  params = saved_state(workdir)[1]['params']
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


@pytest.fixture(scope='module')
def runs(digits_dir, once_per_session):
  """Workdirs and outputs of the same run as 2 processes x 1 device and as 1 process x 2
  devices, run side by side."""

  def run_both(base):
    two, one = base / 'two_processes', base / 'one_process'
    *two_processes, one_process = finish(start([two, two], digits_dir, base)
                                         + [start_one_process(one, digits_dir, base)])
    return {'two': str(two), 'one': str(one), 'two_processes': two_processes,
            'one_process': one_process}

  return once_per_session('multihost', run_both)


def test_two_processes_with_one_device_each_match_one_process_with_two(runs):
  for status, out, err in [*runs['two_processes'], runs['one_process']]:
    assert status == 0, err[:3000]
  two, one = runs['two'], runs['one']
  assert committed_steps(two) == [50, 100]
  np.testing.assert_allclose([r['loss'] for r in records(two, 'train')],
                             [r['loss'] for r in records(one, 'train')], rtol=1e-5)
  assert [r['top1'] for r in records(two, 'eval')] == [r['top1'] for r in records(one, 'eval')]
  assert max_relative_error(flat_params(two), flat_params(one)) < 1e-5
  final_lines = [out.strip().splitlines()[-1] for _, out, _ in runs['two_processes']]
  assert final_lines[0] == final_lines[1] and final_lines[0].startswith('final eval top-1 ')


def test_two_process_checkpoint_restores_on_one_device(runs):
  restored = jaxcnn.restore(runs['two'])
  images, labels = restored.eval_examples()
  accuracy = np.mean(restored.predict(images).argmax(axis=1) == labels)
  assert restored.step == NUM_STEPS
  assert accuracy == records(runs['two'], 'eval')[-1]['top1']
  devices = {device for leaf in jax.tree.leaves(restored.variables) for device in leaf.devices()}
  assert len(devices) == 1


def wait_for_the_first_checkpoint(processes, workdir):
  while CHECKPOINT_EVERY not in committed_steps(workdir):
    assert all(p.poll() is None for p in processes), 'a process ended before step 50'
    time.sleep(0.05)


def test_a_lost_process_ends_the_other_with_its_checkpoint_intact(digits_dir, tmp_path):
  workdir = tmp_path / 'run'
  processes = start([workdir, workdir], digits_dir, tmp_path)
  try:
    wait_for_the_first_checkpoint(processes, workdir)
    processes[1].kill()
    killed = time.monotonic()
    _, err = processes[0].communicate(timeout=120)
    seconds = time.monotonic() - killed
  finally:
    for p in processes:
      p.kill()
  assert processes[0].returncode == 1 and seconds < 120
  assert '\n' not in err.strip() and 'Traceback' not in err
  assert err.startswith('error: process 0 lost process 1 (')
  assert f'the last good checkpoint, step 50, is in {workdir}/checkpoints' in err
  assert committed_steps(workdir) == [50]
  assert saved_state(workdir)[0] == 50  # intact: it reads back


def test_both_killed_after_a_checkpoint_and_rerun_resume_to_the_same_bits(
    runs, digits_dir, tmp_path):
  workdir = tmp_path / 'run'
  processes = start([workdir, workdir], digits_dir, tmp_path)
  try:
    wait_for_the_first_checkpoint(processes, workdir)
  finally:
    # Both at once: a survivor ends itself (status 1) on losing the other, as the test above
    # checks, if it outlives it by the time that takes.
    for p in processes:
      p.kill()
    for p in processes:
      p.communicate()
  assert [p.returncode for p in processes] == [-9, -9]

  rerun = finish(start([workdir, workdir], digits_dir, tmp_path))
  for status, _, err in rerun:
    assert status == 0, err[:3000]
  assert f'resuming from checkpoint at step 50 of {NUM_STEPS}' in rerun[0][1]
  uninterrupted = runs['two']
  assert records(workdir, 'eval') == records(uninterrupted, 'eval')
  for x, y in zip(leaves(saved_state(workdir)[1]), leaves(saved_state(uninterrupted)[1]),
                  strict=True):
    np.testing.assert_array_equal(x, y)


def test_workdirs_not_shared_stop_every_process_before_training(digits_dir, tmp_path):
  workdirs = [tmp_path / 'host0', tmp_path / 'host1']
  began = time.monotonic()
  results = finish(start(workdirs, digits_dir, tmp_path), timeout=60)
  assert time.monotonic() - began < 60
  for i, (status, out, err) in enumerate(results):
    assert status == 2, err[-3000:]
    assert err.strip().splitlines() == [
        f'error: workdir {workdirs[i]} is not one directory shared by the 2 processes (process '
        f'{i} sees the markers of processes [{i}]); a multi-host run needs a workdir that '
        'every process sees, on NFS or a cluster filesystem: pass such a --workdir']
    assert 'training for' not in out
    assert os.listdir(workdirs[i]) == []  # its marker removed, nothing else written
