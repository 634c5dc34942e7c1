"""The jit-compiled math of training: the train state, the loss, one train step, one eval step.

`train_step` and `eval_step` are pure functions of (state, batch); jaxcnn/train.py compiles
them over the device mesh and runs them in its loop.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jaxcnn import models
from jaxcnn.data.recipes import CENTER_VIEW
from jaxcnn.errors import UserError
from jaxcnn.models import conv


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


def create_train_state(config, model, tx, input_shape) -> TrainState:
  """A fresh state of `model`, initialized from `config.seed`, with optimizer `tx`."""
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  with models.layer_errors(config.model.name):  # the model's first trace in training
    variables = jax.jit(functools.partial(model.init, train=False))(init_key,
                                                                    jnp.zeros(input_shape))
  params = variables['params']
  # What TrainState.create does, with the optimizer's state made by one program: eagerly,
  # each leaf's shape compiled its own (GoogLeNet: 3 s instead of 0.5).
  return TrainState(
      step=0, apply_fn=model.apply, params=params, tx=tx, opt_state=jax.jit(tx.init)(params),
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


def label_rank(logits, labels) -> jax.Array:
  """The place of each example's label among its logits, from 0 (top-k correct: rank < k).

  Ties and NaNs order as `lax.top_k` orders them (IEEE total order, then the lower index
  first), but with compares instead of a sort: on CPU, top-1 and top-5 of 128 x 1000 logits
  by `lax.top_k` took 0.9 ms, about 2% of a LeNet-5 step, and this takes under 0.1.
  """
  int_dtype = jnp.dtype(f'int{jnp.finfo(logits.dtype).bits}')
  bits = jax.lax.bitcast_convert_type(logits, int_dtype)
  keys = bits ^ ((bits >> (int_dtype.itemsize * 8 - 1)) & jnp.iinfo(int_dtype).max)
  label_keys = jnp.take_along_axis(keys, labels[:, None], axis=-1)
  classes = jnp.arange(logits.shape[-1])
  ahead = (keys > label_keys) | ((keys == label_keys) & (classes < labels[:, None]))
  return jnp.sum(ahead, axis=-1)


def traced_with_conv_choices(step):
  """Gives `step` a `conv_choices` keyword: the convolution formulations it is traced with
  (jaxcnn/tuning.py picks them; without, XLA's convolutions)."""

  @functools.wraps(step)
  def traced(*args, conv_choices=None, **kwargs):
    with conv.using(conv_choices or {}):
      return step(*args, **kwargs)

  return traced


@traced_with_conv_choices
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
  # The state keeps its dtypes (float64 compute would promote the running statistics), and one
  # branch picks the whole state: a select per leaf compiles DenseNet-121's step in 190 s on
  # XLA:CPU instead of 30.
  stepped = jax.tree.map(lambda new, old: new.astype(old.dtype), stepped, state)
  state = jax.lax.cond(finite, lambda: stepped, lambda: state)
  rank = label_rank(logits, batch['label'])
  metrics = {'loss': jnp.where(finite, loss, 0.0),
             'top1': jnp.where(finite, (rank < 1).mean(), 0.0),
             'top5': jnp.where(finite, (rank < 5).mean(), 0.0),
             'nonfinite_steps': 1 - finite.astype(jnp.int32)}
  state = state.replace(
      step=state.step + 1, metric_sums=jax.tree.map(jnp.add, state.metric_sums, metrics),
      first_nonfinite_step=jnp.where(finite, state.first_nonfinite_step,
                                     jnp.minimum(state.first_nonfinite_step, state.step + 1)))
  return state, metrics


@traced_with_conv_choices
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
    center_rank = label_rank(views[CENTER_VIEW], labels)
    sums['center_top1'] = jnp.sum((center_rank < 1) & mask)
    sums['center_top5'] = jnp.sum((center_rank < 5) & mask)
    # log of the mean softmax: log-probabilities are logits whose softmax is themselves
    logits = jax.nn.logsumexp(jax.nn.log_softmax(views), axis=0) - jnp.log(views.shape[0])
  else:
    logits = apply(batch['image'])
  rank = label_rank(logits, labels)
  return {'loss': jnp.sum(cross_entropy(logits, labels) * mask),
          'top1': jnp.sum((rank < 1) & mask),
          'top5': jnp.sum((rank < 5) & mask),
          **sums, 'num_examples': jnp.sum(mask)}
