"""SIGTERM and SIGINT ask a run to stop cleanly: finish the step, save a checkpoint, exit 0.

Preemptible machines send SIGTERM some seconds before they go; Ctrl-C sends SIGINT. A second
Ctrl-C interrupts at once, as usual.
"""

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
  """Catches SIGTERM and SIGINT while active (a context manager) and remembers the first."""

  def __init__(self):
    self.signal_name = None
    self._previous = {}

  def __enter__(self):
    for sig in _SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):
    self.signal_name = signal.Signals(signum).name
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now

  def should_stop(self, step: int, sync_every: int) -> bool:
    """Whether to stop after `step`. With several processes all must stop at the same step,
    so they agree every `sync_every` steps (a host round trip each time)."""
    if jax.process_count() == 1:
      return self.signal_name is not None
    if step % sync_every:
      return False
    return bool(np.any(multihost_utils.process_allgather(np.int32(self.signal_name is not None))))
