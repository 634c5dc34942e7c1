"""Training and evaluation: everything a run derives from its config, and the loop.

`train_and_evaluate(config, workdir)` trains from scratch (or from another run's weights,
config.init_from: jaxcnn/init_from.py), or resumes from the latest checkpoint in `workdir`,
and returns the final eval metrics. `setup(config)` builds, in this order, what a run needs:
the checked config, the device mesh, the data (the in-memory path's on the mesh), the model,
the optimizer, a fresh train state, and its placement on the mesh with the jit-compiled steps.
"""

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxcnn import config as config_lib
from jaxcnn import data as input_data
from jaxcnn import init_from, library_log, models, multihost, optim, parallel, rundir, steps
from jaxcnn import tuning
from jaxcnn import validate
from jaxcnn.checkpoint import Checkpoints
from jaxcnn.data.in_memory import InMemoryData
from jaxcnn.errors import UserError, WriteError, writing
from jaxcnn.preemption import StopRequests
from jaxcnn.reporting import Reporter, read_metrics


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
  state: steps.TrainState  # freshly initialized, placed on the mesh
  shardings: steps.TrainState  # of `state`
  total_steps: int
  steps_per_eval: int
  train_step: Any  # jit-compiled train_step on a batch, with the config's options; donates state
  loop_step: Any  # what the loop runs on each of loop_inputs(...): train_step, or in memory fused
  eval_step: Any  # jit-compiled eval_step
  conv_choices: dict  # the convolution formulations both steps run (jaxcnn/tuning.py)


def setup(config, data=None, abstract: bool = False) -> Setup:
  """Everything but the steps, for a config that validate.check_config has passed; a
  UserError (one line) for what only the data, the model or the devices can tell is wrong.

  `data`: a data source to use instead of the config's (bench's synthetic stand-in for a
  dataset that is not prepared). `abstract`: the state as shapes with their shardings
  (jax.eval_shape), neither computed nor on the devices, for lowering the steps alone
  (jax.export, tests/test_export.py).

  Several processes must have started JAX's distributed runtime first
  (parallel.initialize_distributed), since the data each process reads depends on it.
  """
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model)
  data = data or input_data.create(config, mesh=mesh)
  # Its layers' options are checked when create_train_state traces it: once, not twice.
  model = models.build_model(config, data.num_classes, data.channels, check_layers=False)
  parallel.check_fits(config, model, mesh)
  total_steps = config_lib.total_steps(config, data.steps_per_epoch)
  steps_per_eval = config.eval.every_steps or data.steps_per_epoch
  schedule = optim.learning_rate_schedule(config.optimizer, total_steps, data.steps_per_epoch)
  tx = optim.create_optimizer(config.optimizer, schedule, steps_per_eval)
  size = config.data.image_size
  fresh_state = functools.partial(steps.create_train_state, config, model, tx,
                                  (1, size, size, data.channels))
  state = jax.eval_shape(fresh_state) if abstract else fresh_state()
  placed = parallel.place(model, state, mesh)
  conv_choices = _conv_choices(config, placed, data.channels)
  train_step, eval_step = jit_steps(config, placed.mesh, placed.shardings, conv_choices)
  loop_step = jit_loop_step(config, data, placed.mesh, placed.shardings, conv_choices,
                            train_step)
  return Setup(placed.mesh, data, schedule, placed.state, placed.shardings, total_steps,
               steps_per_eval, train_step, loop_step, eval_step, conv_choices)


def _train_step(config, mesh):
  """steps.train_step with the config's options."""
  batch_norm_groups = mesh.shape['data'] if config.train.batch_norm_per_device else 1
  return functools.partial(steps.train_step, label_smoothing=config.train.label_smoothing,
                           aux_loss_weights=tuple(config.train.aux_loss_weights),
                           batch_norm_groups=batch_norm_groups)


