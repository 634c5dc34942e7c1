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


def test_importing_jaxcnn_sizes_xlas_intra_op_pool():
  """XLA names its intra-op threads XLAEigen; importing jaxcnn before jax starts gives it
  cores + 2 of them for 2 devices, where jax alone gives max(cores, 2)."""
  count_threads = ('import os, jax; jax.devices(); print(sum("XLAEigen" in open('
                   'f"/proc/self/task/{t}/comm").read() for t in os.listdir("/proc/self/task")))')
  env = {k: v for k, v in os.environ.items() if k not in ('PJRT_NPROC', 'NPROC', 'XLA_FLAGS')}
  env['JAX_NUM_CPU_DEVICES'] = '2'
  counts = [int(subprocess.run([sys.executable, '-c', prefix + count_threads], env=env,
                               capture_output=True, text=True, check=True).stdout)
            for prefix in ('', 'import jaxcnn; ')]
  assert counts == [max(CORES, 2), CORES + 2]
