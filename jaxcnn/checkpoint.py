"""Checkpoints of the whole train state under WORKDIR/checkpoints, with orbax.

The state holds the step, params, batch_stats, optimizer state, the dropout key and the
latest eval error; the data position follows from the step (see jaxcnn/data/pipeline.py).
Saves are asynchronous; orbax commits each one atomically, so a killed run never leaves a
half-written checkpoint that a restore would pick.
"""

import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=('state',))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state) -> None:
    step = int(state.step)
    if step not in self.manager.all_steps():
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

  def restore(self, like, step: int | None = None):
    """The state saved at `step` (default: latest), laid out like the state `like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return restored.state

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
