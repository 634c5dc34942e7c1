"""Training and evaluation: the train state, the jit-compiled steps, and the loop.

`train_and_evaluate(config, workdir)` trains from scratch, or resumes from the latest
checkpoint in `workdir`, and returns the final eval metrics.
"""

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcnn import data as input_data
from jaxcnn import optim, parallel, validate
from jaxcnn.checkpoint import Checkpoints, read_run_config, write_run_config
from jaxcnn.data.recipes import CENTER_VIEW
from jaxcnn.errors import UserError
from jaxcnn.preemption import StopRequests
from jaxcnn.reporting import Reporter, read_metrics


NO_NONFINITE_STEP = jnp.iinfo(jnp.int32).max  # what `first_nonfinite_step` holds while all is well


class TrainState(train_state.TrainState):
  batch_stats: Any
  dropout_key: jax.Array  # raw key data; step k uses fold_in(key, k), so resuming is exact
  eval_error: jax.Array  # latest eval top-1 error: what the plateau schedule watches
  # Train metrics summed since the last train record; in the checkpoint, so that a resumed
  # run writes the same records as an uninterrupted one.
  metric_sums: dict[str, jax.Array]
  first_nonfinite_step: jax.Array  # NO_NONFINITE_STEP until a step's loss or state is not


def zero_metric_sums() -> dict[str, jax.Array]:
  return {'loss': jnp.float32(0), 'top1': jnp.float32(0), 'top5': jnp.float32(0),
          'nonfinite_steps': jnp.int32(0)}


def create_train_state(config, model, tx, input_shape, apply_fn=None) -> TrainState:
  """A fresh state; `apply_fn` (default `model.apply`) is how train and eval steps run it."""
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  variables = jax.jit(functools.partial(model.init, train=False))(init_key, jnp.zeros(input_shape))
  return TrainState.create(
      apply_fn=apply_fn or model.apply, params=variables['params'], tx=tx,
      batch_stats=variables.get('batch_stats', {}),
      dropout_key=jax.random.key_data(dropout_key), eval_error=jnp.ones((), jnp.float32),
      metric_sums=zero_metric_sums(), first_nonfinite_step=jnp.int32(NO_NONFINITE_STEP))


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
  stepped = state.replace(params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state, batch_stats=batch_stats)
  # A step whose loss or new state is not finite leaves the state as it was (but for the step
  # count), so a non-finite state never exists to be saved; the loop decides to stop or go on.
  finite = jnp.isfinite(loss)
  for leaf in jax.tree.leaves((stepped.params, stepped.batch_stats)):
    finite &= jnp.all(jnp.isfinite(leaf))
  state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), stepped, state)
  metrics = {'loss': jnp.where(finite, loss, 0.0),
             'top1': jnp.where(finite, top_k_correct(logits, batch['label'], 1).mean(), 0.0),
             'top5': jnp.where(finite, top_k_correct(logits, batch['label'], 5).mean(), 0.0),
             'nonfinite_steps': 1 - finite.astype(jnp.int32)}
  state = state.replace(
      step=state.step + 1, metric_sums=jax.tree.map(jnp.add, state.metric_sums, metrics),
      first_nonfinite_step=jnp.where(finite, state.first_nonfinite_step,
                                     jnp.minimum(state.first_nonfinite_step, state.step + 1)))
  return state, metrics


def eval_step(state: TrainState, batch):
  """Sums over the real (mask=True) examples of a batch; running statistics stay frozen.

  Images [B, V, S, S, C] (eval.crops=V: 5 or 10) are V views of each example: its loss,
  top-1 and top-5 are those of the mean of the V softmaxes, and `center_top1`,
  `center_top5` those of the centre crop alone.
  """
  apply = lambda images: state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats}, images, train=False)
  labels, mask = batch['label'], batch['mask']
  sums = {}
  if batch['image'].ndim == 5:
    views = jax.lax.map(apply, jnp.moveaxis(batch['image'], 1, 0))  # one view at a time
    center = views[CENTER_VIEW]
    sums['center_top1'] = jnp.sum(top_k_correct(center, labels, 1) & mask)
    sums['center_top5'] = jnp.sum(top_k_correct(center, labels, 5) & mask)
    # log of the mean softmax: log-probabilities are logits whose softmax is themselves
    logits = jax.nn.logsumexp(jax.nn.log_softmax(views), axis=0) - jnp.log(views.shape[0])
  else:
    logits = apply(batch['image'])
  return {'loss': jnp.sum(cross_entropy(logits, labels) * mask),
          'top1': jnp.sum(top_k_correct(logits, labels, 1) & mask),
          'top5': jnp.sum(top_k_correct(logits, labels, 5) & mask),
          **sums, 'num_examples': jnp.sum(mask)}


