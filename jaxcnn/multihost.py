"""What holds the processes of a multi-host run together: one workdir that all of them see,
and an end for all of them when one fails.

orbax writes each checkpoint from every process into one directory, so the workdir must be
a filesystem they all see; `check_shared_workdir` proves it before any work. A process that
fails, or loses a peer, would otherwise wait for the others in its next collective or at
exit (JAX's runtime does); under `ends_together` it prints one line and ends at once, so
that its peers' collectives fail in turn and the whole run ends within seconds. A process
whose host vanishes without closing its connections is found by JAX's runtime after
distributed.heartbeat_timeout_seconds, which then ends every process itself.
"""

import contextlib
import os
import re
import secrets
import time
import traceback

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxcnn.checkpoint import last_good
from jaxcnn.errors import UserError, exit_now

MARKER_WAIT_SECONDS = 5  # for a network filesystem to show one host's new file to another


def check_shared_workdir(workdir: str) -> None:
  """Refuses, in every process, a workdir that is not one directory for all processes: each
  writes a marker file there, and each looks for all of them."""
  count, me = jax.process_count(), jax.process_index()
  if count == 1:
    return
  run = int(multihost_utils.broadcast_one_to_all(np.int32(secrets.randbits(31))))
  marker = lambda process: os.path.join(workdir, f'.shared-check-{run}-process-{process}')
  os.makedirs(workdir, exist_ok=True)
  with open(marker(me), 'w'):
    pass
  multihost_utils.sync_global_devices('workdir markers written')
  deadline = time.monotonic() + MARKER_WAIT_SECONDS
  while (missing := [p for p in range(count) if not os.path.exists(marker(p))]) and (
      time.monotonic() < deadline):
    time.sleep(0.5)
  missed = multihost_utils.process_allgather(np.int32(len(missing)))
  os.unlink(marker(me))
  if np.any(missed):
    seen = f'process {me} sees the markers of processes {sorted(set(range(count)) - set(missing))}'
    raise UserError(f'workdir {workdir} is not one directory shared by the {count} processes '
                    f'({seen}); a multi-host run needs a workdir that every process sees, on '
                    'NFS or a cluster filesystem: pass such a --workdir')


def _lost_a_process(error: Exception) -> bool:
  """Whether `error` is a collective that failed: JAX's runtime raises it as a
  JaxRuntimeError, or as a ValueError where the failure comes while it dispatches a program;
  the text then names the communication library."""
  return (isinstance(error, jax.errors.JaxRuntimeError)
          or re.search(r'\b(Gloo|NCCL|MPI)\b', str(error)) is not None)


def _collective_failure(error: Exception) -> str:
  """The cause in a runtime error's first line, without XLA's repeated prefixes."""
  line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return re.sub(r'(Error dispatching computation: )+', '', line)[:200]


@contextlib.contextmanager
def ends_together(workdir: str):
  """With several processes, a failure in the block ends this process at once, with one
  `error:` line (status 2 for a UserError, 1 for a lost process) or a traceback for a bug,
  and no wait for the others; with one process, errors pass as usual."""
  count, me = jax.process_count(), jax.process_index()
  if count == 1:
    yield
    return
  try:
    yield
  except UserError as e:
    exit_now(f'error: {e}', 2)
  except Exception as e:  # noqa: BLE001
    if not _lost_a_process(e):  # a bug: its traceback, and no wait for the others
      exit_now(traceback.format_exc().rstrip(), 1)
    lost = f'process {1 - me}' if count == 2 else f'another of the {count} processes'
    exit_now(f'error: process {me} lost {lost} ({_collective_failure(e)}): it stopped, or its '
             f'host or the network failed; {last_good(workdir)}; once all are up, start every '
             'process again with the same command to resume', 1)
