"""One training run as one submitit job of NODES x TASKS processes, on SLURM or on this machine.

  python -m jaxcnn.submit --config configs/NAME.py[:PRESET] [--workdir DIR]
      [--launcher=slurm|submitit_local] [--nodes N] [--tasks T] [--gpus_per_node G]
      [--cpus_per_task C] [--mem_gb M] [--timeout_min MIN] [--partition P] [--account A]
      [--sbatch KEY=VALUE ...] [--wait] [--config.KEY=VALUE ...]

Each task runs `python -m jaxcnn.main` with the same options: one JAX process of one
multi-process run, whose rank and world size come from SLURM's environment or, on the local
executor, from submitit's (jaxcnn/launch.py). The job's files are in DIR/jobs/, each task's
log as <job id>_<task>_log.out and .err. Submitting again resumes the run from its latest
checkpoint, as rerunning jaxcnn.main does; a preempted or timed-out job is requeued and
resumes by itself.
"""

import os
import sys

from absl import flags

from jaxcnn import cli, launch
from jaxcnn.errors import UserError


def define_flags() -> None:
  cli.define_config_flag()
  flags.DEFINE_string('workdir', None, 'Work directory (default runs/<NAME>-<PRESET>).')
  launch.define_flags(launch.SUBMITIT_LAUNCHERS, default='slurm')


def main(arguments: list[str]) -> int:
  del arguments  # cli.run refuses any
  options = flags.FLAGS
  fixed = [a for a in sys.argv[1:] if a.startswith('--config.')]
  if any(a.startswith('--config.distributed.') for a in fixed):
    raise UserError('--config.distributed.* is set by the job itself (from SLURM or submitit); '
                    'drop that option')
  resources = launch.resources_from_flags()
  launch.check(resources)
  config_argument = cli.config_argument()
  workdir = options.workdir or cli.default_workdir(config_argument)
  if job := launch.in_flight(workdir):
    raise UserError(f'job {job.job_id} still trains in {workdir}; wait for it, or cancel it '
                    f'(scancel {job.job_id} on SLURM) and submit again')
  os.makedirs(workdir, exist_ok=True)
  executor = launch.executor(resources, os.path.join(workdir, launch.JOBS_DIR),
                             os.path.basename(os.path.abspath(workdir)))
  job = executor.submit(launch.TrainingJob(['--config', config_argument, '--workdir', workdir,
                                            *fixed], launch.coordinator_port(resources)))
  launch.record(job, workdir)
  print(f'submitted job {job.job_id} ({resources.num_tasks} task'
        f"{'s' if resources.num_tasks > 1 else ''}) to train in {workdir}; logs in "
        f'{job.paths.folder}', flush=True)
  if not options.wait:
    return 0
  error = job.exception()  # waits for every task
  if error is not None:  # the job died outside the run (killed, timed out too often)
    print(f'job {job.job_id} failed: {launch.closing_line(str(error))}')
    return 1
  statuses = job.results()  # each task's run's exit status
  print(f'job {job.job_id}: {launch.last_words(job)}')
  return 0 if not any(statuses) else 1


if __name__ == '__main__':
  cli.run(main, define_flags)
