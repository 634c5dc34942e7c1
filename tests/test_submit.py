"""Runs as submitit jobs (jaxcnn/launch.py): a sweep whose variants are jobs of submitit's
local executor, a 2-process run as one job of 2 tasks, a preempted job requeued and resumed,
and the sbatch script that --launcher=slurm submits (to fake sbatch and srun commands)."""

import concurrent.futures
import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import submitit

from conftest import CONFIGS, cli_env, leaves, records, saved_state
from jaxcnn import launch, train
from jaxcnn.rundir import RunLock

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('submit')

LENET = str(CONFIGS / 'lenet.py')
# A few dozen steps of LeNet on digits, with XLA's convolutions (no tuning to wait for).
SHORT_RUN = ['--config.train.num_steps=30', '--config.train.log_every_steps=10',
             '--config.eval.every_steps=30', '--config.checkpoint.every_steps=30',
             '--config.train.conv_tuning=False']


def run_tool(module, cwd, *args, env=None):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=env or cli_env(),
                        capture_output=True, text=True, timeout=600)


def job_files(directory):
  return sorted(str(p.relative_to(directory)) for p in directory.glob('*/jobs/*'))


@pytest.fixture(scope='session')
def seeds_sweep(once_per_session, digits_dir):
  """configs/lenet.py's `recipe` sweep over 3 seeds as submitit_local jobs, run three times:
  with seed-2's workdir held by another run (that run fails, the others train), then again
  (only seed-2 is submitted), then once more (nothing is). Once per test session, for every
  xdist worker:
  (the sweep's directory, what each of the three commands printed, the rows after the first,
  the jobs' files after the second)."""

  def run_three_times(cwd):
    args = ['--config', LENET, '--sweep', 'recipe', '--seeds', '3', '--workdir', 'sweep',
            '--launcher', 'submitit_local', '--wait', f'--config.data.data_dir={digits_dir}',
            *SHORT_RUN]
    with RunLock(str(cwd / 'sweep' / 'seed-2')):
      first = run_tool('jaxcnn.sweep', cwd, *args)
    first_rows = read_rows(cwd / 'sweep')
    second = run_tool('jaxcnn.sweep', cwd, *args)
    files = job_files(cwd / 'sweep')
    third = run_tool('jaxcnn.sweep', cwd, *args)
    printed = [{'returncode': r.returncode, 'stdout': r.stdout, 'stderr': r.stderr}
               for r in (first, second, third)]
    return {'directory': str(cwd / 'sweep'), 'printed': printed, 'first_rows': first_rows,
            'files': files}

  result = once_per_session('submitit_sweep', run_three_times)
  first, second, third = (subprocess.CompletedProcess([], **p) for p in result['printed'])
  return Path(result['directory']), first, result['first_rows'], second, result['files'], third


def read_rows(directory, table='runs.csv'):
  with open(directory / table) as f:
    return {row['variant']: row for row in csv.DictReader(f)}


def test_a_failed_variant_is_reported_and_the_others_train(seeds_sweep):
  out, first, rows, *_ = seeds_sweep
  assert first.returncode == 1, first.stderr
  assert [rows[n]['status'] for n in ('seed-0', 'seed-1')] == ['ok', 'ok']
  assert rows['seed-2']['status'].startswith("failed: error: workdir sweep/seed-2 is in use "
                                             'by another run'), rows['seed-2']
  assert rows['seed-2']['steps'] == ''
  assert first.stdout.count('submitted as job') == 3
  assert '2 of 3 runs ok' in first.stdout


def test_the_rerun_submits_only_the_failed_variant_and_all_end_ok(seeds_sweep):
  out, _, _, second, *_ = seeds_sweep
  assert second.returncode == 0, second.stderr
  assert second.stdout.count('finished earlier, skipped') == 2
  assert 'seed-2: submitted as job' in second.stdout and second.stdout.count('submitted') == 1
  rows = read_rows(out)
  assert [rows[n]['status'] for n in ('seed-0', 'seed-1', 'seed-2')] == ['ok'] * 3
  for name, row in rows.items():
    evals = records(out / name, 'eval')
    assert row['steps'] == '30' and float(row['test_top1']) == evals[-1]['top1']
    # Each variant ran as a submitit job of the local executor: its job file names it, and
    # the job's log (the submitit task's) holds submitit's lines; the run's own output is in
    # sweep.log, as with the local launcher.
    job = json.loads((out / name / 'job.json').read_text())
    assert job['launcher'] == 'submitit_local' and job['folder'] == str(out / name / 'jobs')
    log = (out / name / 'jobs' / f"{job['job_id']}_0_log.out").read_text()
    assert 'submitit INFO' in log and 'Job completed successfully' in log
    assert 'final eval top-1' in (out / name / 'sweep.log').read_text()
  assert len({rows[n]['test_top1'] + rows[n]['train_loss'] for n in rows}) == 3  # three seeds
  (recipe,) = read_rows(out, 'results.csv').values()  # the variant over its seeds
  assert recipe['seeds'] == '3' and recipe['status'] == 'ok'
  test_top1 = [float(row['test_top1']) for row in rows.values()]
  assert float(recipe['test_top1']) == pytest.approx(np.mean(test_top1), rel=1e-12)
  assert float(recipe['test_top1_std']) == pytest.approx(np.std(test_top1, ddof=1), rel=1e-9)


