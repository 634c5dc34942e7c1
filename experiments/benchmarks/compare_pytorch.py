"""Training speed of jaxcnn's train step beside PyTorch eager on the same networks.

  pip install -e '.[bench]'
  python experiments/benchmarks/compare_pytorch.py [--steps N] [--rounds N] [--only NAME ...]
      [--out FILE]

Each network has the same layers and parameter count in both (checked; a mismatch stops the
run), the same batch of random float32 images (`synthetic` data: 3 channels, 1000 classes),
each framework's native layout (jaxcnn NHWC, PyTorch NCHW), an SGD-with-momentum step with
weight decay, and the same threads (all cores: XLA:CPU's default, set for PyTorch), each
framework in a process of its own (pytorch_process says why). Each side runs one warm-up
step, then `--rounds` timed rounds of `--steps` steps, the two sides taking turns, and each
side's best round counts (as `timeit` does: load only ever slows a round). jaxcnn's set-up
time (building the model and state, and tuning its convolutions on the first run on a
machine) and compile time are columns of their own. The markdown table goes to stdout and
`--out`, with the machine and its load average.
"""

import argparse
import multiprocessing
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jaxcnn import bench  # noqa: E402
from jaxcnn.config import load_module  # noqa: E402
from jaxcnn.summary import summarize_config  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'configs')


def models():
  import torch_models  # imports PyTorch: only the PyTorch process calls this
  return torch_models


# name -> (config file:preset, overrides, batch, PyTorch model for (channels, classes))
BENCHMARKS = {
    'LeNet-5': ('lenet.py:default', {}, 128, lambda c, n: models().LeNet5(c, n)),
    'AlexNet (digits size)': ('alexnet.py:digits', {}, 128,
                              lambda c, n: models().AlexNet(c, n, 67)),
    'AlexNet': ('alexnet.py:default', {}, 32, lambda c, n: models().AlexNet(c, n, 227)),
    'CIFAR ResNet-20': ('resnet.py:cifar_resnet20', {}, 128, lambda c, n: models().ResNet(
        models().BasicBlock, (3, 3, 3), c, n, 'cifar', (16, 32, 64), 'zero_pad')),
    'ResNet-18 (CIFAR stem)': ('resnet.py:resnet18', {'model.stem': 'cifar', 'data.image_size': 32},
                               64, lambda c, n: models().ResNet(
                                   models().BasicBlock, (2, 2, 2, 2), c, n, 'cifar')),
    'ResNet-50': ('resnet.py:resnet50', {}, 16, lambda c, n: models().ResNet(
        models().Bottleneck, (3, 4, 6, 3), c, n)),
}


def jax_config(preset: str, overrides: dict, batch: int):
  path, name = preset.split(':')
  config = load_module(os.path.join(CONFIGS, path)).get_config(name)
  with config.unlocked():
    config.data.name = 'synthetic'
    config.train.batch_size = config.eval.batch_size = batch
    for key, value in overrides.items():
      section, field = key.split('.')
      config[section][field] = value
  return config


def torch_train_steps(model, config, device: str):
  """A function running `count` PyTorch train steps on one batch and waiting for them, after
  one warm-up step."""
  import torch
  from torch.nn import functional as F
  size, batch = config.data.image_size, config.train.batch_size
  images = torch.randn(batch, 3, size, size, device=device)
  labels = torch.randint(0, 1000, (batch,), device=device)
  optimizer = torch.optim.SGD(model.parameters(), lr=config.optimizer.learning_rate,
                              momentum=config.optimizer.momentum,
                              weight_decay=config.optimizer.weight_decay)
  model.train()

  def train_steps(count):
    for _ in range(count):
      optimizer.zero_grad(set_to_none=True)
      F.cross_entropy(model(images), labels).backward()
      optimizer.step()
    if device == 'cuda':
      torch.cuda.synchronize()

  train_steps(1)
  return train_steps


def pytorch_process(connection) -> None:
  """PyTorch's side, in a process of its own: in one process, jaxcnn's oneDNN calls share
  PyTorch's OpenMP runtime, which then runs PyTorch's LeNet-5 30% slower than alone.
  Requests: ('version',), ('build', name) -> parameter count, ('run', steps) -> seconds."""
  import torch
  torch.set_num_threads(os.cpu_count())
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  train_steps = None
  while (request := connection.recv()) is not None:
    if request[0] == 'version':
      connection.send(torch.__version__)
    elif request[0] == 'build':
      preset, overrides, batch, torch_model = BENCHMARKS[request[1]]
      model = torch_model(3, 1000).to(device)
      train_steps = torch_train_steps(model, jax_config(preset, overrides, batch), device)
      connection.send(sum(p.numel() for p in model.parameters()))
    else:
      start = time.perf_counter()
      train_steps(request[1])
      connection.send(time.perf_counter() - start)


