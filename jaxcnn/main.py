"""Train and evaluate a model from a config file.

  python -m jaxcnn.main --config configs/NAME.py[:PRESET] [--workdir DIR] [--config.KEY=VALUE ...]

Without --workdir the run goes to runs/<NAME>-<PRESET>. Rerunning a command resumes it;
SIGTERM or Ctrl-C saves a checkpoint and exits 0. `--start_over` moves aside a run of
another config that the workdir holds, instead of refusing to touch it.
"""

from absl import flags

from jaxcnn import cli


def define_flags() -> None:
  cli.define_config_flag()
  flags.DEFINE_string('workdir', None, 'Work directory (default runs/<NAME>-<PRESET>).')
  flags.DEFINE_bool(
      'start_over', False, 'Start afresh even if the workdir holds a run of another config; '
      'that run is moved to WORKDIR.replaced-TIME.')


def main(arguments: list[str]) -> None:
  del arguments  # cli.run refuses any
  workdir = flags.FLAGS.workdir
  if workdir is None:
    workdir = cli.default_workdir(cli.config_argument())
    print(f'workdir: {workdir}')
  from jaxcnn import train  # after flag parsing: `--help` and flag errors stay fast
  train.train_and_evaluate(flags.FLAGS.config, workdir, start_over=flags.FLAGS.start_over)


if __name__ == '__main__':
  cli.run(main, define_flags)