def test_a_rerun_of_a_finished_sweep_submits_nothing(seeds_sweep):
  out, _, _, _, files, third = seeds_sweep
  assert third.returncode == 0, third.stderr
  assert third.stdout.count('finished earlier, skipped') == 3 and 'submitted' not in third.stdout
  assert job_files(out) == files
  assert '3 of 3 runs ok' in third.stdout


def test_two_task_job_matches_one_process_and_restores_on_one_device(tmp_path, digits_dir,
                                                                     digits_config, seeds_sweep):
  """`jaxcnn.submit --launcher=submitit_local --tasks 2`: 2 JAX processes of 2 CPU devices
  each, their rank and world size from submitit's job environment. The 1-process run of the
  same config is the sweep's seed-0 variant."""
  workdir = tmp_path / 'two_tasks'
  result = run_tool('jaxcnn.submit', tmp_path, '--config', LENET, '--workdir', str(workdir),
                    '--launcher=submitit_local', '--tasks', '2', '--wait',
                    f'--config.data.data_dir={digits_dir}', *SHORT_RUN,
                    env=cli_env(XLA_FLAGS='--xla_force_host_platform_device_count=2'))
  assert result.returncode == 0, result.stdout + result.stderr
  job_id = json.loads((workdir / 'job.json').read_text())['job_id']
  assert f'submitted job {job_id} (2 tasks)' in result.stdout
  assert 'final eval top-1' in result.stdout
  for task in (0, 1):
    log = (workdir / 'jobs' / f'{job_id}_{task}_log.out').read_text()
    assert f'global_rank={task}(2)' in log and 'final eval top-1' in log
  assert sorted(p.name for p in workdir.glob('library*.log')) == [
      'library.log', 'library.process-1.log']

  one_process = seeds_sweep[0] / 'seed-0'
  np.testing.assert_allclose([r['loss'] for r in records(workdir, 'train')],
                             [r['loss'] for r in records(one_process, 'train')], rtol=1e-5)
  written = records(workdir, 'eval')[-1]
  assert written['top1'] == records(one_process, 'eval')[-1]['top1']
  config = digits_config('lenet', **{'train.num_steps': 30})
  restored = train.evaluate_checkpoint(config, str(workdir))
  assert jax.device_count() == 1 and restored['step'] == 30
  assert restored['top1'] == written['top1']
  assert restored['loss'] == pytest.approx(written['loss'], rel=1e-6)


def child_of(pid: int) -> int:
  """The pid of the first child of process `pid`, once it has one."""
  for _ in range(600):
    children = open(f'/proc/{pid}/task/{pid}/children').read().split()
    if children:
      return int(children[0])
    time.sleep(0.1)
  raise AssertionError(f'process {pid} started no child')


def task_of(job) -> int:
  """The pid of a local job's task: the child of the job's controller process."""
  return child_of(int(job.job_id))


# A run that counts the SIGTERMs it gets for a second, and exits with the count.
COUNTING_RUN = """
import signal, sys, time
count = 0
def handle(*_):
  global count
  count += 1
signal.signal(signal.SIGTERM, handle)
open(sys.argv[1], 'w').write('ready')
time.sleep(1)
sys.exit(count)
"""


def test_a_preempted_task_sends_its_run_one_sigterm(tmp_path):
  """Preemption reaches a task twice (SIGTERM, and submitit's USR2 calling the checkpoint
  hook); the run must get one SIGTERM, since a second would end it at once, unsaved."""
  job, ready = launch.TrainingJob([]), tmp_path / 'ready'
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    status = pool.submit(job.call, [sys.executable, '-c', COUNTING_RUN, str(ready)])
    while not ready.exists():
      time.sleep(0.01)
    job._signal_child()  # what the task's SIGTERM handler does
    time.sleep(0.2)  # a second signal now would be counted apart from the first
    job.checkpoint()  # submitit's hook: it stops the run and waits for it
    assert status.result() == 1