def best_images_per_sec(sides: dict, steps: int, batch: int, rounds: int) -> dict:
  """Each side's best images/s over `rounds` rounds of `steps` steps, the sides taking turns
  within a round so that a change in the machine's load falls on both. A side is a function
  of a step count that runs them and returns the seconds they took."""
  best = dict.fromkeys(sides, 0.0)
  for _ in range(rounds):
    for name, seconds in sides.items():
      best[name] = max(best[name], steps * batch / seconds(steps))
  return best


def machine() -> str:
  name = platform.processor() or platform.machine()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
    name = names[0] if names else name
  return f'{name}, {os.cpu_count()} cores; jax {jax.__version__} on {jax.devices()[0].device_kind}'


def publish(table: str, out: str | None) -> None:
  """Prints a markdown table, and writes it to `out` too where given."""
  print(table)
  if out:
    with open(out, 'w') as f:
      f.write(table + '\n')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=5, help='train steps per timed round')
  parser.add_argument('--rounds', type=int, default=3,
                      help='timed rounds, jaxcnn and PyTorch taking turns; the best counts')
  parser.add_argument('--only', nargs='*', default=list(BENCHMARKS), choices=list(BENCHMARKS))
  parser.add_argument('--out', default=None, help='also write the table to this file')
  args = parser.parse_args()
  spawn = multiprocessing.get_context('spawn')  # a fresh interpreter: no jax, no oneDNN
  pytorch, pytorch_end = spawn.Pipe()
  spawn.Process(target=pytorch_process, args=(pytorch_end,), daemon=True).start()
  pytorch.send(('version',))
  torch_version = pytorch.recv()
  peak = bench.matmul_peak_flops(jnp.float32)
  rows = []
  for name in args.only:
    preset, overrides, batch, _ = BENCHMARKS[name]
    config = jax_config(preset, overrides, batch)
    summary = summarize_config(config)
    pytorch.send(('build', name))
    torch_params = pytorch.recv()
    print(f'{name}: {summary["params"]:,} parameters in jaxcnn, {torch_params:,} in PyTorch',
          file=sys.stderr)
    if torch_params != summary['params']:
      raise SystemExit(f'{name}: the parameter counts differ')
    start = time.perf_counter()
    _, compile_seconds, jax_train_steps = bench.train_stepper(config)
    setup_seconds = time.perf_counter() - start

    def jax_seconds(steps):
      start = time.perf_counter()
      jax.block_until_ready(jax_train_steps(steps))
      return time.perf_counter() - start

    def torch_seconds(steps):
      pytorch.send(('run', steps))
      return pytorch.recv()

    speed = best_images_per_sec({'jax': jax_seconds, 'torch': torch_seconds}, args.steps, batch,
                                args.rounds)
    jax_speed, torch_speed = speed['jax'], speed['torch']
    flops = bench.train_flops_per_image(config)
    size = config.data.image_size
    rows.append(f"| {name} | {size}x{size} | {batch} | {summary['params']:,} | {jax_speed:,.1f} | "
                f'{torch_speed:,.1f} | {jax_speed / torch_speed:.2f} | {flops * jax_speed / peak:.3f} | '
                f'{flops * torch_speed / peak:.3f} | {setup_seconds - compile_seconds:.1f} | '
                f'{compile_seconds:.1f} |')
    print(rows[-1], file=sys.stderr)
  table = '\n'.join([
      f'{machine()}, torch {torch_version} in a process of its own; float32; best of '
      f'{args.rounds} alternating rounds of {args.steps} steps '
      f'after a warm-up step; matmul peak '
      f'{peak / 1e9:.1f} GFLOP/s; load average at the end {os.getloadavg()[0]:.2f}',
      '',
      '| model | input | batch | parameters (both) | jaxcnn images/s | PyTorch eager images/s | '
      'ratio | jaxcnn MFU | PyTorch MFU | jaxcnn set-up s | jaxcnn compile s |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|', *rows])
  pytorch.send(None)
  publish(table, args.out)


if __name__ == '__main__':
  main()
