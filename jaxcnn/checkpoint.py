"""A run's saved states: orbax checkpoints under WORKDIR/checkpoints, one directory per step.

The state holds the step, params, batch_stats, optimizer state, the dropout key and the
latest eval error; the data position follows from the step (see jaxcnn/data/pipeline.py).
`restore(..., partial=True)` reads only some fields, say a trained model's step, params and
batch_stats, for use without a trainer. A converted run (jaxcnn.convert) saves only those
three: a model to use or to start from (config.init_from), not a training run to resume.
Saves are asynchronous; orbax writes each into a temporary directory and renames it when
complete, so a killed run never leaves a half-written checkpoint that a restore would pick.
A checkpoint damaged afterwards (a truncated file) is skipped with a warning, and a writable
`Checkpoints` moves it to WORKDIR/unreadable_checkpoints/ so that nothing is deleted.
"""

import contextlib
import dataclasses
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint._src.metadata import array_metadata_store

from jaxcnn.errors import UserError, WriteError, reason, warn
from jaxcnn.rundir import CHECKPOINTS as DIRECTORY


def saved_steps(workdir: str) -> list[int]:
  """The steps of the committed checkpoints in `workdir`, ascending. orbax writes a checkpoint
  under a temporary name and renames it to its step when complete, so only those count."""
  directory = os.path.join(workdir, DIRECTORY)
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(name) for name in names if name.isdigit())


def last_good(workdir: str) -> str:
  """Where a stopped run stands: its latest committed checkpoint, in words."""
  steps = saved_steps(workdir)
  return (f'the last good checkpoint, step {steps[-1]}, is in '
          f'{os.path.join(os.path.abspath(workdir), DIRECTORY)}' if steps
          else 'no checkpoint had been saved before it')


def _warn(message: str) -> None:
  if jax.process_index() == 0:
    warn(message)


def _field_names(state) -> set[str]:
  """The fields of a state: a dict's keys, or a dataclass's (TrainState's) fields."""
  return set(state) if isinstance(state, dict) else {f.name for f in dataclasses.fields(state)}


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """orbax's handler of a state, as its default but that each array is written whole from its
  first replica, as orbax already does on GPUs. Its CPU default splits a replicated array
  among the devices that hold it, with an eagerly compiled slice per array and device: on 8
  CPU devices, 16 s of the 90 that tests/parallel_worker.py takes."""
  handlers = ocp.type_handlers
  arrays = handlers.ArrayHandler(use_replica_parallel=False,
                                 array_metadata_store=array_metadata_store.Store())
  registry = handlers.create_type_handler_registry(
      *[(scalar, handlers.ScalarHandler()) for scalar in (int, float, bytes, np.number)],
      (np.ndarray, handlers.NumpyHandler()), (str, handlers.StringHandler()), (jax.Array, arrays))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


