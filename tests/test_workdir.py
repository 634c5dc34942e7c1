"""Faults that real machines produce, met by one run per workdir and by files that survive
them: a second run on a busy workdir is refused, a killed run's lock is taken over, a torn
metrics line is dropped, a full disk ends a run in one line and the run resumes afterwards,
each time to the parameters of a run that met no fault."""

import errno
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import (CONFIGS, cli_command, cli_env, committed_steps, leaves, load_config,
                      records, saved_state)
from jaxcnn import rundir, sweep, train
from jaxcnn.errors import UserError, WriteError
from jaxcnn.reporting import Reporter, read_metrics

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('workdir')

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_STEPS, CHECKPOINT_EVERY, EVAL_EVERY, LOG_EVERY = 120, 20, 40, 10
KEEP = NUM_STEPS // CHECKPOINT_EVERY  # every checkpoint is kept, to compare any of them
HOST = re.escape(socket.gethostname())
STARTED = r'started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ?\S*'
# Every line a run prints on stdout: its start, its records, its final line.
PROJECT_LINE = re.compile(r'(training for|resuming from checkpoint at step \d+ of) \d+ steps .*'
                          r'|(train|eval ) step +\d+ \| .*|final eval top-1 .*')


def arguments(workdir, data_dir) -> list[str]:
  return ['--config', str(CONFIGS / 'lenet.py'), '--workdir', str(workdir),
          f'--config.train.num_steps={NUM_STEPS}',
          f'--config.checkpoint.every_steps={CHECKPOINT_EVERY}',
          f'--config.checkpoint.keep={KEEP}', f'--config.eval.every_steps={EVAL_EVERY}',
          f'--config.train.log_every_steps={LOG_EVERY}', f'--config.data.data_dir={data_dir}',
          # XLA's convolutions, as the in-process lone run has (tests/conftest.py)
          '--config.train.conv_tuning=False']


def run_main(workdir, data_dir, cwd):
  return subprocess.run(cli_command(*arguments(workdir, data_dir)), cwd=cwd, env=cli_env(),
                        capture_output=True, text=True, timeout=600)


def start_main(workdir, data_dir, cwd) -> subprocess.Popen:
  return subprocess.Popen(cli_command(*arguments(workdir, data_dir)), cwd=cwd, env=cli_env(),
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope='module')
def lone_run(digits_dir, tmp_path_factory):
  """The same run, alone and never interrupted: the result every faulty run must reach."""
  config = load_config('lenet')
  config.data.data_dir = digits_dir
  config.train.num_steps, config.train.log_every_steps = NUM_STEPS, LOG_EVERY
  config.checkpoint.every_steps, config.checkpoint.keep = CHECKPOINT_EVERY, KEEP
  config.eval.every_steps = EVAL_EVERY
  workdir = tmp_path_factory.mktemp('lone') / 'run'
  train.train_and_evaluate(config, str(workdir))
  return workdir


def assert_same_run(workdir, lone_run) -> None:
  """Every record (but the measured speed) and the final parameters equal to the last bit."""
  assert [r['step'] for r in records(workdir, 'eval')] == [40, 80, 120]
  assert records(workdir, 'eval') == records(lone_run, 'eval')
  assert records(workdir, 'train') == records(lone_run, 'train')
  (step, state), (lone_step, lone_state) = saved_state(workdir), saved_state(lone_run)
  assert step == lone_step == NUM_STEPS
  for x, y in zip(leaves(state), leaves(lone_state), strict=True):
    np.testing.assert_array_equal(x, y)


def in_use_line(workdir, pid: int) -> str:
  return (rf'error: workdir {re.escape(str(workdir))} is in use by another run: pid {pid} on '
          rf'host {HOST}, {STARTED} \({re.escape(str(workdir / "run.lock"))}\); wait for it to '
          'end or stop it, or pass another --workdir')


