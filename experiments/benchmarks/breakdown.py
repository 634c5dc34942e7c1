"""Where a jaxcnn train step's time goes, for the networks of compare_pytorch.py.

  python experiments/benchmarks/breakdown.py [--only NAME ...] [--steps N] [--rounds N]
      [--out FILE]

For each network, on the same batch of random images (jaxcnn's `synthetic` data) and with
the convolutions the trainer tuned (jaxcnn/tuning.py):
- the whole train step, as the trainer compiles it;
- its forward pass alone (training mode, batch-norm statistics updated), and the forward and
  backward passes alone (the loss's gradient: no optimizer, metrics or non-finite guard);
- the convolutions of each direction: every convolution the step runs, at the time the
  tuning cache holds for its geometry and the formulation chosen (timed alone, so this leaves
  out what XLA fuses around it).
What is left of the forward pass (batch norm, pooling, LRN, dense layers, activations) and
of the backward pass is the difference; so is "the rest of the step": the optimizer update,
the metrics (top-1 and top-5 every step), the non-finite guard and the dispatch from Python.
The timings take turns within each round, and each one's best round counts.
"""

import argparse
import collections
import functools
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import BENCHMARKS, jax_config, machine, publish  # noqa: E402

from jaxcnn import bench, parallel, steps, tuning  # noqa: E402
from jaxcnn.models import conv  # noqa: E402
from jaxcnn.models.formulations import DIRECTIONS  # noqa: E402


def train_loss(state, batch):
  """The train step's loss as a function of the parameters at `state`."""

  def loss(params):
    outputs, _ = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                                batch['image'], train=True, mutable=['batch_stats'],
                                rngs={'dropout': jax.random.key(0)})
    return steps.classification_loss(outputs, batch['label'])[0]

  return loss


def compiled(fn, conv_choices, *args):
  return jax.jit(functools.partial(steps.traced_with_conv_choices(fn),
                                   conv_choices=conv_choices)).lower(*args).compile()


def convolution_ms(gradient, conv_choices, params) -> dict[str, float]:
  """Milliseconds per direction of the convolutions that `gradient` (the forward and backward
  passes) runs, each at its tuning-cache time."""
  counts = tuning.geometries((gradient, params))
  cached = tuning.measured()
  totals = collections.Counter()
  for geometry, directions in counts.items():
    chosen = dict(zip(DIRECTIONS, conv_choices.get(geometry, ('xla',) * 3)))
    for direction, count in directions.items():
      totals[direction] += count * cached[str(geometry)][direction][chosen[direction]]
  return totals


def best_ms(functions: dict, rounds: int, steps_per_round: int) -> dict[str, float]:
  best = dict.fromkeys(functions, float('inf'))
  for _ in range(rounds):
    for name, fn in functions.items():
      start = time.perf_counter()
      for _ in range(steps_per_round):
        out = fn()
      jax.block_until_ready(out)
      best[name] = min(best[name], 1000 * (time.perf_counter() - start) / steps_per_round)
  return best


def breakdown(name: str, steps_per_round: int, rounds: int) -> tuple[str, list[str]]:
  """(a markdown table row, the names of its parts)."""
  preset, overrides, batch_size, _ = BENCHMARKS[name]
  config = jax_config(preset, overrides, batch_size)
  run, _, train_steps = bench.train_stepper(config)
  batch = parallel.shard_batch(next(iter(run.data.train_batches())), run.mesh)
  # A copy: the train steps timed below donate (delete) the states they are given.
  state = jax.tree.map(jax.numpy.copy, train_steps(0))
  loss = train_loss(state, batch)
  params = state.params
  forward = compiled(loss, run.conv_choices, params)
  forward_backward = compiled(jax.grad(loss), run.conv_choices, params)
  ms = best_ms({'step': lambda: train_steps(1), 'forward': lambda: forward(params),
                'forward_backward': lambda: forward_backward(params)}, rounds, steps_per_round)
  convs = convolution_ms(jax.grad(loss), run.conv_choices, params)
  parts = {
      'conv forward': convs['forward'],
      'rest of forward': ms['forward'] - convs['forward'],
      'conv input gradient': convs['input_grad'],
      'conv filter gradient': convs['kernel_grad'],
      'rest of backward': ms['forward_backward'] - ms['forward'] - convs['input_grad']
                          - convs['kernel_grad'],
      'rest of the step': ms['step'] - ms['forward_backward'],
  }
  cells = ' | '.join(f'{value:.1f} ({100 * value / ms["step"]:.0f}%)' for value in parts.values())
  return f'| {name} | {batch_size} | {ms["step"]:.1f} | {cells} |', list(parts)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--only', nargs='*', default=list(BENCHMARKS), choices=list(BENCHMARKS))
  parser.add_argument('--steps', type=int, default=3, help='steps per timed round')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--out', default=None, help='also write the table to this file')
  args = parser.parse_args()
  rows = []
  for name in args.only:
    row, parts = breakdown(name, args.steps, args.rounds)
    rows.append(row)
    print(row, file=sys.stderr)
  table = '\n'.join([
      f'{machine()}; milliseconds per train step (share of the step); load average at the end '
      f'{os.getloadavg()[0]:.2f}', '',
      f'| model | batch | step ms | {" | ".join(parts)} |',
      '|---|---:|---:|' + '---:|' * len(parts), *rows])
  publish(table, args.out)


if __name__ == '__main__':
  main()