def jit_steps(config, mesh, shardings, conv_choices: dict) -> tuple[Any, Any]:
  """The jit-compiled train step (which donates the state) and eval step of a run on `mesh`
  whose state has `shardings`, running the convolution formulations `conv_choices`."""
  batch_sharding = parallel.batch_sharding(mesh)
  train_step = jax.jit(
      functools.partial(_train_step(config, mesh), conv_choices=conv_choices),
      in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
      donate_argnums=0)
  eval_step = jax.jit(functools.partial(steps.eval_step, conv_choices=conv_choices),
                      in_shardings=(shardings, batch_sharding))
  return train_step, eval_step


def jit_loop_step(config, data, mesh, shardings, conv_choices: dict, train_step):
  """The step the loop runs on each item of loop_inputs: `train_step` itself, or on the
  in-memory path one program that makes the step's batch on the devices and takes the step.
  One program a step, not two, saves a launch, and on CPUs keeps the batch's program from
  competing with the step for the cores (LeNet on digits, 2-core EPYC: the loop at 86% of
  the bare step with two programs, 99% with one). The step's number, which picks the batch,
  is the state's, so nothing goes from the host to the devices a step."""
  if not isinstance(data, InMemoryData):
    return train_step
  step = functools.partial(_train_step(config, mesh), conv_choices=conv_choices)

  def train_step_making_its_batch(state, arrays):
    return step(state, data.make_train_batch(*arrays, state.step))
  return jax.jit(train_step_making_its_batch,
                 in_shardings=(shardings, NamedSharding(mesh, P())),  # the arrays are replicated
                 out_shardings=(shardings, None), donate_argnums=0)


def loop_inputs(data, mesh, start_step: int):
  """What the loop's step takes, step after step from `start_step` on: the batch, on the
  devices (the next ones already on their way), or the in-memory path's arrays that the batch
  is made from."""
  if isinstance(data, InMemoryData):
    return data.train_inputs(start_step)
  return parallel.prefetch_to_mesh(data.train_batches(start_step), mesh)


def _conv_choices(config, placed, channels: int) -> dict:
  """How this run's convolutions are computed: tuned on a CPU with one device when
  train.conv_tuning is on (jaxcnn/tuning.py), else XLA's everywhere."""
  if not (config.train.conv_tuning and placed.mesh.devices.size == 1
          and jax.default_backend() == 'cpu'):
    return {}
  image = lambda batch, *views: jax.ShapeDtypeStruct(
      (batch, *views, config.data.image_size, config.data.image_size, channels), jnp.float32)
  labels = lambda batch: jax.ShapeDtypeStruct((batch,), jnp.int32)
  eval_batch = config.eval.batch_size
  views = (config.eval.crops,) if config.eval.crops > 1 else ()
  train_batch = config.train.batch_size
  return tuning.choose(tuning.geometries(
      (_train_step(config, placed.mesh), placed.state, {'image': image(train_batch),
                                                        'label': labels(train_batch)}),
      (steps.eval_step, placed.state, {'image': image(eval_batch, *views),
                                       'label': labels(eval_batch),
                                       'mask': jax.ShapeDtypeStruct((eval_batch,), bool)})))


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Eval metrics of the checkpoint at `step` (default: latest) of `workdir`, on the mesh
  and processes that `config` gives, whichever mesh wrote it."""
  validate.check_config(config)
  parallel.initialize_distributed(config.distributed)
  run = setup(config)
  checkpoints = Checkpoints(workdir, create=False)
  try:  # what evaluation needs, so that a converted run (no optimizer state) evaluates too
    saved = checkpoints.restore({'step': run.state.step, 'params': run.state.params,
                                 'batch_stats': run.state.batch_stats}, step, partial=True)
  finally:
    checkpoints.close()
  state = run.state.replace(**saved)
  return {'step': int(state.step), 'split': 'eval',
          **evaluate(run.eval_step, state, run.data, run.mesh)}


@contextlib.contextmanager
def _opened_workdir(config, workdir: str, start_over: bool):
  """Holds the workdir's lock for the block (process 0 takes it for all processes), with the
  libraries' log lines going to the workdir."""
  lock, aside, problem = contextlib.nullcontext(), None, None
  if jax.process_index() == 0:
    try:
      lock, aside = rundir.open_workdir(config, workdir, start_over)
    except UserError as e:
      problem = e
  if jax.process_count() > 1:  # the others wait for process 0's lock, or fail with it
    failed = multihost_utils.broadcast_one_to_all(np.int32(problem is not None))
    if failed and problem is None:
      raise UserError(f'process 0 could not open workdir {workdir}; its error line says why')
  if problem:
    raise problem
  if aside:
    print(f'moved the previous run in {workdir} to {aside}')
  log = os.path.join(workdir, library_log.file_name(jax.process_index()))
  with lock, library_log.to_file(log):
    yield


