"""Training runs as submitit jobs: on SLURM (`slurm`), or as processes of this machine through
submitit's local executor (`submitit_local`), which runs the same jobs and so tests them.

A job runs `python -m jaxcnn.main ARGS` in each of its tasks, so it trains, resumes and logs as
that command does. A job of several tasks is one multi-process run: on SLURM each task's run
finds the others in SLURM's environment (jaxcnn/parallel.py); on the local executor the job
passes the address, the world size and the rank from submitit's job environment.

Stopping: SIGTERM (what SLURM sends every process of a job it preempts or cancels) reaches the
run, which saves a checkpoint and exits; SLURM requeues a preempted job where the partition
says so (PreemptMode=REQUEUE). submitit's own signal (USR2, sent `signal_delay_s` before the
time limit, and on preemption where the cluster sets preempt_send_user_signal) makes submitit
call the first task's `checkpoint()`: that stops the run the same way, then submitit requeues
the job. Either way the requeued job runs the same command, which resumes from the checkpoint.
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import submitit
from absl import flags

from jaxcnn.errors import UserError
from jaxcnn.rundir import write_atomically

SUBMITIT_LAUNCHERS = ('slurm', 'submitit_local')
JOBS_DIR = 'jobs'  # submitit's folder in a workdir: its jobs' pickles and logs
JOB_FILE = 'job.json'  # the last job submitted to train in a workdir


# The flags of a job's resources, after --launcher (define_flags).
JOB_FLAGS = ('nodes', 'tasks', 'gpus_per_node', 'cpus_per_task', 'mem_gb', 'timeout_min',
             'partition', 'account', 'sbatch', 'wait')


def define_flags(launchers: tuple[str, ...], default: str) -> None:
  """The launcher and the job's resources, shared by jaxcnn.sweep and jaxcnn.submit."""
  flags.DEFINE_enum('launcher', default, launchers, 'Where the runs train: ' + ', '.join(
      {'local': 'local (subprocesses of this command)', 'slurm': 'slurm (SLURM jobs)',
       'submitit_local': "submitit_local (submitit's local executor: jobs on this machine)"}[l]
      for l in launchers) + '.')
  flags.DEFINE_integer('nodes', 1, 'Nodes per job.')
  flags.DEFINE_integer('tasks', 1, 'Tasks (processes) per node: one JAX process each.')
  flags.DEFINE_integer('gpus_per_node', 0, 'GPUs per node.')
  flags.DEFINE_integer('cpus_per_task', None, 'CPUs per task (default: the cluster\'s).')
  flags.DEFINE_float('mem_gb', None, 'Memory per node in GB (default: the cluster\'s).')
  flags.DEFINE_integer('timeout_min', 24 * 60, 'Time limit of each job in minutes; a job that '
                       'reaches it is requeued and resumes (3 times at most).')
  flags.DEFINE_string('partition', None, 'SLURM partition.')
  flags.DEFINE_string('account', None, 'SLURM account.')
  flags.DEFINE_multi_string('sbatch', [], 'Another sbatch option as KEY=VALUE (e.g. qos=high, '
                            'constraint=a100); repeat for several.')
  flags.DEFINE_bool('wait', False, 'Wait for the jobs to end (and, for a sweep, write the '
                    'results table); otherwise return once they are queued.')


@dataclasses.dataclass(frozen=True)
class Resources:
  launcher: str
  nodes: int = 1
  tasks: int = 1
  gpus_per_node: int = 0
  cpus_per_task: int | None = None
  mem_gb: float | None = None
  timeout_min: int = 24 * 60
  partition: str | None = None
  account: str | None = None
  sbatch: tuple[str, ...] = ()

  @property
  def num_tasks(self) -> int:
    return self.nodes * self.tasks


def resources_from_flags() -> Resources:
  options = flags.FLAGS
  return Resources(options.launcher, options.nodes, options.tasks, options.gpus_per_node,
                   options.cpus_per_task, options.mem_gb, options.timeout_min,
                   options.partition, options.account, tuple(options.sbatch))


def _sbatch_options(options: tuple[str, ...]) -> dict[str, str]:
  pairs = {}
  for option in options:
    key, equals, value = option.partition('=')
    if not equals or not key:
      raise UserError(f"--sbatch={option}: give KEY=VALUE, e.g. --sbatch=qos=high")
    pairs[key.lstrip('-')] = value
  return pairs


def check(resources: Resources) -> None:
  """The resources make sense for the launcher (before anything is submitted)."""
  for name in ('nodes', 'tasks', 'timeout_min'):
    if getattr(resources, name) < 1:
      raise UserError(f'--{name}={getattr(resources, name)}: give at least 1')
  if resources.launcher == 'submitit_local' and resources.nodes > 1:
    raise UserError(f'--nodes={resources.nodes}: --launcher=submitit_local runs on this machine '
                    'only; give --nodes=1, or --launcher=slurm')
  _sbatch_options(resources.sbatch)
  if resources.launcher == 'slurm' and not (shutil.which('sbatch') and shutil.which('srun')):
    raise UserError("--launcher=slurm needs SLURM's sbatch and srun on PATH; submit from the "
                    "cluster's login node (or use --launcher=submitit_local on this machine)")


