"""SIGTERM and SIGINT ask a run to stop cleanly: finish the step, save a checkpoint, exit 0.

Preemptible machines send SIGTERM some seconds before they go; Ctrl-C sends SIGINT. A run
that cannot get to the end of its step (blocked in a collective that waits for a lost
process, say) would never see the request: Python runs a signal handler only when the main
thread returns from such a call. So a thread sees the signals too, through the
interpreter's wakeup file descriptor, and ends the process at once, with one line, on a
second signal or when the grace period after the first has passed.
"""

import select
import signal
import socket
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxcnn.errors import exit_now

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_RESUME = 'rerun the same command to resume from the last checkpoint saved'


class StopRequests:
  """Catches SIGTERM and SIGINT while active (a context manager) and remembers the first.
  From the first on, the process ends within `grace_seconds`, or at once on a second."""

  def __init__(self, grace_seconds: float):
    self.grace_seconds = grace_seconds
    self.signal_name = None
    self._previous = {}

  def __enter__(self):
    for sig in _SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    self._reader, self._writer = socket.socketpair()
    self._writer.setblocking(False)  # the interpreter's signal handler must never block on it
    self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=self._watch, daemon=True, name='stop-requests').start()
    return self

  def __exit__(self, *exc):
    """Restores the handlers. Once a signal has come, its deadline holds until the process
    ends, whatever it does after the training loop."""
    signal.set_wakeup_fd(self._previous_fd)
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    if self.signal_name is None:
      self._writer.close()  # the watching thread ends

  def _handle(self, signum, frame):
    if self.signal_name is None:
      self.signal_name = signal.Signals(signum).name

  def _watch(self):
    """Reads the signals' numbers; ends the process on a second signal or at the deadline."""
    first, deadline = None, None
    while True:
      timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
      if not select.select([self._reader], [], [], timeout)[0]:
        exit_now(f'error: the run had not ended {self.grace_seconds:g} s after {first.name} '
                 '(train.stop_grace_seconds; blocked, waiting for a lost process?): ended it '
                 f'at once; {_RESUME}', 128 + first)
      numbers = self._reader.recv(64)
      if not numbers:  # closed: the run ended before any signal
        self._reader.close()
        return
      for sig in (signal.Signals(n) for n in numbers if n in _SIGNALS):
        if first is not None:
          exit_now(f'error: a second signal ({sig.name}) ended the run at once; {_RESUME}',
                   128 + sig)
        first, deadline = sig, time.monotonic() + self.grace_seconds

  def should_stop(self, step: int, sync_every: int) -> bool:
    """Whether to stop after `step`. With several processes all must stop at the same step,
    so they agree every `sync_every` steps (a host round trip each time)."""
    if jax.process_count() == 1:
      return self.signal_name is not None
    if step % sync_every:
      return False
    return bool(np.any(multihost_utils.process_allgather(np.int32(self.signal_name is not None))))