def _stop_if_nonfinite(first_nonfinite_step: int, checkpoints: Checkpoints) -> None:
  if first_nonfinite_step == steps.NO_NONFINITE_STEP:
    return
  checkpoints.wait()
  raise UserError(f'the loss or the parameters became non-finite (NaN or inf) at step '
                  f'{first_nonfinite_step}; nothing after it was saved and '
                  f'{checkpoints.last_good()}; lower optimizer.learning_rate, or pass '
                  '--config.train.skip_nonfinite_steps=True to skip such steps')


def train_and_evaluate(config, workdir: str, start_over: bool = False,
                       after_record: Callable[[], None] | None = None) -> dict:
  """Trains, or resumes from the latest readable checkpoint in `workdir`; returns the final
  eval metrics ({} when a signal stopped the run early, after saving a checkpoint).
  `after_record` runs after each train record, outside the records' time (the bench times the
  bare step there, so that the loop and the step see the same machine)."""
  validate.check_config(config)
  parallel.initialize_distributed(config.distributed)
  with multihost.ends_together(workdir):
    rundir.check_workdir(config, workdir, start_over, lock_holder=jax.process_index() == 0)
    multihost.check_shared_workdir(workdir)
    run = setup(config)
    with _opened_workdir(config, workdir, start_over):
      try:
        with Checkpoints(workdir, config.checkpoint.keep) as checkpoints:
          return _train(config, workdir, run, checkpoints, after_record)
      except WriteError as e:  # a full disk, a lost permission: earlier checkpoints are intact
        raise UserError(f'{e}; {checkpoints.last_good()}; free space or restore write '
                        'permission there, lower checkpoint.keep, or pass another --workdir, '
                        'then rerun the same command to resume') from None


def _train(config, workdir: str, run: Setup, checkpoints: Checkpoints,
           after_record: Callable[[], None] | None) -> dict:
  mesh, data, total_steps = run.mesh, run.data, run.total_steps
  if checkpoints.all_steps():
    state = checkpoints.restore(run.state)
  elif config.init_from:
    state = init_from.start_from(config.init_from, run.state, run.shardings, data.num_classes)
  else:
    state = run.state
  start_step = int(state.step)
  if start_step >= total_steps:
    evals = [r for r in read_metrics(workdir) if r['split'] == 'eval']
    final = evals[-1] if evals else {}
    print(f'run already finished at step {start_step} of {total_steps}; nothing to do. '
          + (_final_line(final, workdir) if final else f'workdir {workdir}'))
    return final
  if start_step == 0 and jax.process_index() == 0:
    with writing(f'writing {os.path.join(workdir, rundir.CONFIG_FILE)}', 0):
      rundir.write_run_config(workdir, config)

  reporter = Reporter(workdir, total_steps, start_step)
  progress = f'resuming from checkpoint at step {start_step} of' if start_step else 'training for'
  reporter.print(f'{progress} {total_steps} steps ({data.steps_per_epoch} per epoch) in {workdir}')
  inputs = loop_inputs(data, mesh, start_step)
  log_every = config.train.log_every_steps
  timed_steps, timer, paused = 0, time.perf_counter(), 0.0
  final = {}

  with StopRequests(config.train.stop_grace_seconds) as stop, reporter:
    for step in range(start_step + 1, total_steps + 1):  # `step` counts steps done, as state.step
      state, _ = run.loop_step(state, next(inputs))
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
        state = state.replace(metric_sums=parallel.replicate(steps.zero_metric_sums(), mesh))
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
      if logging and after_record:
        after_record()
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

  checkpoints.wait()  # the final checkpoint is committed before the run says it is done
  print(_final_line(final, workdir))
  return final
