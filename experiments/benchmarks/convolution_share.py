"""How much of each framework's train step its convolutions take, from profiles of both.

  python experiments/benchmarks/convolution_share.py [--only NAME ...] [--steps N] [--out FILE]

For the networks and batches of compare_pytorch.py, on this machine:
- jaxcnn: the trainer's tuned step, `--steps` steps under `jax.profiler`; its convolutions are
  the ops of the compiled step that are XLA convolutions, jaxcnn's oneDNN custom calls or the
  matrix products of a formulation that tuning chose (jaxcnn/models/conv.py's name scopes);
- PyTorch eager, in a process of its own: the same step under `torch.profiler`; its
  convolutions are the self time of the ops named `*conv*` (forward, and the backward's input,
  filter and bias gradients).
Each step's time is timed without a profiler. The last column is the ratio jaxcnn / PyTorch
that jaxcnn would reach if nothing but its convolutions took time: PyTorch's step over
jaxcnn's convolutions. Where it is below a target, the target needs faster convolutions than
these kernels, not a leaner rest of the step.
"""

import argparse
import glob
import gzip
import importlib.util
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import (BENCHMARKS, jax_config, machine, publish,  # noqa: E402
                             torch_train_steps)

from jaxcnn import bench, parallel  # noqa: E402


def convolution_ops(hlo_text: str) -> set[str]:
  """Names of the compiled step's convolutions: XLA's, jaxcnn's oneDNN custom calls, and the
  ops of a formulation as matrix products (under the name scope NAME_conv_DIRECTION)."""
  names = set()
  for line in hlo_text.splitlines():
    match = re.match(r'\s*(?:ROOT )?%?([\w.-]+) = .*?\b(convolution|custom-call|\w+)\(', line)
    if match and (match[2] == 'convolution' or 'custom_call_target="JaxcnnConv' in line
                  or re.search(r'op_name="[^"]*\w_conv_(forward|input_grad|kernel_grad)/', line)):
      names.add(match[1])
  return names


def jaxcnn_ms(config, steps: int) -> tuple[float, float]:
  """(ms per train step unprofiled, ms per step in convolutions under the profiler)."""
  run, _, train_steps = bench.train_stepper(config)
  batch = parallel.shard_batch(next(iter(run.data.train_batches())), run.mesh)
  convolutions = convolution_ops(run.train_step.lower(run.state, batch).compile().as_text())
  start = time.perf_counter()
  jax.block_until_ready(train_steps(steps))
  step_ms = (time.perf_counter() - start) / steps * 1e3
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    jax.block_until_ready(train_steps(steps))
    jax.profiler.stop_trace()
    trace, = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
    with gzip.open(trace) as f:
      events = json.load(f)['traceEvents']
  microseconds = sum(e['dur'] for e in events if e.get('ph') == 'X' and e['name'] in convolutions)
  return step_ms, microseconds / steps / 1e3


def pytorch_ms(name: str, steps: int, connection) -> None:
  """PyTorch's (ms per step unprofiled, ms per step in convolutions), sent on `connection`."""
  import torch
  from torch.profiler import ProfilerActivity, profile
  torch.set_num_threads(os.cpu_count())
  preset, overrides, batch, torch_model = BENCHMARKS[name]
  train_steps = torch_train_steps(torch_model(3, 1000), jax_config(preset, overrides, batch),
                                  'cpu')
  start = time.perf_counter()
  train_steps(steps)
  step_ms = (time.perf_counter() - start) / steps * 1e3
  with profile(activities=[ProfilerActivity.CPU]) as profiled:
    train_steps(steps)
  microseconds = sum(e.self_cpu_time_total for e in profiled.key_averages()
                     if 'conv' in e.key.lower())
  connection.send((step_ms, microseconds / steps / 1e3))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--only', nargs='*', default=list(BENCHMARKS), choices=list(BENCHMARKS))
  parser.add_argument('--steps', type=int, default=3, help='steps timed, then profiled')
  parser.add_argument('--out', default=None, help='also write the table to this file')
  args = parser.parse_args()
  if importlib.util.find_spec('torch') is None:  # not imported here: its OpenMP would share ours
    raise SystemExit("error: PyTorch is not installed; pip install -e '.[bench]'")
  spawn = multiprocessing.get_context('spawn')
  rows = []
  for name in args.only:
    preset, overrides, batch, _ = BENCHMARKS[name]
    jax_step, jax_conv = jaxcnn_ms(jax_config(preset, overrides, batch), args.steps)
    receiver, sender = spawn.Pipe()
    process = spawn.Process(target=pytorch_ms, args=(name, args.steps, sender))
    process.start()
    torch_step, torch_conv = receiver.recv()
    process.join()
    rows.append(f'| {name} | {batch} | {jax_step:,.1f} | {jax_conv:,.1f} ({jax_conv / jax_step:.0%}) | '
                f'{torch_step:,.1f} | {torch_conv:,.1f} ({torch_conv / torch_step:.0%}) | '
                f'{torch_step / jax_step:.2f} | {torch_step / jax_conv:.2f} |')
    print(rows[-1], file=sys.stderr)
  publish('\n'.join([
      f'{machine()}; milliseconds per train step, {args.steps} steps each; load average at the '
      f'end {os.getloadavg()[0]:.2f}', '',
      '| model | batch | jaxcnn step ms | jaxcnn convolutions ms | PyTorch step ms | '
      'PyTorch convolutions ms | ratio | ratio if only convolutions took time |',
      '|---|---:|---:|---:|---:|---:|---:|---:|', *rows]), args.out)


if __name__ == '__main__':
  main()
