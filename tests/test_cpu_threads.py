"""XLA:CPU's thread pools get room for collectives where a process has several CPU devices."""

import os
import subprocess
import sys

import pytest

from jaxcnn import cpu_threads

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize('environ, devices', [
    ({}, 1),
    ({'JAX_NUM_CPU_DEVICES': '2'}, 2),
    ({'JAX_NUM_CPU_DEVICES': '-1', 'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}, 4),
    ({'XLA_FLAGS': '--xla_cpu_use_onednn=false --xla_force_host_platform_device_count 8'}, 8),
    ({'JAX_NUM_CPU_DEVICES': '3', 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}, 3),
])
def test_device_count_is_jaxs(environ, devices):
  assert cpu_threads.cpu_device_count(environ) == devices


@pytest.mark.parametrize('unset', [{}, {'NPROC': ''}])  # XLA ignores what is not a number
def test_several_devices_get_cores_plus_devices_threads(unset):
  environ = {'JAX_NUM_CPU_DEVICES': '2', **unset}
  cpu_threads.reserve_for_collectives(environ)
  assert environ['PJRT_NPROC'] == str(CORES + 2)


@pytest.mark.parametrize('environ', [
    {},  # one device: XLA's own size
    {'JAX_NUM_CPU_DEVICES': '2', 'PJRT_NPROC': '3'},  # the user's choice stands
    {'JAX_NUM_CPU_DEVICES': '2', 'NPROC': '3'},
])
def test_one_device_or_a_chosen_size_is_left_alone(environ):
  before = dict(environ)
  cpu_threads.reserve_for_collectives(environ)
  assert environ == before


# A child's count of XLA's intra-op threads, by name: the most seen over 2 s, since each new
# thread names itself only once it runs.
COUNT_INTRA_OP_THREADS = """
import os, time, jax
jax.devices()
def named():
  count = 0
  for thread in os.listdir('/proc/self/task'):
    try:
      count += 'XLAEigen' in open(f'/proc/self/task/{thread}/comm').read()
    except FileNotFoundError:  # a thread that ended meanwhile
      pass
  return count
counts = []
for _ in range(20):
  counts.append(named())
  time.sleep(0.1)
print(max(counts))
"""


def test_importing_jaxcnn_sizes_xlas_intra_op_pool():
  """Importing jaxcnn before jax starts gives XLA's intra-op pool cores + 2 threads for 2
  devices, where jax alone gives max(cores, 2)."""
  env = {k: v for k, v in os.environ.items() if k not in ('PJRT_NPROC', 'NPROC', 'XLA_FLAGS')}
  env['JAX_NUM_CPU_DEVICES'] = '2'
  children = [subprocess.run([sys.executable, '-c', prefix + COUNT_INTRA_OP_THREADS], env=env,
                             capture_output=True, text=True)
              for prefix in ('', 'import jaxcnn\n')]
  assert [child.returncode for child in children] == [0, 0], [c.stderr[-2000:] for c in children]
  assert [int(child.stdout) for child in children] == [max(CORES, 2), CORES + 2]
