"""Train and evaluate a model from a config file.

  python -m jaxcnn.main --config configs/NAME.py[:PRESET] [--workdir DIR] [--config.KEY=VALUE ...]

Without --workdir the run goes to runs/<NAME>-<PRESET>. Rerunning a command resumes it;
SIGTERM or Ctrl-C saves a checkpoint and exits 0. `--start_over` moves aside a run of
another config that the workdir holds, instead of refusing to touch it.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxcnn.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file and preset: configs/NAME.py[:PRESET].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Work directory (default runs/<NAME>-<PRESET>).')
_START_OVER = flags.DEFINE_bool(
    'start_over', False, 'Start afresh even if the workdir holds a run of another config; that '
    'run is moved to WORKDIR.replaced-TIME.')
flags.mark_flags_as_required(['config'])


def fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with any flag or config error reported as one line."""
  try:
    remaining = flags.FLAGS(argv)
    _CONFIG.value.get('seed')  # config_flags defers a config file's load error to first use
    return remaining
  except (KeyError, AttributeError) as e:  # how config_flags reports an override of no key
    key = str(e.args[0]).strip('\'"')
    overrides = [a.split('=')[0][len('--config.'):] for a in argv
                 if a.startswith('--config.') and key in a.split('=')[0].split('.')]
    fail(f"unknown config key '{overrides[0] if overrides else key}': the config file has no "
         'such key; check its spelling')
  except (flags.Error, ValueError, TypeError, OSError) as e:
    # A config file that fails comes wrapped with its traceback: keep only the cause.
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    fail(lines[0] if len(lines) == 1 else f'--config: {lines[-1]}')


def default_workdir(config_argument: str) -> str:
  path, _, preset = config_argument.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', f'{name}-{preset or "default"}')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])}; options are --config, --workdir, "
         '--start_over and --config.KEY=VALUE')
  workdir = _WORKDIR.value
  if workdir is None:
    workdir = default_workdir(flags.FLAGS['config'].serialize().split('=', 1)[1])
    print(f'workdir: {workdir}')
  # Library INFO logs (orbax writes several per checkpoint) would bury the progress lines.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from jaxcnn import train  # after flag parsing: `--help` and flag errors stay fast
  try:
    train.train_and_evaluate(_CONFIG.value, workdir, start_over=_START_OVER.value)
  except UserError as e:
    fail(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
