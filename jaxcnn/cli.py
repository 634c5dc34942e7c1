"""What every command-line tool shares: its flags parsed with absl, one `error:` line and exit
status 2 for a mistake the user can fix, `--help` that exits 0, and a console kept for the
project's own lines.

A tool defines its flags in a function and runs as `cli.run(main, define_flags)`; importing
its module defines nothing, so tests and other tools can import it.
"""

import os
import sys
import threading

from absl import app, flags, logging
from ml_collections import config_flags

from jaxcnn.errors import UserError

_HELP_FLAGS = ('help', '?', 'helpshort', 'helpfull', 'helpxml')


def fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def define_config_flag(required: bool = True) -> None:
  config_flags.DEFINE_config_file(
      'config', None, 'Config file and preset: configs/NAME.py[:PRESET].', lock_config=True)
  if required:
    flags.mark_flag_as_required('config')


def config_argument() -> str:
  """The --config value as given: 'PATH[:PRESET]'."""
  return flags.FLAGS['config'].serialize().split('=', 1)[1]


def default_workdir(config_argument: str) -> str:
  path, _, preset = config_argument.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', f'{name}-{preset or "default"}')


def _asks_for_help(argv: list[str]) -> bool:
  return any(arg.lstrip('-').split('=')[0] in _HELP_FLAGS for arg in argv[1:]
             if arg.startswith('-'))


def _unknown_key_error(error: Exception, argv: list[str]) -> str:
  key = str(error.args[0]).strip('\'"')
  overrides = [a.split('=')[0][len('--config.'):] for a in argv
               if a.startswith('--config.') and key in a.split('=')[0].split('.')]
  return (f"unknown config key '{overrides[0] if overrides else key}': the config file has no "
          'such key; check its spelling')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with --help exiting 0 and any flag or config error as one line."""
  try:
    remaining = flags.FLAGS(argv)
    if 'config' in flags.FLAGS and flags.FLAGS['config'].value is not None:
      flags.FLAGS.config.get('seed')  # config_flags defers a config file's load error to first use
    return remaining
  except SystemExit as exit_request:  # absl's help flags print the usage, then exit 1
    if _asks_for_help(argv):
      sys.exit(0)
    raise exit_request
  except (KeyError, AttributeError) as e:  # how config_flags reports an override of no key
    fail(_unknown_key_error(e, argv))
  except (flags.Error, ValueError, TypeError, OSError) as e:
    # A config file that fails comes wrapped with its traceback: keep only the cause.
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    fail(lines[0] if len(lines) == 1 else f'--config: {lines[-1]}')


def _option_names(defined: list[str]) -> str:
  names = [f'--{name}' for name in defined]
  if 'config' in defined:
    names.append('--config.KEY=VALUE')
  return ', '.join(names[:-1]) + f' and {names[-1]}' if len(names) > 1 else names[0]


def _quiet_library_threads() -> None:
  """Tracebacks that library threads hand to sys.excepthook stay off the console: tensorstore's
  callbacks fail so after a damaged checkpoint's read, even as the process ends, cutting into
  the tool's `error:` line. A training run keeps them in its library.log (library_log.py)."""
  main_thread_hook = sys.excepthook

  def excepthook(error_type, error, trace):
    if threading.current_thread() is threading.main_thread():
      main_thread_hook(error_type, error, trace)

  sys.excepthook = excepthook


def run(main, define_flags, positional_arguments: bool = False) -> None:
  """Defines the tool's flags, parses them and calls main(arguments); a UserError from main
  becomes one `error:` line and exit status 2, and the tool's return value its exit status.

  Library log lines (absl's, below ERROR: orbax's and TFDS's notes) stay off the console
  unless --verbosity asks for them; the project says what matters in its own lines.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  _quiet_library_threads()
  before = set(flags.FLAGS)
  define_flags()
  defined = [name for name in flags.FLAGS if name not in before]

  def checked_main(argv: list[str]):
    if len(argv) > 1 and not positional_arguments:
      fail(f"unexpected arguments {' '.join(argv[1:])}; options are {_option_names(defined)}")
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.ERROR)
    try:
      return main(argv[1:])
    except UserError as e:
      fail(str(e))

  app.run(checked_main, flags_parser=parse_flags)
