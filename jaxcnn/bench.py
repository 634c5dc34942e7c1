"""How fast a config trains on this machine, and how close to the hardware's peak.

  python -m jaxcnn.bench --config configs/NAME.py[:PRESET] [--batch N] [--steps N] [--json]
      [--noloop] [--config.KEY=VALUE ...]

- compile: seconds to lower and compile the trainer's train step.
- train step: `--steps` steps on one batch already on the devices (after a warm-up step):
  milliseconds per step and images/s, the fastest of ROUNDS rounds (a machine's other work
  slows some rounds; small nets' rounds last a fraction of a second). The eval step likewise.
- fed train step: the same, as the training loop runs it on the input path's batches (on
  the in-memory path one program that makes the batch and takes the step), each round right
  after one of the train step's, so that a busy spell of the machine slows both alike; and
  its ratio to the train step, `fed_over_train`.
- input pipeline: jaxcnn.data.throughput.measure, the train batches alone; null for
  `synthetic` data (one fixed batch in memory, no pipeline) or where the tf.data path lacks
  TensorFlow.
- A config whose dataset is not prepared here (ImageNet, say) is timed on synthetic data of
  its shape and classes, with a warning line on stderr; the input pipeline and the loop are
  then null, with the reason.
- loop: train_and_evaluate for (ROUNDS + 1) x `--steps` steps logging every `--steps`,
  evaluating and saving at the end only, in a temporary workdir; the images/s of the fastest
  of its last ROUNDS train records (input, step and logging, as in metrics.jsonl; the first
  record holds the compilation), and its ratio to the train step, `loop_over_train`. The
  rounds of the train step and the fed one run between the loop's records, outside their time,
  so that the loop too sees the machine as the steps do (timed apart, LeNet's loop ranged from
  76% to 171% of its step on a shared 2-core machine).
  An evaluation inside that record, where an epoch ends, would be left out of its time but
  would still slow the steps after it (LeNet's loop fell from 98% to 80% of
  its step's speed), and whether one falls there depends on the dataset's size.
- MFU: model FLOPs per second (3 x the forward FLOPs, 2 x the summary's MACs, per image) over
  the FLOP/s that a large matmul in the compute dtype reaches on the same device in this run.

`--config.train.compute_dtype=bfloat16` runs the model in bfloat16 (parameters, optimizer
state and loss stay float32).
"""

import contextlib
import json
import sys
import tempfile
import time

from absl import flags

from jaxcnn import cli
from jaxcnn.data import throughput
from jaxcnn.errors import warn

MATMUL_SIZE = {'cpu': 2048}  # other platforms: 8192
MATMUL_REPEATS = 5
ROUNDS = 5  # the step, the eval step and the loop are each timed this many times; the best counts


def _seconds(fn, repeats: int) -> float:
  """Wall seconds of `repeats` calls of `fn` (which returns arrays to wait for)."""
  import jax
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return time.perf_counter() - start


def matmul_peak_flops(dtype) -> float:
  """FLOP/s of the fastest of a few square matmuls on the first device, in `dtype`."""
  import jax
  import jax.numpy as jnp
  size = MATMUL_SIZE.get(jax.devices()[0].platform, 8192)
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, b))
  best = min(_seconds(lambda: matmul(a, b), 1) for _ in range(MATMUL_REPEATS))
  return 2 * size ** 3 / best


def train_flops_per_image(config) -> int:
  """3 x the forward FLOPs (2 x MACs) of one image: forward, and backward at twice its cost."""
  from jaxcnn.summary import summarize_config
  return 3 * 2 * summarize_config(config)['macs']


