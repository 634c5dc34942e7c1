"""jaxcnn.bench's JSON, one compilation of the train step per run, and mixed precision."""

import json
import logging
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO, cli_env, load_config
from jaxcnn import models, steps
from jaxcnn.reporting import read_metrics
from jaxcnn.summary import called_jaxprs, summarize_config


def test_bench_json_figures(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'jaxcnn.bench', '--config', str(REPO / 'configs/lenet.py'),
       '--config.data.name=synthetic', '--config.eval.batch_size=2000', '--batch', '16',
       '--steps', '3', '--json',
       '--config.train.conv_tuning=False'],  # timing its shapes: 8 of the 21 s (test_tuning.py)
      cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  figures = json.loads(result.stdout)
  for key in ('train_images_per_sec', 'fed_train_images_per_sec', 'compile_seconds',
              'loop_images_per_sec', 'eval_images_per_sec', 'model_flops_per_sec',
              'matmul_peak_flops_per_sec'):
    assert math.isfinite(figures[key]) and figures[key] > 0, key
  train_speed = figures['train_images_per_sec']
  assert figures['fed_over_train'] == pytest.approx(
      figures['fed_train_images_per_sec'] / train_speed)
  assert figures['loop_over_train'] == pytest.approx(figures['loop_images_per_sec'] / train_speed)
  assert 0 < figures['mfu'] <= 1
  assert figures['input_images_per_sec'] is None and 'synthetic' in figures['input_note']
  assert figures['synthetic_stand_in'] is False  # data.name='synthetic' is no stand-in
  config = load_config('lenet')
  config.data.name = 'synthetic'
  assert figures['train_flops_per_image'] == 6 * summarize_config(config)['macs']
  assert figures['mfu'] == pytest.approx(
      figures['train_flops_per_image'] * figures['train_images_per_sec']
      / figures['matmul_peak_flops_per_sec'])
  assert (figures['batch'], figures['steps'], figures['compute_dtype']) == (16, 3, 'float32')


def test_bench_rejects_bad_steps(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'jaxcnn.bench', '--config', str(REPO / 'configs/lenet.py'),
       '--steps', '0'], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'error: --steps=0 and --batch=0 must be >= 1']


class _Compilations(logging.Handler):
  def __init__(self):
    super().__init__()
    self.names = []

  def emit(self, record):
    message = record.getMessage()
    if message.startswith('Compiling jit('):
      self.names.append(message[len('Compiling jit('):].split(')')[0])


def test_train_step_compiles_once_in_a_run(digits_config, tmp_path):
  """20 steps with 4 logs, 2 evals and 2 checkpoints inside: one train-step compilation; the
  bench's hook runs after each of the 4 train records."""
  from jaxcnn import train
  config = digits_config('lenet', **{
      'train.num_steps': 20, 'train.log_every_steps': 5, 'eval.every_steps': 10,
      'checkpoint.every_steps': 10})
  compilations, records_seen = _Compilations(), []
  logger = logging.getLogger('jax._src.interpreters.pxla')
  logger.addHandler(compilations)
  try:
    with jax.log_compiles():
      final = train.train_and_evaluate(
          config, str(tmp_path),
          after_record=lambda: records_seen.append(len(read_metrics(str(tmp_path)))))
  finally:
    logger.removeHandler(compilations)
  assert final['step'] == 20
  assert records_seen == [1, 2, 4, 5]  # each train record written; evaluations after the hook
  # digits train in memory: one program a step makes the batch and takes the step, compiled
  # once, and neither the bare step nor the batch's own program is compiled beside it.
  assert compilations.names.count('train_step_making_its_batch') == 1, compilations.names
  assert not {'train_step', '_train_rows'} & set(compilations.names), compilations.names
  assert compilations.names.count('eval_step') == 1


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_state():
  from jaxcnn import optim
  config = load_config('lenet', 'bn')
  config.train.compute_dtype = 'bfloat16'
  model = models.build_model(config, 10, 1)
  tx = optim.create_optimizer(config.optimizer,
                              optim.learning_rate_schedule(config.optimizer, 10, 10), 10)
  state = steps.create_train_state(config, model, tx, (1, 32, 32, 1))
  images = jax.random.normal(jax.random.key(1), (4, 32, 32, 1))
  batch = {'image': images, 'label': jnp.arange(4)}

  jaxpr = jax.make_jaxpr(lambda x: model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, x))(images)
  def convs(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'conv_general_dilated':
        yield eqn
      for inner in called_jaxprs(eqn):
        yield from convs(inner)

  convs = list(convs(jaxpr.jaxpr))
  assert [e.outvars[0].aval.dtype for e in convs] == [jnp.bfloat16] * 2

  state, metrics = jax.jit(steps.train_step, static_argnums=2)(state, batch, 0.0)
  assert metrics['loss'].dtype == jnp.float32 and math.isfinite(metrics['loss'])
  kept = jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
  assert {leaf.dtype for leaf in kept if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
      jnp.dtype(jnp.float32)}


def test_resnet18_cifar_stem_keeps_32x32_until_the_first_stage():
  """The benchmark's ResNet-18 at 32x32: one 3x3/1 conv, no pool, so layer1 sees 32x32."""
  from jaxcnn.models.resnet import ResNet
  model = ResNet(num_classes=10, depth=18, stem='cifar')
  x = jnp.zeros((1, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables['params'])) == 11_173_962
  assert variables['params']['conv1']['kernel'].shape == (3, 3, 3, 64)
  _, state = jax.eval_shape(lambda v: model.apply(v, x, capture_intermediates=True,
                                                 mutable=['intermediates']), variables)
  assert state['intermediates']['layer1_0']['__call__'][0].shape == (1, 32, 32, 64)
  assert state['intermediates']['layer4_1']['__call__'][0].shape == (1, 4, 4, 512)


def test_bench_times_synthetic_data_where_the_dataset_is_not_prepared(tmp_path, capsys):
  from jaxcnn import bench
  from jaxcnn.data import not_prepared_error
  from jaxcnn.data.synthetic import SyntheticData
  config = load_config('lenet', 'mnist')
  config.data.data_dir = str(tmp_path)  # holds no mnist
  config.train.batch_size, config.eval.batch_size = 16, 100
  result = bench.benchmark(config, steps=2)
  problem = not_prepared_error('mnist', str(tmp_path))
  assert capsys.readouterr().err.splitlines() == [
      f'warning: {problem}; timing the steps on synthetic data of its shape and classes '
      '(32x32x1, 10 classes)']
  assert result['synthetic_stand_in'] is True
  for key in ('train_images_per_sec', 'eval_images_per_sec', 'compile_seconds'):
    assert math.isfinite(result[key]) and result[key] > 0, key
  assert 0 < result['mfu'] <= 1
  assert result['train_flops_per_image'] == 6 * summarize_config(config)['macs']
  assert result['input_images_per_sec'] is None and result['loop_images_per_sec'] is None
  assert result['input_note'] == f'{problem} (the steps ran on synthetic data)'
  assert result['loop_note'] == f'the loop reads the dataset: {problem}'
  # The stand-in has mnist's channels and classes, not those of data.name='synthetic'.
  data = SyntheticData(config, 0, 1, like='mnist')
  assert (data.num_classes, data.channels) == (10, 1)
  assert data.train_batch['image'].shape == (16, 32, 32, 1)
  assert data.eval_batch['label'].max() < 10
