"""What a user must hear about, each as one line: a mistake they can fix (UserError), a file
of the run that could not be written (WriteError), and warnings.

Entry points print a UserError as a single line and exit non-zero, with no traceback; the
trainer turns a WriteError into a UserError that adds the last good checkpoint. `exit_now`
ends a process that must not wait for anything, not even Python's clean-up, after its line.
"""

import contextlib
import os
import re
import sys


class UserError(Exception):
  pass


class WriteError(Exception):
  """Writing a run's file failed: `what` failed at `step` because of `reason` (the OS's words)."""

  def __init__(self, what: str, step: int, reason: str):
    super().__init__(f'{what} failed at step {step} ({reason})')
    self.what, self.step, self.reason = what, step, reason


def reason(error: Exception) -> str:
  """Why an I/O operation failed, in a few words: the OS's text for its error number where
  one is known (tensorstore, under orbax, carries it in its message), else the first line."""
  if isinstance(error, OSError) and error.errno:
    return os.strerror(error.errno)
  code = re.search(r"os_error_code='(\d+)'", str(error))
  if code:
    return os.strerror(int(code.group(1)))
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


@contextlib.contextmanager
def writing(what: str, step: int):
  """Turns an OSError of the block (full disk, lost permission) into a WriteError."""
  try:
    yield
  except OSError as e:
    raise WriteError(what, step, reason(e)) from None


def warn(message: str) -> None:
  print(f'warning: {message}', file=sys.stderr, flush=True)


def exit_now(line: str, status: int) -> None:
  """Prints `line` on stderr and ends the process with `status` at once: no exit handlers,
  so nothing waits for another process (JAX's runtime would, at exit) or a blocked thread."""
  print(line, file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)
