"""Enough XLA:CPU threads for collectives across several CPU devices in one process.

XLA's CPU client runs every device's programs on two thread pools of max(cores, devices)
threads each. An in-process collective blocks a pool thread until every device has arrived;
on 2 cores with 2 devices the device that arrives first can hold the thread that the other
needs to get there, and both wait until XLA aborts the process ("Expected 2 threads to join
the rendezvous, but only 1 of them arrived"). One process with 2 CPU devices hung so in 6
of 12 LeNet runs beside a 2-process run (2 cores); with cores + devices threads, in none of
18. XLA sizes both pools from PJRT_NPROC, read when jax starts its CPU backend.
"""

import os
import re

_DEVICE_COUNT_FLAG = re.compile(r'--xla_force_host_platform_device_count[= ](\d+)')


def cpu_device_count(environ) -> int:
  """The CPU devices that jax will make, from JAX_NUM_CPU_DEVICES or else XLA_FLAGS."""
  if environ.get('JAX_NUM_CPU_DEVICES', '').strip().lstrip('-').isdigit():
    count = int(environ['JAX_NUM_CPU_DEVICES'])
    if count >= 0:  # jax's default, -1, defers to XLA_FLAGS
      return max(count, 1)
  match = _DEVICE_COUNT_FLAG.search(environ.get('XLA_FLAGS', ''))
  return int(match.group(1)) if match else 1


def reserve_for_collectives(environ=os.environ) -> None:
  """Sets PJRT_NPROC to cores + CPU devices where a process has several and nobody chose a
  size (a number in PJRT_NPROC or NPROC, as XLA reads them): threads blocked in a collective
  then never leave the computation fewer threads than cores. Too late once jax has started
  its CPU backend."""
  devices = cpu_device_count(environ)
  chosen = any(environ.get(name, '').strip().isdigit() for name in ('PJRT_NPROC', 'NPROC'))
  if devices > 1 and not chosen:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    environ['PJRT_NPROC'] = str(cores + devices)
