"""SIGTERM ends a run that cannot get to the end of its step (blocked, as in a collective that
waits for a lost process): after the grace period, or at once on a second signal."""

import signal
import subprocess
import sys

import pytest

from conftest import cli_env

# A run stuck inside its step: it never returns to check whether it should stop. It says when
# it has taken a signal, so that a second one is sent after it (the kernel delivers pending
# signals lowest number first: SIGINT before SIGTERM).
BLOCKED_RUN = """
import sys, time
from jaxcnn.preemption import StopRequests
with StopRequests(grace_seconds=float(sys.argv[1])) as requests:
  print('training', flush=True)
  while requests.signal_name is None:
    time.sleep(0.05)
  print('signalled', flush=True)
  while True:
    time.sleep(1)
"""


@pytest.mark.parametrize('grace, signals, status, line', [
    (1, [signal.SIGTERM], 128 + signal.SIGTERM,
     'error: the run had not ended 1 s after SIGTERM (train.stop_grace_seconds; blocked, '
     'waiting for a lost process?): ended it at once; rerun the same command to resume from '
     'the last checkpoint saved'),
    (600, [signal.SIGTERM, signal.SIGINT], 128 + signal.SIGINT,
     'error: a second signal (SIGINT) ended the run at once; rerun the same command to resume '
     'from the last checkpoint saved'),
])
def test_a_blocked_run_ends_after_the_grace_period_or_a_second_signal(grace, signals, status,
                                                                      line):
  process = subprocess.Popen([sys.executable, '-c', BLOCKED_RUN, str(grace)], env=cli_env(),
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    assert process.stdout.readline() == 'training\n'
    for i, sig in enumerate(signals):
      if i:  # after the run has taken the one before
        assert process.stdout.readline() == 'signalled\n'
      process.send_signal(sig)
    _, err = process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == status
  assert err.strip().splitlines() == [line]
