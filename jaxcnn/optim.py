"""SGD as the classic papers ran it, and the learning-rate schedules they used.

AlexNet's update folds weight decay and the learning rate into the momentum buffer:
    v <- momentum * v - lr * (grad + weight_decay * w);   w <- w + v
so the chain is: add decay -> scale by -lr -> (reduce on plateau) -> momentum trace. Putting
the learning rate inside the trace means a schedule change does not rescale the momentum
already accumulated, exactly as in the paper's equation.
"""

import jax
import optax

SCHEDULES = ('constant', 'multistep', 'plateau', 'cosine')


def learning_rate_schedule(opt, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  if opt.schedule in ('constant', 'plateau'):
    return optax.constant_schedule(opt.learning_rate)
  if opt.schedule == 'multistep':
    factors = {}  # milestones that round to one step (a short run) compound there
    for milestone in opt.milestones:
      step = round(milestone * total_steps)
      factors[step] = factors.get(step, 1.0) * opt.decay_factor
    return optax.piecewise_constant_schedule(opt.learning_rate, factors)
  if opt.schedule == 'cosine':
    warmup_steps = round(opt.warmup_epochs * steps_per_epoch)
    return optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, warmup_steps, total_steps)
  raise ValueError(f"unknown optimizer.schedule '{opt.schedule}'; known: {', '.join(SCHEDULES)}")


def create_optimizer(opt, schedule: optax.Schedule, steps_per_eval: int):
  """The optimizer; with the plateau schedule, `update` takes `value=` the latest eval error."""
  parts = [optax.add_decayed_weights(opt.weight_decay), optax.scale_by_learning_rate(schedule)]
  if opt.schedule == 'plateau':
    # Fed the latest validation error at every step and averaged over one evaluation period,
    # so each evaluation counts once towards the patience.
    parts.append(optax.contrib.reduce_on_plateau(
        factor=opt.decay_factor, patience=opt.plateau_patience,
        accumulation_size=steps_per_eval, min_scale=opt.plateau_min_scale))
  parts.append(optax.trace(decay=opt.momentum, nesterov=opt.nesterov))
  return optax.chain(*parts)


def current_learning_rate(schedule: optax.Schedule, opt_state, step) -> float:
  """The learning rate the next step uses: the schedule times any plateau reduction."""
  is_plateau = lambda node: isinstance(node, optax.contrib.ReduceLROnPlateauState)
  plateaus = [s for s in jax.tree.leaves(opt_state, is_leaf=is_plateau) if is_plateau(s)]
  return float(schedule(step) * (plateaus[0].scale if plateaus else 1.0))