def executor(resources: Resources, folder: str, name: str):
  """A submitit executor for the resources' launcher whose jobs keep their files in FOLDER:
  <job id>_submitted.pkl, and per task <job id>_<task>_log.out and .err. NAME is the jobs'
  name in the queue."""
  cluster = {'slurm': 'slurm', 'submitit_local': 'local'}[resources.launcher]
  result = submitit.AutoExecutor(folder=folder, cluster=cluster)
  slurm = {'slurm_partition': resources.partition, 'slurm_account': resources.account,
           'slurm_additional_parameters': _sbatch_options(resources.sbatch) or None}
  result.update_parameters(
      name=name, nodes=resources.nodes, tasks_per_node=resources.tasks,
      gpus_per_node=resources.gpus_per_node, cpus_per_task=resources.cpus_per_task,
      mem_gb=resources.mem_gb, timeout_min=resources.timeout_min,
      **({k: v for k, v in slurm.items() if v is not None} if cluster == 'slurm' else {}))
  return result


def closing_line(output: str) -> str:
  """What a run said last: its `error: ...` line if it printed one, else its last line
  (submitit's own log lines, in a job's log, aside)."""
  lines = [line.strip() for line in output.splitlines()
           if line.strip() and not line.startswith('submitit ')]
  errors = [line for line in lines if line.startswith('error:')]
  return (errors or lines or ['no output'])[-1]


def last_words(job) -> str:
  """What the run of the job's first task said last: its `error:` line (on stderr) if it
  printed one, else its last line."""
  task = job.task(0) if job.num_tasks > 1 else job
  errors = [line for line in (task.stderr() or '').splitlines() if line.startswith('error:')]
  return closing_line('\n'.join([task.stdout() or '', *errors]))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('', 0))
    return s.getsockname()[1]


def coordinator_port(resources: Resources) -> int | None:
  """The port of a local multi-task job's JAX coordinator, chosen when it is submitted; on
  SLURM the runs take theirs from SLURM's environment."""
  if resources.launcher == 'submitit_local' and resources.num_tasks > 1:
    return free_port()
  return None


def distributed_args(environment, port: int | None) -> list[str]:
  """The --config.distributed.* options of this task of a local multi-task job."""
  if port is None or environment.num_tasks == 1:
    return []
  return [f'--config.distributed.coordinator_address={environment.hostnames[0]}:{port}',
          f'--config.distributed.num_processes={environment.num_tasks}',
          f'--config.distributed.process_id={environment.global_rank}']


def _preemption_signal() -> signal.Signals:
  return signal.Signals[f'SIG{submitit.JobEnvironment.USR_SIG}']


def _ignore_preemption_signal() -> None:
  """Runs in the child before exec: SLURM sends submitit's signal to every process of the job,
  and its default action would kill the run before it saved; the task relays it as SIGTERM."""
  signal.signal(_preemption_signal(), signal.SIG_IGN)


class TrainingJob(submitit.helpers.Checkpointable):
  """A job whose every task runs `python -m jaxcnn.main ARGS` (with the distributed options
  of a local multi-task job) and returns its exit status."""

  def __init__(self, args: list[str], port: int | None = None):
    self.args, self.port = list(args), port
    self._child, self._child_signalled = None, False

  def __call__(self):
    environment = submitit.JobEnvironment()
    # SIGTERM goes on to the run; submitit itself only logs it.
    previous = signal.signal(signal.SIGTERM, lambda *_: self._signal_child())
    try:
      return self.train(distributed_args(environment, self.port), environment.global_rank)
    finally:
      signal.signal(signal.SIGTERM, previous)

  def train(self, task_args: list[str], rank: int):
    """Runs this task's share of the run (ARGS, then TASK_ARGS); its output goes to the
    task's submitit log."""
    del rank  # every task runs the same command
    return self.call([sys.executable, '-m', 'jaxcnn.main', *self.args, *task_args])

  def call(self, argv: list[str], **popen_options) -> int:
    """subprocess.call, with the child known to the signal handlers."""
    self._child_signalled = False
    self._child = subprocess.Popen(argv, preexec_fn=_ignore_preemption_signal, **popen_options)
    try:  # polled, not wait(): a signal handler waiting for it then would deadlock
      while self._child.poll() is None:
        time.sleep(0.1)
      return self._child.returncode
    finally:
      self._child = None

  def _signal_child(self) -> None:
    """Sends the run one SIGTERM, however many times preemption reaches the task (SIGTERM and
    submitit's own signal both do): a second would end the run at once, without a checkpoint."""
    if self._child is not None and not self._child_signalled:
      self._child_signalled = True
      self._child.send_signal(signal.SIGTERM)

  def checkpoint(self, *args, **kwargs):
    """submitit's hook on its preemption or time-limit signal (first task only): the run
    saves a checkpoint and exits, then submitit requeues this job, which resumes it."""
    child = self._child
    self._signal_child()
    if child is not None:
      child.wait()
    return super().checkpoint(*args, **kwargs)

  def __getstate__(self):  # requeueing pickles the job; a running child stays here
    return {**self.__dict__, '_child': None, '_child_signalled': False}


def record(job, workdir: str) -> None:
  """Writes WORKDIR/job.json: which job of which launcher trains there."""
  write_atomically(os.path.join(workdir, JOB_FILE), json.dumps(
      {'launcher': 'slurm' if isinstance(job, submitit.SlurmJob) else 'submitit_local',
       'job_id': job.job_id, 'folder': str(job.paths.folder)}, indent=2))


def in_flight(workdir: str, jobs: dict | None = None):
  """The job that WORKDIR/job.json names if submitit says it is still queued or running, else
  None. A local job is known only to the command that submitted it (`jobs`, by id)."""
  path = os.path.join(workdir, JOB_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  job = (jobs or {}).get(saved['job_id'])
  if job is not None:
    return None if job.done() else job
  if saved['launcher'] == 'slurm':  # an earlier command's: only if sacct knows it (not UNKNOWN)
    job = submitit.SlurmJob(folder=saved['folder'], job_id=saved['job_id'])
    return None if job.done() or job.state == 'UNKNOWN' else job
  return None