def test_a_second_run_is_refused_at_once_and_the_first_ends_as_a_lone_run(
    tmp_path, digits_dir, lone_run):
  workdir = tmp_path / 'run'
  first = start_main(workdir, digits_dir, tmp_path)
  assert first.stdout.readline().startswith('training for ')  # it holds the lock by now
  first.send_signal(signal.SIGSTOP)  # still holding it, however fast its steps
  started = time.perf_counter()
  second = run_main(workdir, digits_dir, tmp_path)
  print(f'the second run exited with status {second.returncode} after '
        f'{time.perf_counter() - started:.1f} s')
  assert json.loads((workdir / 'run.lock').read_text())['pid'] == first.pid  # untouched
  first.send_signal(signal.SIGCONT)
  out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err
  assert second.returncode == 2 and second.stdout == ''
  assert re.fullmatch(in_use_line(workdir, first.pid), second.stderr.strip()), second.stderr
  assert err == '' and all(PROJECT_LINE.fullmatch(line) for line in out.splitlines()), out
  assert (workdir / 'run.lock').read_text() == ''  # released: the next run warns of nothing
  assert_same_run(workdir, lone_run)


def test_a_killed_run_is_taken_over_its_torn_line_dropped_and_it_resumes_quietly(
    tmp_path, digits_dir, lone_run):
  # SIGKILLed a few milliseconds after the record of a checkpoint step: during that
  # checkpoint's save (or its evaluation). Seeded: JAXCNN_TEST_SEED replays another draw.
  seed = int(os.environ.get('JAXCNN_TEST_SEED', '20261202'))
  rng = random.Random(seed)
  kill_step = rng.randrange(2, NUM_STEPS // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
  delay = round(rng.uniform(0, 0.03), 3)
  print(f'seed {seed}: killed {delay} s after the record of step {kill_step}')
  workdir = tmp_path / 'run'
  killed = start_main(workdir, digits_dir, tmp_path)
  for line in killed.stdout:
    if line.startswith(f'train step {kill_step:>6d} '):
      break
  time.sleep(delay)
  killed.kill()
  killed.communicate()
  assert killed.returncode == -signal.SIGKILL
  # A crash in the middle of a record, as a power cut can leave it.
  with open(workdir / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 999, "split": "tr')

  resumed = run_main(workdir, digits_dir, tmp_path)
  assert resumed.returncode == 0, resumed.stderr
  warnings = resumed.stderr.splitlines()
  assert len(warnings) == 2, resumed.stderr
  assert re.fullmatch(
      rf'warning: took over the lock of workdir {re.escape(str(workdir))} from pid '
      rf'{killed.pid} on host {HOST}, {STARTED}, which ended without releasing it \(killed, or '
      r'its machine lost\)', warnings[0]), warnings[0]
  assert warnings[1] == (f'warning: dropped the torn last line of {workdir}/metrics.jsonl '
                         '(\'{"step": 999, "split": "tr\'...), left by a run stopped while '
                         'writing it')
  lines = resumed.stdout.splitlines()
  assert all(PROJECT_LINE.fullmatch(line) for line in lines), resumed.stdout
  resumed_from = int(re.match(r'resuming from checkpoint at step (\d+) of', lines[0]).group(1))
  assert resumed_from in (kill_step - CHECKPOINT_EVERY, kill_step), (seed, resumed_from)
  assert_same_run(workdir, lone_run)


def full_disk_error(workdir, step: int, last_good: int) -> str:
  return (f'error: saving the checkpoint in {workdir}/checkpoints failed at step {step} (No '
          f'space left on device); the last good checkpoint, step {last_good}, is in '
          f'{workdir}/checkpoints; free space or restore write permission there, lower '
          'checkpoint.keep, or pass another --workdir, then rerun the same command to resume')


def test_a_full_disk_while_saving_a_checkpoint_ends_the_run_in_one_line(
    tmp_path, digits_dir, lone_run):
  # tests/full_disk_worker.py: the disk is full for the files of the checkpoint of step 40.
  workdir = tmp_path / 'run'
  full = subprocess.run([sys.executable, os.path.join(HERE, 'full_disk_worker.py'), '40',
                         *arguments(workdir, digits_dir)], cwd=tmp_path, env=cli_env(),
                        capture_output=True, text=True, timeout=600)
  assert full.returncode == 2, full.stderr
  assert full.stderr.splitlines() == [full_disk_error(workdir, 40, 20)]
  assert all(PROJECT_LINE.fullmatch(line) for line in full.stdout.splitlines()), full.stdout
  assert 'No space left on device' in (workdir / 'library.log').read_text()  # orbax's lines
  assert committed_steps(workdir) == [20]
  for x, y in zip(leaves(saved_state(workdir, 20)[1]), leaves(saved_state(lone_run, 20)[1]),
                  strict=True):
    np.testing.assert_array_equal(x, y)  # the checkpoint before is intact

  resumed = run_main(workdir, digits_dir, tmp_path)  # the same command, space freed
  assert resumed.returncode == 0, resumed.stderr
  assert resumed.stderr == ''
  assert resumed.stdout.startswith(f'resuming from checkpoint at step 20 of {NUM_STEPS} steps')
  assert_same_run(workdir, lone_run)


def can_mount_tmpfs(directory) -> bool:
  if not shutil.which('unshare'):
    return False
  probe = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
                          f'mount -t tmpfs -o size=1m tmpfs {directory}'], capture_output=True)
  return probe.returncode == 0


