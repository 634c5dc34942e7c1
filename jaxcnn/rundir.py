"""A run's work directory: its lock, its config.json, and the rules for starting or resuming
a run there.

One run at a time: a run holds WORKDIR/run.lock for its whole life, an OS lock (flock) that
ends with the process, and writes into the file who holds it (host, pid, start time). A
second run is refused naming the holder; a lock whose holder died without releasing it (a
SIGKILL, a lost machine) is taken over with a warning. The processes of one multi-host run
share one lock, taken by process 0.

WORKDIR/config.json is the config the run began with; checkpoints (jaxcnn/checkpoint.py) and
metrics (jaxcnn/reporting.py) live beside it. A run may resume in a workdir only with the same
config, up to the keys in RESUMABLE_CHANGES; `start_over` moves another run aside instead.
"""

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time

from ml_collections import config_dict

from jaxcnn.errors import UserError, reason, warn

CONFIG_FILE = 'config.json'
LOCK_FILE = 'run.lock'
CHECKPOINTS = 'checkpoints'  # the directory jaxcnn/checkpoint.py keeps its checkpoints in

# What a resumed run may change: how long it trains, how it evaluates, checkpoints and
# reports, where its data lies, the devices it runs on, how it computes its convolutions and
# how long it may take to stop.
# Anything else would make the resumed steps those of another experiment.
RESUMABLE_CHANGES = ('train.num_epochs', 'train.num_steps', 'train.log_every_steps', 'eval.',
                     'checkpoint.', 'data.data_dir', 'data.download', 'distributed.', 'mesh.',
                     'train.conv_tuning', 'train.stop_grace_seconds')


def check_name(workdir: str) -> None:
  """Refuses an empty or blank --workdir, which would put a run's files in the current
  directory."""
  if not workdir.strip():
    raise UserError(f'--workdir {workdir!r} is empty; pass a directory, or leave --workdir out '
                    'for the default runs/NAME-PRESET')


