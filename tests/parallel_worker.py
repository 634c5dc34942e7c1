"""Runs in a subprocess with 8 CPU devices (the XLA flag must precede importing jax).

  python tests/parallel_worker.py DATA_DIR OUT_DIR

Trains a few steps of AlexNet on meshes (1, 1) and (4, 2) and a CIFAR ResNet-8 (float64
compute) on (1, 1) and (8, 1), each into OUT_DIR/<name>, and prints one JSON object:
per run the train losses and the final parameters' path to an .npz (for AlexNet on (4, 2)
also the eval split's softmax outputs, an .npy), plus the all-gathers of the two-tower step.
"""

import os
import sys

if __name__ == '__main__':  # not when test_parallel imports small_config: it keeps 1 device
  import eight_cpu_devices  # noqa: F401

import json  # noqa: E402
import re  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import jaxcnn  # noqa: E402
from jaxcnn import parallel, train  # noqa: E402
from jaxcnn.checkpoint import Checkpoints  # noqa: E402
from jaxcnn.reporting import read_metrics  # noqa: E402
from jaxcnn.config import load_module  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def small_config(file, preset, data_dir, data, model):
  config = load_module(os.path.join(CONFIGS, file)).get_config(preset)
  config.data.name, config.data.data_dir = 'digits', data_dir
  config.train.batch_size, config.eval.batch_size = 16, 40
  config.train.num_steps, config.train.log_every_steps = 3, 1
  config.eval.every_steps = config.checkpoint.every_steps = 3
  config.mesh.data, config.mesh.model = data, model
  config.train.conv_tuning = False  # the same XLA convolutions on 1 device as on 8
  if file == 'alexnet.py':
    # fc6 and fc7 at 512 units instead of 4,096: still split over the towers, and a seventh
    # of the parameters to update on 8 devices that share 2 cores.
    config.model.hidden_units = 512
  return config


def run(config, workdir):
  """Trains; returns the train losses, the final eval record and the final parameters' .npz."""
  train.train_and_evaluate(config, workdir)
  params_path = os.path.join(workdir, 'params.npz')
  flat = jax.tree_util.tree_flatten_with_path(jaxcnn.restore(workdir).variables['params'])[0]
  np.savez(params_path, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in flat})
  records = read_metrics(workdir)
  return {'losses': [r['loss'] for r in records if r['split'] == 'train'],
          'eval': [r for r in records if r['split'] == 'eval'][-1], 'params': params_path}


def evaluation_probabilities(setup, state):
  """Softmax outputs for the eval split, each example once, as the run's evaluation computes
  them: its eval batches on its mesh, through the state's (sharded) apply_fn."""
  probabilities = jax.jit(
      lambda state, images: jax.nn.softmax(state.apply_fn(
          {'params': state.params, 'batch_stats': state.batch_stats}, images, train=False)),
      in_shardings=(setup.shardings, NamedSharding(setup.mesh, P('data'))))
  rows = [np.asarray(probabilities(state, batch['image']))[np.asarray(batch['mask'])]
          for batch in parallel.prefetch_to_mesh(setup.data.eval_batches(), setup.mesh)]
  return np.concatenate(rows)


# How XLA's HLO text writes the groups of the model axis (devices 2i and 2i+1 of mesh (4, 2)):
# listed (jax 0.10), as an iota, or by mesh axis name (jax 0.12).
MODEL_AXIS_GROUPS = ('replica_groups={{0,1},{2,3},{4,5},{6,7}}', 'replica_groups=[4,2]<=[8]',
                     "{'model'}")


def tower_all_gathers(setup):
  """Shapes that the compiled two-tower train step all-gathers across the model axis: plain
  all-gathers and the start of asynchronous ones, whose result is the last shape of a tuple."""
  batch = next(setup.data.train_batches())
  hlo = setup.train_step.lower(setup.state, parallel.shard_batch(batch, setup.mesh)).compile().as_text()
  gathers = [line.split(' all-gather')[0] for line in hlo.splitlines()
             if re.search(r' all-gather(-start)?\(', line)
             and any(groups in line for groups in MODEL_AXIS_GROUPS)]
  return [[int(d) for d in re.findall(r'f32\[([\d,]+)\]', result)[-1].split(',')]
          for result in gathers]


def main(data_dir, out_dir):
  results = {}
  for data, model in ((1, 1), (4, 2)):
    config = small_config('alexnet.py', 'digits', data_dir, data, model)
    results[f'alexnet_{data}x{model}'] = run(config, os.path.join(out_dir, f'alexnet_{data}x{model}'))
  # The two-tower run's state on its own mesh: what its evaluation saw, and its compiled step.
  towers = results['alexnet_4x2']
  setup = train.setup(config)
  checkpoints = Checkpoints(os.path.dirname(towers['params']), create=False)
  state = checkpoints.restore(setup.state)
  checkpoints.close()
  towers['eval_probabilities'] = os.path.join(out_dir, 'alexnet_4x2', 'eval_probabilities.npy')
  np.save(towers['eval_probabilities'], evaluation_probabilities(setup, state))
  results['tower_all_gathers'] = tower_all_gathers(setup)
  # In float32, BN layers whose gradients nearly cancel (a bias feeding the next BN) differ
  # by rounding between summation orders, and a few steps amplify that; in float64 the
  # data-parallel and single-device runs agree exactly, which is the claim under test.
  jax.config.update('jax_enable_x64', True)
  for data in (1, 8):
    config = small_config('resnet.py', 'digits', data_dir, data, 1)
    config.model.depth = 8  # one block per stage, at 16, 8 and 4 px: BN after every conv
    config.train.compute_dtype = 'float64'
    results[f'resnet_{data}x1'] = run(config, os.path.join(out_dir, f'resnet_{data}x1'))
  print(json.dumps(results))


if __name__ == '__main__':
  main(*sys.argv[1:])
