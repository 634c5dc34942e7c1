"""Imported first by a worker process that needs 8 CPU devices (tests/parallel_worker.py,
tests/export_worker.py): XLA reads its flags once, when jax starts."""

import os

# 8 devices on 2 busy cores can take a collective past XLA's 40 s before it aborts the
# process as stuck (seen once in CI), when they are only slow; a collective still waiting
# after 300 s is stuck (a thread that never arrives: tests/test_parallel.py runs such a
# worker again).
os.environ['XLA_FLAGS'] = ('--xla_force_host_platform_device_count=8 '
                           '--xla_cpu_collective_call_terminate_timeout_seconds=300')