def test_preempted_job_saves_is_requeued_and_resumes_to_the_same_parameters(
    tmp_path, digits_dir, digits_config, monkeypatch):
  """SLURM preempting a job sends SIGTERM to its processes and, where the cluster sets
  preempt_send_user_signal, submitit's USR2: the run saves a checkpoint, submitit requeues the
  job, and the requeued job resumes to the parameters of an uninterrupted run, bit for bit."""
  overrides = {'train.num_steps': 120, 'train.log_every_steps': 10,
               'checkpoint.every_steps': 40, 'eval.every_steps': 60}
  train.train_and_evaluate(digits_config('lenet', **overrides), str(tmp_path / 'reference'))

  for name, value in cli_env().items():  # the job's processes inherit this environment
    monkeypatch.setenv(name, value)
  workdir = tmp_path / 'preempted'
  executor = launch.executor(launch.Resources('submitit_local'), str(workdir / 'jobs'), 'lenet')
  job = executor.submit(launch.TrainingJob(
      ['--config', LENET, '--workdir', str(workdir), f'--config.data.data_dir={digits_dir}',
       '--config.train.conv_tuning=False', *(f'--config.{k}={v}' for k, v in overrides.items())]))
  try:
    task = task_of(job)
    metrics = workdir / 'metrics.jsonl'
    run = child_of(task)  # the task's python -m jaxcnn.main
    # Until the run has logged step 30 (of 120): under a loaded CI machine its start (imports,
    # compiles) has taken over a minute, and signals sent before it has a checkpoint to resume
    # from would test nothing.
    deadline = time.monotonic() + 300
    while not (metrics.exists() and any(r['step'] >= 30 for r in records(workdir, 'train'))):
      assert time.monotonic() < deadline, 'the job had not logged step 30 after 5 minutes'
      assert not job.done(), f'the job ended before step 30:\n{job.stdout()}\n{job.stderr()}'
      time.sleep(0.01)
    # Paused while the signals come, so that it cannot end its 120 steps (a second or two)
    # before they reach it.
    os.kill(run, signal.SIGSTOP)
    os.kill(int(job.job_id), signal.SIGTERM)  # the local executor passes it on to its task
    os.kill(task, signal.SIGUSR2)
    time.sleep(1)  # for the task to pass SIGTERM on
    os.kill(run, signal.SIGCONT)
    for _ in range(3000):  # at most 5 minutes
      if job.done():
        break
      time.sleep(0.1)
    assert job.result() == 0  # the requeued job's run's exit status
  finally:
    job.cancel()
  log = job.stdout()
  assert 'stopped by SIGTERM at step ' in log, log
  stopped = int(log.split('stopped by SIGTERM at step ')[1].split()[0])
  assert 30 <= stopped < 120
  assert 'Calling checkpoint method' in log and 'Requeued job' in log
  assert f'resuming from checkpoint at step {stopped} of 120' in log
  assert records(workdir, 'train') == records(tmp_path / 'reference', 'train')
  assert records(workdir, 'eval') == records(tmp_path / 'reference', 'eval')
  step_a, state_a = saved_state(tmp_path / 'reference')
  step_b, state_b = saved_state(workdir)
  assert step_a == step_b == 120
  for x, y in zip(leaves(state_a), leaves(state_b), strict=True):
    np.testing.assert_array_equal(x, y)


# Stand-ins for SLURM's commands: sbatch keeps the script it is given and answers with a job
# id, sacct says every job is pending, srun exists (submitit looks for it).
FAKE_SLURM = {
    'sbatch': 'n=$(( $(cat "$FAKE_SLURM/count" 2>/dev/null || echo 4241) + 1 ))\n'
              'echo $n > "$FAKE_SLURM/count"; cp "$1" "$FAKE_SLURM/sbatch-$n.sh"\n'
              'echo "Submitted batch job $n"\n',
    'sacct': 'echo "JobID|State|NodeList"\n'
             'for n in $(seq 4242 $(cat "$FAKE_SLURM/count")); do echo "$n|PENDING|"; done\n',
    'srun': 'exit 1\n',
}