def test_a_small_tmpfs_fills_while_saving_a_checkpoint(tmp_path, digits_dir, lone_run):
  """The same on a real 1.5 MB filesystem, where this machine lets a test mount one."""
  disk, out = tmp_path / 'disk', tmp_path / 'out'
  disk.mkdir()
  out.mkdir()
  if not can_mount_tmpfs(disk):
    pytest.skip('no tmpfs can be mounted here (the injected full disk above stands in)')
  workdir = disk / 'run'
  command = shlex.join(cli_command(*arguments(workdir, digits_dir)))
  # In a mount namespace of its own: fill the disk, free space (remount larger), resume, and
  # copy the run out before the namespace and its tmpfs go.
  script = (f'mount -t tmpfs -o size=1500k tmpfs {disk} && cd {tmp_path} && '
            f'{{ {command} > {out}/full.out 2> {out}/full.err; echo $? > {out}/full.status; '
            f'ls {workdir}/checkpoints > {out}/full.ls; mount -o remount,size=64m {disk}; '
            f'{command} > {out}/resumed.out 2> {out}/resumed.err; '
            f'echo $? > {out}/resumed.status; cp -r {workdir} {out}/run; }}')
  subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script],
                 env=cli_env(), check=True, timeout=900)
  read = lambda name: (out / name).read_text()
  assert read('full.status').strip() == '2', read('full.err')
  failed = re.fullmatch(r'error: saving the checkpoint in .* failed at step (\d+) .* step (\d+), '
                        r'is in .*', read('full.err').strip())
  assert failed, read('full.err')
  step, last_good = map(int, failed.groups())
  assert read('full.err').splitlines() == [full_disk_error(workdir, step, last_good)]
  committed = [int(name) for name in read('full.ls').split() if name.isdigit()]
  assert committed == list(range(CHECKPOINT_EVERY, last_good + 1, CHECKPOINT_EVERY))
  assert last_good == step - CHECKPOINT_EVERY
  assert read('resumed.status').strip() == '0', read('resumed.err')
  assert read('resumed.err') == ''
  assert read('resumed.out').startswith(f'resuming from checkpoint at step {last_good} of')
  assert_same_run(out / 'run', lone_run)


def test_the_lock_names_its_holder_and_is_taken_over_from_a_dead_one(tmp_path, capsys):
  workdir = tmp_path / 'run'
  with rundir.RunLock(str(workdir)):
    record = json.loads((workdir / 'run.lock').read_text())
    assert (record['pid'], record['host']) == (os.getpid(), socket.gethostname())
    # Another open of the file is another lock (flock): refused, as another process would be.
    for refuse in (rundir.RunLock, rundir.refuse_if_in_use):
      with pytest.raises(UserError) as error:
        refuse(str(workdir))
      assert re.fullmatch(in_use_line(workdir, os.getpid())[len('error: '):], str(error.value))
  assert (workdir / 'run.lock').read_text() == ''  # released
  rundir.refuse_if_in_use(str(workdir))
  with rundir.RunLock(str(workdir)):
    pass
  assert capsys.readouterr().err == ''  # a released lock is taken without a word

  # A record left behind: its holder died holding the lock, which the OS has released.
  (workdir / 'run.lock').write_text(json.dumps({'host': 'node7', 'pid': 4242,
                                                'started': '2026-12-01 10:00:00 UTC'}))
  with rundir.RunLock(str(workdir)):
    assert json.loads((workdir / 'run.lock').read_text())['pid'] == os.getpid()
  assert capsys.readouterr().err == (
      f'warning: took over the lock of workdir {workdir} from pid 4242 on host node7, started '
      '2026-12-01 10:00:00 UTC, which ended without releasing it (killed, or its machine lost)\n')
  assert sorted(os.listdir(workdir)) == ['run.lock']


