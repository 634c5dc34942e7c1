"""Training and evaluation: the train state, the jit-compiled steps, and the loop.

`train_and_evaluate(config, workdir)` trains from scratch, or resumes from the latest
checkpoint in `workdir`, and returns the final eval metrics.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcnn import data as input_data
from jaxcnn import optim, parallel, validate
from jaxcnn.checkpoint import Checkpoints
from jaxcnn.errors import UserError
from jaxcnn.reporting import Reporter, read_metrics


class TrainState(train_state.TrainState):
  batch_stats: Any
  dropout_key: jax.Array  # raw key data; step k uses fold_in(key, k), so resuming is exact
  eval_error: jax.Array  # latest eval top-1 error: what the plateau schedule watches


def create_train_state(config, model, tx, input_shape, apply_fn=None) -> TrainState:
  """A fresh state; `apply_fn` (default `model.apply`) is how train and eval steps run it."""
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  variables = jax.jit(functools.partial(model.init, train=False))(init_key, jnp.zeros(input_shape))
  return TrainState.create(
      apply_fn=apply_fn or model.apply, params=variables['params'], tx=tx,
      batch_stats=variables.get('batch_stats', {}),
      dropout_key=jax.random.key_data(dropout_key), eval_error=jnp.ones((), jnp.float32))


def cross_entropy(logits, labels, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy against (optionally smoothed) one-hot labels."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def classification_loss(outputs, labels, label_smoothing: float = 0.0,
                        aux_loss_weights: tuple[float, ...] = ()):
  """Mean cross-entropy of the main logits plus weight x that of each auxiliary head.

  `outputs` is the logits array, or (main, aux1, ...) from a model with auxiliary heads in
  training. Returns (loss, main logits).
  """
  main, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
  if len(aux) != len(aux_loss_weights):
    raise UserError(f'the model returns {len(aux)} auxiliary output(s) in training but '
                    f'train.aux_loss_weights={tuple(aux_loss_weights)} has '
                    f'{len(aux_loss_weights)} weight(s); give one weight per auxiliary head')
  loss = cross_entropy(main, labels, label_smoothing).mean()
  for weight, logits in zip(aux_loss_weights, aux):
    loss += weight * cross_entropy(logits, labels, label_smoothing).mean()
  return loss, main


def top_k_correct(logits, labels, k: int) -> jax.Array:
  k = min(k, logits.shape[-1])
  return jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)


def train_step(state: TrainState, batch, label_smoothing: float,
               aux_loss_weights: tuple[float, ...] = (), batch_norm_groups: int = 1):
  """One SGD step. With `batch_norm_groups` G > 1, batch norm normalizes each of G equal
  slices of the batch by its own statistics (one slice per data-parallel device, as pmap-era
  code did) and the running statistics average the slices'."""
  dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.dropout_key), state.step)

  def forward(params, images, key):
    return state.apply_fn({'params': params, 'batch_stats': state.batch_stats}, images,
                          train=True, rngs={'dropout': key}, mutable=['batch_stats'])

  def loss_fn(params):
    if batch_norm_groups == 1:
      outputs, updates = forward(params, batch['image'], dropout_key)
    else:
      images = batch['image'].reshape(batch_norm_groups, -1, *batch['image'].shape[1:])
      keys = jax.random.split(dropout_key, batch_norm_groups)
      outputs, updates = jax.vmap(forward, in_axes=(None, 0, 0), spmd_axis_name='data')(
          params, images, keys)
      outputs = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), outputs)
      updates = jax.tree.map(lambda x: x.mean(axis=0), updates)
    loss, logits = classification_loss(outputs, batch['label'], label_smoothing,
                                       aux_loss_weights)
    return loss, (logits, updates.get('batch_stats', {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                       value=state.eval_error)
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state, batch_stats=batch_stats)
  metrics = {'loss': loss,
             'top1': top_k_correct(logits, batch['label'], 1).mean(),
             'top5': top_k_correct(logits, batch['label'], 5).mean()}
  return state, metrics


def eval_step(state: TrainState, batch):
  """Sums over the real (mask=True) examples of a batch; running statistics stay frozen."""
  logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                          batch['image'], train=False)
  mask = batch['mask']
  return {'loss': jnp.sum(cross_entropy(logits, batch['label']) * mask),
          'top1': jnp.sum(top_k_correct(logits, batch['label'], 1) & mask),
          'top5': jnp.sum(top_k_correct(logits, batch['label'], 5) & mask),
          'num_examples': jnp.sum(mask)}


