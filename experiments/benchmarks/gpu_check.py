"""jaxcnn on a machine with an NVIDIA GPU and no internet, in one command and a few minutes.

  experiments/benchmarks/gpu_check.sh [--out FILE] [--cpu-smoke]

Needs jax with CUDA, flax, optax, orbax and jaxcnn's small pure-Python dependencies
(ml-collections, absl-py, tqdm, tensorboardX); no TensorFlow, PyTorch or prepared dataset.
It:
- prints the devices;
- trains the quick-start model (configs/lenet.py) QUICK_START_STEPS steps on one device, on the
  digits through the in-memory path (scikit-learn's copy; synthetic images where scikit-learn
  is absent);
- benchmarks one device with jaxcnn.bench: ResNet-50 at 224x224 in bfloat16 and float32,
  AlexNet at 227x227 in float32 and bfloat16, and CIFAR ResNet-20; on synthetic data of each
  config's shape where its dataset is not prepared, as bench does;
- trains AlexNet's two towers on a (1, 2) mesh and on one device, in full float32 (no
  TF32), and compares their losses and parameters, where 2 devices exist (else: skipped);
- writes every figure to one JSON file (--out).
Exit status 1 if the towers disagree, 2 for a mistake the user can fix.

--cpu-smoke runs the same code on CPU, everything shrunk (tiny models and batches, a step or
two), so that a test can run it in seconds; its figures mean nothing.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

from jaxcnn import bench, cli, parallel, train, validate
from jaxcnn import config as config_lib
from jaxcnn.reporting import read_metrics

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'configs')
QUICK_START_STEPS = 300
BENCHMARK_STEPS = 20
TOWER_STEPS = 5
TOWER_TOLERANCE = 1e-4  # relative: the same float32 math, summed in another order
ONE_DEVICE = {'mesh.data': 1, 'mesh.model': 1}
# name: (config, overrides), each on one device.
BENCHMARKS = {
    'resnet50_bfloat16': ('resnet.py:resnet50', {'train.compute_dtype': 'bfloat16'}),
    'resnet50_float32': ('resnet.py:resnet50', {}),
    'alexnet_float32': ('alexnet.py', {}),
    'alexnet_bfloat16': ('alexnet.py', {'train.compute_dtype': 'bfloat16'}),
    'cifar_resnet20': ('resnet.py:cifar_resnet20', {}),
}
# --cpu-smoke: a step or two of tiny batches, the models at their smallest, and of the
# benchmarks only the CPU-sized one (the ImageNet ones are GPU-only parts).
SMOKE = {'quick_start_steps': 2, 'benchmark_steps': 1, 'tower_steps': 2}
SMOKE_BENCHMARKS = ('cifar_resnet20',)
SMOKE_OVERRIDES = {'train.batch_size': 4, 'eval.batch_size': 4}
SMOKE_MODELS = {
    'resnet.py:cifar_resnet20': {'model.depth': 8},
    'alexnet.py:digits': {'model.widths': (8, 16, 16, 16, 16), 'model.hidden_units': 16},
}


def load(argument: str, smoke: bool, **overrides):
  """configs/ARGUMENT with `overrides`; shrunk for --cpu-smoke. Never tunes the convolutions:
  GPU runs do not, and a smoke run must not spend its seconds on it."""
  config = config_lib.load(os.path.join(CONFIGS, argument))
  config.train.conv_tuning = False
  if smoke:
    overrides = {**SMOKE_OVERRIDES, **SMOKE_MODELS.get(argument, {}), **overrides}
  return config_lib.override(config, overrides)


def digits_or_synthetic(config) -> None:
  """The digits need scikit-learn's copy; without it, synthetic images of the same size."""
  try:
    import sklearn  # noqa: F401
  except ImportError:
    config.data.name = 'synthetic'
    config.eval.batch_size = 1000  # its 10,000 eval images in 10 steps


def train_run(config, workdir: str, steps: int, log_every: int) -> tuple[dict, list[dict]]:
  """Trains `steps` steps into `workdir`; (final eval, train records)."""
  config.train.num_steps = config.checkpoint.every_steps = steps
  config.train.log_every_steps = log_every
  with contextlib.redirect_stdout(sys.stderr):  # the loop's lines; this script's go to stdout
    final = train.train_and_evaluate(config, workdir)
  return final, [r for r in read_metrics(workdir) if r['split'] == 'train']