def fake_slurm(directory):
  directory.mkdir()
  for name, body in FAKE_SLURM.items():
    (directory / name).write_text('#!/bin/bash\n' + body)
    (directory / name).chmod(stat.S_IRWXU)
  return cli_env(FAKE_SLURM=str(directory), PATH=f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_slurm_sweep_submits_one_sbatch_job_per_variant_with_the_resources(tmp_path):
  """What --launcher=slurm submits, SLURM itself being absent: the sbatch script of each
  variant's job, and the job pickled for it; a rerun leaves queued jobs alone."""
  env = fake_slurm(tmp_path / 'bin')
  args = ['--config', LENET, '--sweep', 'recipe', '--seeds', '3', '--workdir', 'sweep',
          '--launcher=slurm',
          '--nodes', '2', '--tasks', '4', '--gpus_per_node', '4', '--cpus_per_task', '8',
          '--mem_gb', '64', '--timeout_min', '120', '--partition', 'gpu', '--account', 'proj',
          '--sbatch', 'qos=high', '--sbatch', 'constraint=a100', '--config.train.num_steps=30']
  result = run_tool('jaxcnn.sweep', tmp_path, *args, env=env)
  assert result.returncode == 0, result.stderr
  for n, name in zip((4242, 4243, 4244), ('seed-0', 'seed-1', 'seed-2')):
    folder = tmp_path / 'sweep' / name / 'jobs'
    assert f'{name}: submitted as job {n} (logs in {folder})' in result.stdout
    script = (tmp_path / 'bin' / f'sbatch-{n}.sh').read_text().splitlines()
    options = [line for line in script if line.startswith('#SBATCH')]
    assert options == [
        '#SBATCH --account=proj', '#SBATCH --constraint=a100', '#SBATCH --cpus-per-task=8',
        f'#SBATCH --error={folder}/%j_0_log.err', '#SBATCH --gpus-per-node=4',
        f'#SBATCH --job-name={name}', '#SBATCH --mem=64GB', '#SBATCH --nodes=2',
        '#SBATCH --ntasks-per-node=4', '#SBATCH --open-mode=append',
        f'#SBATCH --output={folder}/%j_0_log.out', '#SBATCH --partition=gpu',
        '#SBATCH --qos=high', '#SBATCH --signal=USR2@90', '#SBATCH --time=120',
        '#SBATCH --wckey=submitit']
    assert script[-1] == (f'srun --unbuffered --output {folder}/%j_%t_log.out --error '
                          f'{folder}/%j_%t_log.err {sys.executable} -u -m submitit.core._submit '
                          f'{folder}')
    job = submitit.core.utils.DelayedSubmission.load(folder / f'{n}_submitted.pkl').function
    assert job.command == ['-m', 'jaxcnn.main', '--config', LENET, '--workdir',
                           os.path.join('sweep', name), '--config.train.num_steps=30',
                           f'--config.seed={name[-1]}']
    assert job.port is None  # on SLURM the runs find each other from SLURM's environment
  rows = read_rows(tmp_path / 'sweep')
  assert [row['status'] for row in rows.values()] == [
      f'queued or running: job {n}' for n in (4242, 4243, 4244)]
  assert '0 of 3 runs ok, 3 queued or running' in result.stdout

  again = run_tool('jaxcnn.sweep', tmp_path, *args, env=env)
  assert again.returncode == 0, again.stderr
  assert again.stdout.count('not submitted again') == 3 and 'submitted as' not in again.stdout
  assert not (tmp_path / 'bin' / 'sbatch-4245.sh').exists()


@pytest.mark.parametrize('resources, message', [
    (launch.Resources('submitit_local', nodes=2), '--nodes=2: --launcher=submitit_local runs on '
                                                   'this machine only'),
    (launch.Resources('submitit_local', tasks=0), '--tasks=0: give at least 1'),
    (launch.Resources('slurm', sbatch=('qos',)), '--sbatch=qos: give KEY=VALUE'),
])
def test_impossible_resources_are_user_errors(resources, message):
  from jaxcnn.errors import UserError
  with pytest.raises(UserError, match=message):
    launch.check(resources)


def test_slurm_without_slurm_is_one_error_line(tmp_path):
  result = run_tool('jaxcnn.submit', tmp_path, '--config', LENET, '--launcher=slurm',
                    env=cli_env(PATH=os.path.dirname(sys.executable)))
  assert result.returncode == 2
  assert result.stderr == ("error: --launcher=slurm needs SLURM's sbatch and srun on PATH; submit "
                           "from the cluster's login node (or use --launcher=submitit_local on "
                           'this machine)\n')
  assert os.listdir(tmp_path) == []