def evaluate(eval_step_fn, state, data, mesh) -> dict:
  """The eval metrics over every example of the eval split, each counted once: loss, top1,
  top5 and num_examples; with several crops per example also `crops` and the centre crop's
  center_top1 and center_top5."""
  totals, crops = None, 1
  for batch in parallel.prefetch_to_mesh(data.eval_batches(), mesh):
    sums = eval_step_fn(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    crops = batch['image'].shape[1] if batch['image'].ndim == 5 else 1
  totals = jax.device_get(totals)
  count = int(totals['num_examples'])
  means = ('loss', 'top1', 'top5', 'center_top1', 'center_top5')
  return {**{key: float(totals[key]) / count for key in means if key in totals},
          'num_examples': count, **({'crops': crops} if crops > 1 else {})}


def _final_line(record: dict, workdir: str) -> str:
  percent = lambda key: f'{100 * record[key]:.2f}%'
  if 'crops' in record:  # the crops' mean and the centre crop side by side
    crops = f"{record['crops']}-crop"
    accuracy = (f"top-1 {percent('top1')} {crops}, {percent('center_top1')} centre crop "
                f"(top-5 {percent('top5')} {crops}, {percent('center_top5')} centre crop, ")
  else:
    accuracy = f"top-1 {percent('top1')} (top-5 {percent('top5')}, "
  return (f"final eval {accuracy}{record['num_examples']} examples, step {record['step']}); "
          f'workdir {workdir}')


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
  train_step: Any  # jit-compiled train_step, with the config's options; donates the state
  eval_step: Any  # jit-compiled eval_step


def setup(config) -> Setup:
  """Everything but the steps, for a config that validate.check_config has passed."""
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
  batch_sharding = NamedSharding(mesh, P('data'))
  train_step_fn = jax.jit(
      functools.partial(train_step, label_smoothing=config.train.label_smoothing,
                        aux_loss_weights=tuple(config.train.aux_loss_weights),
                        batch_norm_groups=(mesh.shape['data'] if config.train.batch_norm_per_device
                                           else 1)),
      in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None), donate_argnums=0)
  eval_step_fn = jax.jit(eval_step, in_shardings=(shardings, batch_sharding))
  return Setup(mesh, data, schedule, jax.device_put(state, shardings), shardings, total_steps,
               steps_per_eval, train_step_fn, eval_step_fn)


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Eval metrics of the checkpoint at `step` (default: latest) of `workdir`, on the mesh
  and processes that `config` gives, whichever mesh wrote it."""
  validate.check_config(config)
  run = setup(config)
  checkpoints = Checkpoints(workdir, create=False)
  state = checkpoints.restore(run.state, step)
  checkpoints.close()
  return {'step': int(state.step), 'split': 'eval',
          **evaluate(run.eval_step, state, run.data, run.mesh)}


def _open_workdir(config, workdir: str, start_over: bool) -> None:
  """Refuses a workdir it cannot write to, or whose checkpoints belong to a run of another
  config; `start_over` moves such a run aside to WORKDIR.replaced-TIME instead of refusing."""
  if os.path.isdir(os.path.join(workdir, 'checkpoints')):
    conflicts = validate.resume_conflicts(read_run_config(workdir), config)
    if conflicts and not start_over:
      raise UserError(f'workdir {workdir} holds a run with another config ({"; ".join(conflicts)}); '
                      'pass another --workdir, or --start_over to move that run aside')
    if start_over:
      aside = f"{workdir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
      if jax.process_index() == 0:
        os.rename(workdir, aside)
        print(f'moved the previous run in {workdir} to {aside}')
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices('start over')
  validate.check_workdir_writable(workdir)


def _stop_if_nonfinite(first_nonfinite_step: int, checkpoints: Checkpoints) -> None:
  if first_nonfinite_step == NO_NONFINITE_STEP:
    return
  checkpoints.wait()
  last = checkpoints.latest_step()
  good = (f'the last good checkpoint, step {last}, is in {checkpoints.directory}'
          if last is not None else 'no checkpoint had been saved before it')
  raise UserError(f'the loss or the parameters became non-finite (NaN or inf) at step '
                  f'{first_nonfinite_step}; nothing after it was saved and {good}; lower '
                  'optimizer.learning_rate, or pass --config.train.skip_nonfinite_steps=True '
                  'to skip such steps')


def train_and_evaluate(config, workdir: str, start_over: bool = False) -> dict:
  """Trains, or resumes from the latest readable checkpoint in `workdir`; returns the final
  eval metrics ({} when a signal stopped the run early, after saving a checkpoint)."""
  validate.check_config(config)
  parallel.initialize_distributed(config.distributed)
  _open_workdir(config, workdir, start_over)
  run = setup(config)
  mesh, data, total_steps = run.mesh, run.data, run.total_steps
  checkpoints = Checkpoints(workdir, config.checkpoint.keep)
  state = checkpoints.restore(run.state) if checkpoints.all_steps() else run.state
  start_step = int(state.step)
  if start_step >= total_steps:
    checkpoints.close()
    evals = [r for r in read_metrics(workdir) if r['split'] == 'eval']
    final = evals[-1] if evals else {}
    print(f'run already finished at step {start_step} of {total_steps}; nothing to do. '
          + (_final_line(final, workdir) if final else f'workdir {workdir}'))
    return final
  if start_step == 0:
    write_run_config(workdir, config)

  reporter = Reporter(workdir, total_steps, start_step)
  progress = f'resuming from checkpoint at step {start_step} of' if start_step else 'training for'
  reporter.print(f'{progress} {total_steps} steps ({data.steps_per_epoch} per epoch) in {workdir}')
  batches = parallel.prefetch_to_mesh(data.train_batches(start_step), mesh)
  log_every = config.train.log_every_steps
  timed_steps, timer, paused = 0, time.perf_counter(), 0.0
  final = {}

  with StopRequests() as stop, contextlib.closing(reporter), contextlib.closing(checkpoints):
    for step in range(start_step + 1, total_steps + 1):  # `step` counts steps done, as state.step
      state, _ = run.train_step(state, next(batches))
      timed_steps += 1
      reporter.advance()

      stopping = stop.should_stop(step, log_every)
      logging = step % log_every == 0 or step == total_steps
      evaluating = step % run.steps_per_eval == 0 or step == total_steps
      saving = step % config.checkpoint.every_steps == 0 or step == total_steps or stopping
      if not config.train.skip_nonfinite_steps and (logging or evaluating or saving):
        _stop_if_nonfinite(int(state.first_nonfinite_step), checkpoints)

      if logging:
        sums = jax.device_get(state.metric_sums)
        state = state.replace(metric_sums=parallel.replicate(zero_metric_sums(), mesh))
        skipped = int(sums.pop('nonfinite_steps'))
        counted = step - (step - 1) // log_every * log_every - skipped  # steps since the last record
        means = {k: float(v) / counted if counted else float('nan') for k, v in sums.items()}
        seconds = time.perf_counter() - timer - paused
        reporter.write({'step': step, 'split': 'train', **means, 'skipped_steps': skipped,
                        'learning_rate': optim.current_learning_rate(run.schedule, state.opt_state,
                                                                     step),
                        'images_per_sec': timed_steps * config.train.batch_size / seconds,
                        'epoch': step / data.steps_per_epoch})
        timed_steps, timer, paused = 0, time.perf_counter(), 0.0

      if evaluating or saving:  # not counted as training time, once queued steps have finished
        jax.block_until_ready(state)
      pause_start = time.perf_counter()
      if evaluating:
        final = {'step': step, 'split': 'eval', **evaluate(run.eval_step, state, data, mesh)}
        reporter.write(final)
        # The plateau schedule watches single-crop error, whatever eval.crops reports.
        top1 = final.get('center_top1', final['top1'])
        state = state.replace(eval_error=parallel.replicate(jnp.float32(1 - top1), mesh))
      if saving:
        checkpoints.save(state)
      paused += time.perf_counter() - pause_start
      if stopping:
        checkpoints.wait()
        reporter.print(f"stopped by {stop.signal_name or 'a signal to another process'} at step "
                       f'{step} of {total_steps}; the checkpoint of step {step} is saved in '
                       f'{checkpoints.directory}; rerun the same command to resume')
        return {}

  print(_final_line(final, workdir))
  return final