def quick_start(steps: int, smoke: bool) -> dict:
  config = load('lenet.py', smoke, **ONE_DEVICE)
  digits_or_synthetic(config)
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    final, records = train_run(config, workdir, steps, log_every=max(1, steps // 2))
    seconds = time.perf_counter() - start
  result = {'data': config.data.name, 'steps': steps, 'seconds': seconds, 'top1': final['top1'],
            'train_images_per_sec': records[-1]['images_per_sec']}
  print(f"quick start: LeNet-5 on {result['data']}, {steps} steps in {seconds:.1f} s "
        f"(compilation included), test top-1 {100 * result['top1']:.2f}%, "
        f"{result['train_images_per_sec']:,.0f} images/s over the second half")
  return result


def benchmarks(steps: int, smoke: bool) -> dict:
  results = {}
  for name, (argument, overrides) in BENCHMARKS.items():
    config = load(argument, smoke, **ONE_DEVICE, **overrides)
    if smoke and name not in SMOKE_BENCHMARKS:
      results[name] = {'skipped': 'GPU-sized (--cpu-smoke)'}
      print(f'{name}: skipped (GPU-sized, --cpu-smoke)')
      continue
    result = results[name] = bench.benchmark(config, steps, loop=False)
    print(f"{name}: {result['train_images_per_sec']:,.1f} images/s train, "
          f"{result['eval_images_per_sec']:,.1f} eval, MFU {result['mfu']:.3f} (batch "
          f"{result['batch']}, {config.data.image_size}x{config.data.image_size}, compile "
          f"{result['compile_seconds']:.1f} s"
          + (', synthetic data)' if result['synthetic_stand_in'] else ')'))
  return results


def max_relative_difference(tree, reference) -> float:
  return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
             for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(reference)))


def tower_run(model_devices: int, steps: int, smoke: bool) -> tuple[list[float], dict]:
  """(the losses, the final parameters) of AlexNet's digits preset trained `steps` steps on a
  (1, model_devices) mesh, in full float32 (no TF32)."""
  config = load('alexnet.py:digits', smoke, **{'mesh.data': 1, 'mesh.model': model_devices,
                                               'train.batch_size': 16})
  digits_or_synthetic(config)
  validate.check_config(config)
  with jax.default_matmul_precision('float32'):
    run = train.setup(config)
    state, batches, losses = run.state, run.data.train_batches(), []
    for _ in range(steps):
      state, metrics = run.train_step(state, parallel.shard_batch(next(batches), run.mesh))
      losses.append(float(metrics['loss']))
  return losses, jax.device_get(state.params)


def towers(steps: int, smoke: bool) -> dict:
  """AlexNet's two towers on a (1, 2) mesh against the same run on one device."""
  if jax.device_count() < 2:
    print(f'towers: skipped ({jax.device_count()} device; the (1, 2) mesh needs 2)')
    return {'skipped': f'{jax.device_count()} device; the (1, 2) mesh needs 2'}
  (one_losses, one_params), (tower_losses, tower_params) = (
      tower_run(1, steps, smoke), tower_run(2, steps, smoke))
  difference = max_relative_difference(tower_params, one_params)
  result = {'steps': steps, 'losses_one_device': one_losses, 'losses_towers': tower_losses,
            'max_param_relative_difference': difference,
            'agree': bool(difference < TOWER_TOLERANCE
                          and np.allclose(tower_losses, one_losses, rtol=TOWER_TOLERANCE))}
  print(f"towers: (1, 2) mesh against one device after {steps} steps: parameters within "
        f"{difference:.1e} (relative), losses {tower_losses} against {one_losses}: "
        + ('agree' if result['agree'] else f'DISAGREE (tolerance {TOWER_TOLERANCE})'))
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='gpu_check.json', help='the JSON file of figures')
  parser.add_argument('--cpu-smoke', action='store_true',
                      help='run on CPU, shrunk, skipping what needs a GPU (for a test)')
  options = parser.parse_args()
  out_dir = os.path.dirname(os.path.abspath(options.out))
  if not os.access(out_dir, os.W_OK):
    cli.fail(f'--out={options.out}: cannot write in {out_dir}; pass a path in a writable '
             'directory')
  platform = jax.default_backend()
  if platform != 'gpu' and not options.cpu_smoke:
    cli.fail(f'jax sees no GPU (backend {platform}); install jax with CUDA '
             "(pip install -e '.[gpu]'), or pass --cpu-smoke to check this script on CPU")
  steps = SMOKE if options.cpu_smoke else {'quick_start_steps': QUICK_START_STEPS,
                                           'benchmark_steps': BENCHMARK_STEPS,
                                           'tower_steps': TOWER_STEPS}
  devices = [f'{device.id}: {device.device_kind}' for device in jax.devices()]
  print(f"jax {jax.__version__}, backend {platform}, devices: {'; '.join(devices)}")
  figures = {'jax': jax.__version__, 'backend': platform, 'devices': devices,
             'cpu_smoke': options.cpu_smoke, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
             'quick_start': quick_start(steps['quick_start_steps'], options.cpu_smoke),
             'benchmarks': benchmarks(steps['benchmark_steps'], options.cpu_smoke),
             'towers': towers(steps['tower_steps'], options.cpu_smoke)}
  with open(options.out, 'w') as f:
    json.dump(figures, f, indent=1)
  print(f'figures: {options.out}')
  if figures['towers'].get('agree') is False:
    sys.exit(1)


if __name__ == '__main__':
  main()