class Checkpoints:
  """The checkpoints of one workdir. `create=False` only reads and never creates anything."""

  def __init__(self, workdir: str, keep: int = 3, create: bool = True):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, DIRECTORY)
    self.writable = create
    self.unconfirmed_step = None  # of the save under way, if any
    if not create and not os.path.isdir(self.directory):
      raise UserError(f'{workdir} has no checkpoints/ directory: no checkpoint was saved there')
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create),
        item_handlers={'state': _state_handler()})

  def latest_step(self) -> int | None:
    return max(self.all_steps(), default=None)

  def last_good(self) -> str:
    return last_good(self.workdir)

  def all_steps(self) -> list[int]:
    return saved_steps(self.workdir)

  @contextlib.contextmanager
  def _saving(self, step: int):
    """Turns orbax's failure to save `step` (a full disk, a lost permission: tensorstore's
    errors come as several types) into a WriteError."""
    try:
      yield
    except Exception as e:  # noqa: BLE001
      raise WriteError(f'saving the checkpoint in {self.directory}', step, reason(e)) from None

  def save(self, state) -> None:
    """Starts saving a TrainState, or a dict of some of its fields (a converted run's step,
    params and batch_stats), in the background. Raises WriteError if this save, or the one
    before it, fails."""
    step = int(state['step'] if isinstance(state, dict) else state.step)
    if step in self.all_steps():
      return
    self.wait()  # orbax waits for the previous save anyway; its failure is reported as its own
    with self._saving(step):
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
    self.unconfirmed_step = step

  def wait(self) -> None:
    """Blocks until every save so far is committed; raises WriteError if one failed."""
    step, self.unconfirmed_step = self.unconfirmed_step, None
    with self._saving(step):
      # orbax keeps a failed save's error in two places (the save's finalizing thread and the
      # checkpointer) and raises each once: take both now, so that closing is clean later.
      failures = []
      for check in (self.manager.wait_until_finished, self.manager.check_for_errors):
        try:
          check()
        except Exception as e:  # noqa: BLE001
          failures.append(e)
      if failures:
        raise failures[0]

  def _saved_fields(self, step: int) -> set[str]:
    path = epath.Path(self.directory) / str(step) / 'state'
    return set(ocp.StandardCheckpointHandler().metadata(path).keys())

  def _restore_step(self, like, step: int, partial: bool):
    if not partial and 'opt_state' in _field_names(like) - self._saved_fields(step):
      raise UserError(f"checkpoint at step {step} in {self.directory} holds a model's variables "
                      'but no optimizer state (a converted run): it cannot be resumed; train '
                      f'from it in another --workdir with --config.init_from={self.workdir}')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    # partial: a dict of some of the saved state's fields; only those are read.
    args = ocp.args.PyTreeRestore(
        abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=partial)
    # A damaged file fails in several of orbax's coroutines at once; the first failure is
    # raised here, and the others' tracebacks would only bury the one-line warning.
    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=args))
    finally:
      sys.unraisablehook = hook
    return restored.state

  def restore(self, like, step: int | None = None, partial: bool = False):
    """The state saved at `step`, laid out like the state `like` (arrays or ShapeDtypeStructs
    with shardings). With `partial`, `like` is a dict of some of the state's fields, say
    {'step', 'params', 'batch_stats'}, and only those are read.

    With step None: the latest readable checkpoint; unreadable later ones are skipped with
    a warning (and set aside when writable). Raises UserError when there is none to read.
    """
    steps = self.all_steps()
    if not steps:
      raise UserError(f'no checkpoint in {self.directory}')
    if step is not None:
      if step not in steps:
        raise UserError(f'no checkpoint at step {step} in {self.directory}; saved steps: '
                        f"{', '.join(map(str, steps))}")
      try:
        return self._restore_step(like, step, partial)
      except UserError:
        raise
      except Exception as e:  # noqa: BLE001  (orbax and tensorstore raise many kinds)
        raise UserError(f'checkpoint at step {step} in {self.directory} is unreadable '
                        f'({reason(e)}); pick another step: {steps}') from None
    for candidate in reversed(steps):
      try:
        return self._restore_step(like, candidate, partial)
      except UserError:  # a checkpoint of another kind, not a damaged one
        raise
      except Exception as e:  # noqa: BLE001
        where = self._set_aside(candidate) if self.writable else 'left in place'
        _warn(f'checkpoint at step {candidate} is unreadable ({reason(e)}); skipped it '
              f'({where})')
    raise UserError(f'no readable checkpoint in {self.directory} (steps {steps} all failed); '
                    'start over in a new --workdir')

  def _set_aside(self, step: int) -> str:
    """Moves a bad checkpoint out of orbax's directory, so the step can be saved again."""
    self.manager.wait_until_finished()
    target = os.path.join(self.workdir, 'unreadable_checkpoints', str(step))
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.rmtree(target, ignore_errors=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:  # every process must see the move before it reloads
      multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    self.manager.reload()
    return f'moved to {target}'

  def close(self) -> None:
    """Waits for the last save (WriteError if it failed) and stops orbax's threads."""
    try:
      self.wait()
    finally:
      self.manager.close()

  def __enter__(self):
    return self

  def __exit__(self, error_type, *_):
    """Closes; after a run that failed, a second failure would only hide the first. A failed
    run of several processes leaves at once (jaxcnn/multihost.py): a save under way may be
    waiting for a process that is lost."""
    if error_type is None:
      self.close()
    elif jax.process_count() == 1:
      with contextlib.suppress(WriteError):
        self.close()
