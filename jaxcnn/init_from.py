"""config.init_from: a run that starts from another run's weights (a run converted by
jaxcnn.convert, or any trained run) with its own fresh optimizer, at step 0: fine-tuning.

Every params and batch_stats tensor comes from the other run's latest checkpoint, but for the
classifiers when the number of classes differs: a tensor whose shape differs from the saved
one only in its last axis, the saved one's being the other run's number of classes and this
one's this run's, keeps its fresh initialization. Any other difference (another architecture,
another width) is refused in one line that names the first differing tensor.
"""

import jax
from flax import traverse_util

from jaxcnn import parallel, restored
from jaxcnn.data.datasets import dataset_spec
from jaxcnn.errors import UserError


def _name(path: tuple[str, ...]) -> str:
  return '/'.join(path)


def merged_variables(fresh: dict, num_classes: int, workdir: str) -> tuple[dict, list[str]]:
  """`fresh` ({'params', 'batch_stats'} of this run's model, for `num_classes` classes) with
  every tensor taken from the run in `workdir` but the classifiers that keep their fresh
  initialization; and the names of those."""
  try:
    source = restored.restore(workdir)
  except UserError as e:  # it names the workdir, not the option that gave it
    raise UserError(f'--config.init_from={workdir}: {e}') from None
  source_classes = dataset_spec(source.config.data.name).num_classes
  saved = traverse_util.flatten_dict({key: source.variables.get(key, {}) for key in fresh})
  ours = traverse_util.flatten_dict(fresh)
  refused = f"--config.init_from={workdir} does not fit this run's model"
  extra = [path for path in saved if path not in ours]
  if extra:
    raise UserError(f"{refused}: it has a tensor {_name(extra[0])}, which this model has not "
                    f'({source.config.model.name} there, another architecture?)')
  merged, fresh_kept = {}, []
  for path, value in ours.items():
    if path not in saved:
      raise UserError(f'{refused}: it lacks the tensor {_name(path)} ({source.config.model.name} '
                      'there, another architecture?)')
    shape, saved_shape = tuple(value.shape), tuple(saved[path].shape)
    if shape == saved_shape:
      merged[path] = saved[path]
    elif (shape[:-1], shape[-1:], saved_shape[-1:]) == (saved_shape[:-1], (num_classes,),
                                                       (source_classes,)):
      merged[path] = value  # a classifier, for this run's classes
      fresh_kept.append(_name(path))
    else:
      raise UserError(f'{refused}: its tensor {_name(path)} has shape {saved_shape} where this '
                      f'model has {shape}; start from a run of the same model')
  return traverse_util.unflatten_dict(merged), fresh_kept


def start_from(workdir: str, state, shardings, num_classes: int):
  """The fresh train `state` (placed with `shardings`) with the variables of the run in
  `workdir` (merged_variables), placed as the fresh ones are."""
  variables, fresh_kept = merged_variables(
      {'params': state.params, 'batch_stats': state.batch_stats}, num_classes, workdir)
  if jax.process_index() == 0:
    kept = f"; kept fresh for this run's {num_classes} classes: {', '.join(fresh_kept)}"
    print(f'starting from the weights of {workdir}' + (kept if fresh_kept else ''))
  return state.replace(
      params=parallel.put(variables['params'], shardings.params),
      batch_stats=parallel.put(variables['batch_stats'], shardings.batch_stats))