@pytest.mark.parametrize('workdir', ['', '  '])
def test_an_empty_workdir_is_refused(workdir):
  with pytest.raises(UserError, match=re.escape(f"--workdir {workdir!r} is empty; pass a "
                                                'directory, or leave --workdir out')):
    rundir.RunLock(workdir)


def test_a_sweep_holds_its_directory(tmp_path):
  config_file = tmp_path / 'two.py'
  config_file.write_text(f"from jaxcnn.config import load_module\n"
                         f"get_config = load_module({str(CONFIGS / 'lenet.py')!r}).get_config\n"
                         "SWEEPS = {'s': {'model.activation': ['relu']}}\n")
  with rundir.RunLock(str(tmp_path / 'sweep')):
    with pytest.raises(UserError) as error:
      sweep.run_sweep(load_config('lenet'), str(config_file), 's', str(tmp_path / 'sweep'), [],
                      1, str(tmp_path / 'sweep'), None)
  assert re.fullmatch(in_use_line(tmp_path / 'sweep', os.getpid())[len('error: '):],
                      str(error.value))
  assert sorted(os.listdir(tmp_path / 'sweep')) == ['run.lock']  # no variant was started


def test_metrics_with_a_torn_last_line_or_a_damaged_one(tmp_path):
  good = [{'step': 5, 'split': 'train', 'loss': 1.5}, {'step': 10, 'split': 'eval', 'loss': 1.25}]
  text = ''.join(json.dumps(r) + '\n' for r in good)
  (tmp_path / 'metrics.jsonl').write_text(text + '{"step": 15, "spl')
  assert read_metrics(str(tmp_path)) == good
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1,\n' + text)
  with pytest.raises(UserError, match=r'metrics.jsonl line 1 is not a JSON record: the file was '
                                      'damaged; delete that line'):
    read_metrics(str(tmp_path))


def test_a_file_written_atomically_is_old_or_new_never_a_part(tmp_path, monkeypatch):
  path = tmp_path / 'config.json'
  rundir.write_atomically(str(path), 'old')

  def crash(*args):
    raise OSError(28, os.strerror(28))

  monkeypatch.setattr(os, 'replace', crash)  # the crash comes after the new text is written
  with pytest.raises(OSError):
    rundir.write_atomically(str(path), 'new')
  assert path.read_text() == 'old' and os.listdir(tmp_path) == ['config.json']
  monkeypatch.undo()
  rundir.write_atomically(str(path), 'new')
  assert path.read_text() == 'new' and os.listdir(tmp_path) == ['config.json']


def put_metrics_on_a_full_disk(reporter, monkeypatch) -> None:
  monkeypatch.setattr(reporter, 'metrics', open('/dev/full', 'ab', buffering=0))


class BufferOnAFullDisk(io.BytesIO):
  """A buffered file on a full disk: writes fill the buffer, each flush fails."""

  def flush(self):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def put_events_on_a_full_disk(reporter, monkeypatch) -> None:
  # tensorboardX's buffered file of events, which its writer thread fills and Reporter.write
  # flushes (put back after the test, for tensorboardX's clean-up at exit).
  events = reporter.tensorboard._get_file_writer().event_writer._ev_writer._py_recordio_writer
  monkeypatch.setattr(events, '_writer', BufferOnAFullDisk())


@pytest.mark.parametrize('fill, failed', [(put_metrics_on_a_full_disk, 'metrics.jsonl'),
                                          (put_events_on_a_full_disk, 'tensorboard')])
def test_a_reporter_on_a_full_disk_raises_a_write_error(tmp_path, monkeypatch, fill, failed):
  reporter = Reporter(str(tmp_path), total_steps=10, start_step=0)
  record = {'step': 5, 'split': 'eval', 'loss': 1.0, 'top1': 0.5, 'top5': 0.9}
  with pytest.raises(WriteError) as error:
    with reporter:
      fill(reporter, monkeypatch)
      reporter.write(record)
  assert str(error.value) == (f'writing {tmp_path}/{failed} failed at step 5 (No space left on '
                              'device)')