def train_stepper(config, synthetic: bool = False):
  """(the set-up run, seconds to compile its train step, a function that runs `count` train
  steps and returns the train state after them), after one warm-up step of each kind. The
  steps run on one batch already on the devices, or with `fed=True` as the training loop runs
  them, fed by the input path. `synthetic`: on random data of the config's shape and
  classes."""
  import jax
  from jaxcnn import parallel, train, validate
  from jaxcnn.data.synthetic import SyntheticData
  validate.check_config(config)
  parallel.initialize_distributed(config.distributed)
  data = (SyntheticData(config, jax.process_index(), jax.process_count(), like=config.data.name)
          if synthetic else None)
  run = train.setup(config, data=data)
  batch = parallel.shard_batch(next(iter(run.data.train_batches())), run.mesh)
  start = time.perf_counter()
  step = run.train_step.lower(run.state, batch).compile()
  compile_seconds = time.perf_counter() - start

  inputs = train.loop_inputs(run.data, run.mesh, start_step=0)
  state = run.state
  def train_steps(count, fed=False):
    nonlocal state
    for _ in range(count):
      state, _ = run.loop_step(state, next(inputs)) if fed else step(state, batch)
    return state
  _seconds(lambda: train_steps(1), 1)
  _seconds(lambda: train_steps(1, fed=True), 1)
  return run, compile_seconds, train_steps


def measure_steps(config, steps: int, synthetic: bool = False, loop: bool = False) -> dict:
  """Compile seconds, the train step's speed on a batch already on the devices and fed by the
  input path, the eval step's, and with `loop` the training loop's. Each round times the bare
  step, then the fed one; with `loop` the rounds run between the loop's records, so that a busy
  spell of the machine slows all three alike."""
  from jaxcnn import parallel
  run, compile_seconds, train_steps = train_stepper(config, synthetic)
  bare, fed = [], []

  def timed_round():
    bare.append(_seconds(lambda: train_steps(steps), 1))
    fed.append(_seconds(lambda: train_steps(steps, fed=True), 1))

  if loop:
    loop_speeds = measure_loop(config, steps, after_record=timed_round)
    del bare[0], fed[0]  # the rounds after the loop's first record, which held its compilation
  else:
    for _ in range(ROUNDS):
      timed_round()
  train_seconds, fed_seconds = min(bare), min(fed)

  eval_batch = parallel.shard_batch(next(iter(run.data.eval_batches())), run.mesh)
  state = train_steps(0)  # the state the steps left: they donate the ones before
  _seconds(lambda: run.eval_step(state, eval_batch), 1)
  eval_seconds = min(_seconds(lambda: run.eval_step(state, eval_batch), steps)
                     for _ in range(ROUNDS))
  result = {'devices': run.mesh.devices.size,  # the mesh's, which may leave some out
            'compile_seconds': compile_seconds,
            'train_step_ms': 1000 * train_seconds / steps,
            'train_images_per_sec': steps * config.train.batch_size / train_seconds,
            'fed_train_images_per_sec': steps * config.train.batch_size / fed_seconds,
            'fed_over_train': train_seconds / fed_seconds,
            'eval_images_per_sec': steps * config.eval.batch_size / eval_seconds}
  if loop:
    result['loop_images_per_sec'] = max(loop_speeds)
    result['loop_over_train'] = result['loop_images_per_sec'] / result['train_images_per_sec']
  return result


def measure_input(config, batches: int) -> tuple[float | None, str | None]:
  """(images/s of the input pipeline alone, or None and why not)."""
  if config.data.name == 'synthetic':
    return None, 'synthetic data serve one fixed batch from memory: there is no input pipeline'
  try:
    return throughput.measure(config, batches)['images_per_sec'], None
  except ImportError as e:
    return None, f'the input pipeline of {config.data.name} needs TensorFlow ({e})'


def measure_loop(config, steps: int, after_record) -> list[float]:
  """Images/s of the training loop (train_and_evaluate) in each of ROUNDS records of `steps`
  steps, after `steps` warm-up steps, from its metrics.jsonl; `after_record` runs after each
  record, the warm-up one included."""
  from jaxcnn import train
  from jaxcnn.reporting import read_metrics
  config = config.copy_and_resolve_references()
  config.train.num_steps = (ROUNDS + 1) * steps
  config.train.log_every_steps = steps
  config.eval.every_steps = config.checkpoint.every_steps = config.train.num_steps
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir, after_record=after_record)
    records = [r for r in read_metrics(workdir) if r['split'] == 'train']
  return [r['images_per_sec'] for r in records[1:]]