def evaluate(eval_step_fn, state, data, mesh) -> dict:
  """Loss, top-1 and top-5 over every example of the eval split, each counted once."""
  totals = None
  for batch in parallel.prefetch_to_mesh(data.eval_batches(), mesh):
    sums = eval_step_fn(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = int(totals['num_examples'])
  return {'loss': float(totals['loss']) / count, 'top1': float(totals['top1']) / count,
          'top5': float(totals['top5']) / count, 'num_examples': count}


def _final_line(record: dict, workdir: str) -> str:
  return (f"final eval top-1 {100 * record['top1']:.2f}% (top-5 {100 * record['top5']:.2f}%, "
          f"{record['num_examples']} examples, step {record['step']}); workdir {workdir}")


@dataclasses.dataclass
class Setup:
  """Everything a run derives from its config before the first step."""
  mesh: Any
  data: Any
  schedule: Any
  state: TrainState  # freshly initialized, placed on the mesh
  shardings: TrainState  # of `state`
  total_steps: int
  steps_per_eval: int
  eval_step: Any  # jit-compiled eval_step


def setup(config) -> Setup:
  validate.check_config(config)
  parallel.initialize_distributed(config.distributed)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model)
  validate.check_batch_sizes(config, mesh.shape['data'], jax.process_count())
  data = input_data.create(config)
  model = validate.build_model(config, data.num_classes, mesh)
  input_shape = (1, config.data.image_size, config.data.image_size, data.channels)
  validate.check_input_size(model, input_shape)

  total_steps = config.train.num_steps or config.train.num_epochs * data.steps_per_epoch
  steps_per_eval = config.eval.every_steps or data.steps_per_epoch
  schedule = optim.learning_rate_schedule(config.optimizer, total_steps, data.steps_per_epoch)
  tx = optim.create_optimizer(config.optimizer, schedule, steps_per_eval)
  state = create_train_state(config, model, tx, input_shape, parallel.model_apply(model, mesh))
  shardings = parallel.state_shardings(state, model, mesh)
  eval_step_fn = jax.jit(eval_step, in_shardings=(shardings, NamedSharding(mesh, P('data'))))
  return Setup(mesh, data, schedule, jax.device_put(state, shardings), shardings, total_steps,
               steps_per_eval, eval_step_fn)


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Eval metrics of the checkpoint at `step` (default: latest) of `workdir`, on the mesh
  and processes that `config` gives, whichever mesh wrote it."""
  run = setup(config)
  checkpoints = Checkpoints(workdir, config.checkpoint.keep)
  state = checkpoints.restore(run.state, step)
  checkpoints.close()
  return {'step': int(state.step), 'split': 'eval',
          **evaluate(run.eval_step, state, run.data, run.mesh)}


def train_and_evaluate(config, workdir: str) -> dict:
  run = setup(config)
  mesh, data, state, shardings, total_steps = (run.mesh, run.data, run.state, run.shardings,
                                               run.total_steps)
  os.makedirs(workdir, exist_ok=True)
  checkpoints = Checkpoints(workdir, config.checkpoint.keep)
  latest = checkpoints.latest_step()
  if latest is not None and latest >= total_steps:
    checkpoints.close()
    evals = [r for r in read_metrics(workdir) if r['split'] == 'eval']
    final = evals[-1] if evals else {}
    print(f'run already finished at step {latest} of {total_steps}; nothing to do. '
          + (_final_line(final, workdir) if final else f'workdir {workdir}'))
    return final
  if latest is None:
    if jax.process_index() == 0:
      with open(os.path.join(workdir, 'config.json'), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))
  else:
    state = checkpoints.restore(state)
  start_step = int(state.step)

  reporter = Reporter(workdir, total_steps, start_step)
  progress = f'resuming from checkpoint at step {start_step} of' if start_step else 'training for'
  reporter.print(f'{progress} {total_steps} steps ({data.steps_per_epoch} per epoch) in {workdir}')
  train_step_fn = jax.jit(
      functools.partial(train_step, label_smoothing=config.train.label_smoothing,
                        aux_loss_weights=tuple(config.train.aux_loss_weights),
                        batch_norm_groups=(mesh.shape['data'] if config.train.batch_norm_per_device
                                           else 1)),
      in_shardings=(shardings, NamedSharding(mesh, P('data'))), out_shardings=(shardings, None),
      donate_argnums=0)
  batches = parallel.prefetch_to_mesh(data.train_batches(start_step), mesh)
  summed, summed_steps, timer, paused = None, 0, time.perf_counter(), 0.0

  for step in range(start_step + 1, total_steps + 1):  # `step` counts steps done, as state.step
    state, metrics = train_step_fn(state, next(batches))
    summed = metrics if summed is None else jax.tree.map(jnp.add, summed, metrics)
    summed_steps += 1
    reporter.advance()

    if step % config.train.log_every_steps == 0 or step == total_steps:
      means = {k: float(v) / summed_steps for k, v in jax.device_get(summed).items()}
      seconds = time.perf_counter() - timer - paused
      reporter.write({'step': step, 'split': 'train', **means,
                      'learning_rate': optim.current_learning_rate(run.schedule, state.opt_state, step),
                      'images_per_sec': summed_steps * config.train.batch_size / seconds,
                      'epoch': step / data.steps_per_epoch})
      summed, summed_steps, timer, paused = None, 0, time.perf_counter(), 0.0

    evaluating = step % run.steps_per_eval == 0 or step == total_steps
    saving = step % config.checkpoint.every_steps == 0 or step == total_steps
    if evaluating or saving:  # not counted as training time, once queued steps have finished
      jax.block_until_ready(state)
    pause_start = time.perf_counter()
    if evaluating:
      final = {'step': step, 'split': 'eval', **evaluate(run.eval_step, state, data, mesh)}
      reporter.write(final)
      state = state.replace(eval_error=parallel.replicate(jnp.float32(1 - final['top1']), mesh))
    if saving:
      checkpoints.save(state)
    paused += time.perf_counter() - pause_start

  checkpoints.close()
  reporter.close()
  print(_final_line(final, workdir))
  return final