def write_atomically(path: str, text: str) -> None:
  """Writes `path` whole or not at all: a crash at any byte leaves the old file or the new one,
  never a part (a file beside it, flushed to disk, then renamed over it)."""
  partial = f'{path}.partial-{os.getpid()}'
  try:
    with open(partial, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(partial, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(partial)
    raise


def write_run_config(workdir: str, config) -> None:
  write_atomically(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def read_run_config(workdir: str) -> config_dict.ConfigDict:
  """The config a run in `workdir` was started with (tuples come back as lists)."""
  check_name(workdir)
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist; pass the --workdir of a training run')
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f'{path} is missing: {workdir} holds no jaxcnn run; pass the --workdir '
                    'of a training run')
  try:
    with open(path) as f:
      return config_dict.ConfigDict(json.load(f))
  except (ValueError, TypeError, AttributeError) as e:  # not JSON, or JSON but not a config
    raise UserError(f'{path} is damaged ({reason(e)}); put back a copy of the config.json the '
                    'run wrote, or train afresh with jaxcnn.main --start_over, which moves the '
                    'run aside') from None


def _flat(tree, prefix: str = '') -> dict:
  if not isinstance(tree, dict):
    return {prefix[:-1]: tree}
  return {k: v for key, value in tree.items() for k, v in _flat(value, f'{prefix}{key}.').items()}


def resume_conflicts(saved, config) -> list[str]:
  """The keys on which `config` differs from the `saved` config of a run it would resume,
  other than those a resumed run may change, as 'key: saved -> new'. Keys the saved config
  lacks (added to jaxcnn after that run began) are not compared."""
  as_plain = lambda c: _flat(json.loads(c.to_json_best_effort()))
  old, new = as_plain(saved), as_plain(config)
  return [f'{key}: {old[key]!r} -> {new.get(key)!r}' for key in sorted(old)
          if old[key] != new.get(key) and not key.startswith(RESUMABLE_CHANGES)]


def check_writable(workdir: str) -> None:
  """Proves that `workdir`, or where it would be created, takes files; creates nothing."""
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise _not_writable(workdir, e) from None


def _not_writable(workdir: str, error: OSError) -> UserError:
  return UserError(f'workdir {workdir} is not writable ({reason(error)}); pass a --workdir '
                   'you can write to')


def _holder(lock_file) -> str:
  """Who holds (or last held) a lock, from the record in its file."""
  try:
    record = json.loads(lock_file.read().decode())
    return f"pid {record['pid']} on host {record['host']}, started {record['started']}"
  except (ValueError, KeyError, TypeError):  # not written yet, or cleared
    return 'a process that has not yet written who it is'


def _try_lock(lock_file, mode: int) -> bool:
  try:
    fcntl.flock(lock_file, mode | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    return False


def _in_use(workdir: str, lock_file) -> UserError:
  lock_file.seek(0)
  return UserError(f'workdir {workdir} is in use by another run: {_holder(lock_file)} '
                   f'({os.path.join(workdir, LOCK_FILE)}); wait for it to end or stop it, or '
                   'pass another --workdir')


def refuse_if_in_use(workdir: str) -> None:
  """Refuses a workdir whose lock a live run holds; creates and changes nothing."""
  path = os.path.join(workdir, LOCK_FILE)
  if not os.path.exists(path):
    return
  with open(path, 'rb') as lock_file:
    if not _try_lock(lock_file, fcntl.LOCK_SH):  # a shared lock conflicts only with a holder
      raise _in_use(workdir, lock_file)


class RunLock:
  """The lock of a workdir, held until `release` (or the process's end)."""

  def __init__(self, workdir: str):
    check_name(workdir)
    try:
      os.makedirs(workdir, exist_ok=True)
      self.file = open(os.path.join(workdir, LOCK_FILE), 'a+b', buffering=0)
    except OSError as e:
      raise _not_writable(workdir, e) from None
    if not _try_lock(self.file, fcntl.LOCK_EX):
      error = _in_use(workdir, self.file)
      self.file.close()
      raise error
    self.file.seek(0)
    if self.file.read():  # a holder that released it would have cleared its record
      self.file.seek(0)
      warn(f'took over the lock of workdir {workdir} from {_holder(self.file)}, which ended '
           'without releasing it (killed, or its machine lost)')
    self.file.truncate(0)
    record = {'host': socket.gethostname(), 'pid': os.getpid(),
              'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
    self.file.write(json.dumps(record).encode())

  def release(self) -> None:
    self.file.truncate(0)  # an empty record: released, not abandoned
    self.file.close()  # closing releases the OS lock

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def check_workdir(config, workdir: str, start_over: bool, lock_holder: bool = True) -> None:
  """Refuses, before any work and creating nothing, a workdir that is unnamed or unwritable,
  in use by another run (checked by the process that would hold the lock), or that holds a
  run of another config (unless `start_over`)."""
  check_name(workdir)
  check_writable(workdir)
  if lock_holder:
    refuse_if_in_use(workdir)
  if not start_over:
    _refuse_another_config(config, workdir)


def _refuse_another_config(config, workdir: str) -> None:
  if not os.path.isdir(os.path.join(workdir, CHECKPOINTS)):
    return
  conflicts = resume_conflicts(read_run_config(workdir), config)
  if conflicts:
    raise UserError(f'workdir {workdir} holds a run with another config ({"; ".join(conflicts)}); '
                    'pass another --workdir, or --start_over to move that run aside')


def open_workdir(config, workdir: str, start_over: bool) -> tuple[RunLock, str | None]:
  """Takes the workdir's lock (creating the workdir) and checks again under it what
  check_workdir checked, since another run may have begun or ended since. With `start_over`
  a run there is moved aside to WORKDIR.replaced-TIME, whose path is returned too. Called by
  the lock-holding process only; it releases the lock."""
  lock = RunLock(workdir)
  try:
    if not os.path.isdir(os.path.join(workdir, CHECKPOINTS)):
      return lock, None
    if not start_over:
      _refuse_another_config(config, workdir)
      return lock, None
    aside = f"{workdir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(workdir, aside)  # the lock file goes with it, still held
    replaced, lock = lock, RunLock(workdir)
    replaced.release()
    return lock, aside
  except BaseException:
    lock.release()
    raise