def benchmark(config, steps: int, loop: bool = True) -> dict:
  """Every figure of the module docstring for `config` (its batch size, its compute dtype)."""
  import jax
  import jax.numpy as jnp
  from jaxcnn import parallel
  from jaxcnn.data import dataset_spec, preparation_problem
  parallel.initialize_distributed(config.distributed)  # before jax.devices() below
  not_prepared = preparation_problem(config.data.name, config.data.data_dir,
                                     config.data.download)
  result = {'device': jax.devices()[0].device_kind,
            'batch': config.train.batch_size, 'steps': steps,
            'compute_dtype': config.train.compute_dtype, 'synthetic_stand_in': bool(not_prepared)}
  if not_prepared:  # no input pipeline to time, and the loop would read the dataset
    spec, size = dataset_spec(config.data.name), config.data.image_size
    warn(f'{not_prepared}; timing the steps on synthetic data of its shape and classes '
         f'({size}x{size}x{spec.channels}, {spec.num_classes} classes)')
    result.update({'input_images_per_sec': None, 'loop_images_per_sec': None,
                   'input_note': f'{not_prepared} (the steps ran on synthetic data)',
                   'loop_note': f'the loop reads the dataset: {not_prepared}'})
  else:
    result['input_images_per_sec'], input_note = measure_input(config, steps)
    if input_note:
      result['input_note'] = input_note
    if not loop:
      result.update({'loop_images_per_sec': None, 'loop_note': 'not measured (--noloop)'})
  result.update(measure_steps(config, steps, synthetic=bool(not_prepared),
                              loop=loop and not not_prepared))
  flops = train_flops_per_image(config)
  peak = matmul_peak_flops(jnp.dtype(config.train.compute_dtype))
  model_flops = flops * result['train_images_per_sec']
  result.update({'train_flops_per_image': flops, 'model_flops_per_sec': model_flops,
                 'matmul_peak_flops_per_sec': peak, 'mfu': model_flops / peak})
  return result


def format_result(result: dict) -> str:
  per_sec = lambda key: (f'{result[key]:,.1f} images/s' if result[key] is not None
                         else f"not measured: {result.get(key.split('_')[0] + '_note')}")
  return '\n'.join([
      f"{result['device']} x {result['devices']}, batch {result['batch']}, "
      f"{result['compute_dtype']}, {result['steps']} timed steps"
      + (', synthetic data' if result['synthetic_stand_in'] else ''),
      f"compile        {result['compile_seconds']:.1f} s",
      f"train step     {result['train_step_ms']:.1f} ms, {per_sec('train_images_per_sec')}",
      f"fed train step {per_sec('fed_train_images_per_sec')} "
      f"({100 * result['fed_over_train']:.0f}% of the train step)",
      f"eval step      {per_sec('eval_images_per_sec')}",
      f"input pipeline {per_sec('input_images_per_sec')}",
      f"loop           {per_sec('loop_images_per_sec')}"
      + (f" ({100 * result['loop_over_train']:.0f}% of the train step)"
         if 'loop_over_train' in result else ''),
      f"MFU            {result['mfu']:.3f} ({result['model_flops_per_sec'] / 1e9:.1f} GFLOP/s "
      f"of the model, {result['train_flops_per_image'] / 1e9:.3f} GFLOP per image; matmul peak "
      f"{result['matmul_peak_flops_per_sec'] / 1e9:.1f} GFLOP/s)"])


def define_flags() -> None:
  cli.define_config_flag()
  flags.DEFINE_integer('batch', 0, "Global train batch size (default: the config's).")
  flags.DEFINE_integer('steps', 20, 'Steps to time (after one warm-up step).')
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of lines.')
  flags.DEFINE_bool('loop', True, 'Also time the end-to-end training loop (--noloop: not; it '
                    'ends with a full evaluation).')


def main(arguments: list[str]) -> None:
  del arguments  # cli.run refuses any
  options = flags.FLAGS
  if options.steps < 1 or options.batch < 0:
    cli.fail(f'--steps={options.steps} and --batch={options.batch} must be >= 1')
  config = options.config
  with config.unlocked():
    if options.batch:
      config.train.batch_size = options.batch
  # The loop's own lines go to stderr, so that --json prints the object alone.
  with contextlib.redirect_stdout(sys.stderr):
    result = benchmark(config, options.steps, options.loop)
  print(json.dumps(result) if options.json else format_result(result))


if __name__ == '__main__':
  cli.run(main, define_flags)
