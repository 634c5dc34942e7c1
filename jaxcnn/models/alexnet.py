"""AlexNet as in Krizhevsky, Sutskever and Hinton (2012).

The paper trained two towers on two GPUs. Here the towers are convolution groups: conv2, conv4
and conv5 have `feature_group_count=towers`, so each tower's filters read only its own half of
the channels, and LRN normalizes within a tower. conv3 and the dense layers read both towers.
At 227x227 with 1000 classes this is 60,965,224 parameters; `towers=1` gives the ungrouped net.
torchvision's layout (64/192/384/256/256, one tower, conv1 padded by 2, no LRN, 224x224) is
the same module with other fields: 61,100,840 parameters, with two more that make it compute
torchvision's function: `pooled_size=6` (its adaptive average pool to 6x6 before fc6, so that
inputs other than 224x224 still give fc6 its 9216 inputs) and `dropout_placement='inputs'`
(dropout on the inputs of fc6 and fc7, where the paper drops their outputs).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxcnn.models import register
from jaxcnn.models.layers import (GroupedConv, LocalResponseNorm, Window, activation,
                                  adaptive_avg_pool, smallest_input)

# The paper: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden dense
# layers (to give ReLUs positive inputs early), 0 elsewhere. 'he' (He et al., 2015: variance
# 2 / fan_in, zero biases) trains from the first step where the paper's init first idles.
_ONE_BIAS_LAYERS = ('conv2', 'conv4', 'conv5', 'fc6', 'fc7')
INITIALIZATIONS = ('paper', 'he')
# Which activations dropout zeroes: the outputs of fc6 and fc7 (the paper's section 4.2), or
# their inputs (torchvision's classifier: the pooled features and fc6's outputs).
DROPOUT_PLACEMENTS = ('outputs', 'inputs')


def _initializers(init: str, name: str):
  if init == 'he':
    return nn.initializers.he_normal(), nn.initializers.zeros
  if init == 'paper':
    bias = nn.initializers.ones if name in _ONE_BIAS_LAYERS else nn.initializers.zeros
    return nn.initializers.normal(stddev=0.01), bias
  raise ValueError(f"unknown model.initialization '{init}'; known: {', '.join(INITIALIZATIONS)}")


@register('alexnet')
class AlexNet(nn.Module):
  """AlexNet; with `mesh_axes` set it is one device's part of the paper's two-GPU split.

  Run under `jax.shard_map` over a (data, model) mesh (jaxcnn/parallel.py), each device of the
  model axis holds `towers / model-axis size` towers: the output channels of every conv, fc6
  and fc7 are split by tower (fc8 is whole on every device). Activations cross the model axis
  only where the paper's GPUs exchanged them, before conv3, fc6, fc7 and fc8; conv2, conv4 and
  conv5 read their own tower alone. Parameters keep the single-device layout, so a checkpoint
  moves between meshes unchanged.
  """
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  towers: int = 2
  conv1_padding: int = 0  # torchvision's single-tower layout pads 2 and takes 224x224 input
  hidden_units: int = 4096
  dropout_rate: float = 0.5
  dropout_placement: str = 'outputs'  # 'inputs': torchvision's (see DROPOUT_PLACEMENTS)
  pooled_size: int = 0  # > 0: pool the last map to this size before fc6 (torchvision: 6)
  lrn: bool = True
  overlapping_pool: bool = True  # 3x3 stride-2 pooling; False gives the 2x2 stride-2 ablation
  activation: str = 'relu'
  initialization: str = 'paper'
  mesh_axes: tuple[str, str] | None = None  # (data, model) axis names inside shard_map
  dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    # At construction: raised inside __call__, the input-size check would read it as "too small".
    if self.dropout_placement not in DROPOUT_PLACEMENTS:
      raise ValueError(f"unknown model.dropout_placement '{self.dropout_placement}'; known: "
                       f"{', '.join(DROPOUT_PLACEMENTS)}")
    super().__post_init__()

  def min_input_size(self) -> int:
    pool = Window(3 if self.overlapping_pool else 2, 2)
    return smallest_input((Window(11, 4, self.conv1_padding), pool, Window(5, 1, 2), pool, pool))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    window = 3 if self.overlapping_pool else 2
    split = jax.lax.axis_size(self.mesh_axes[1]) if self.mesh_axes else 1
    local_towers = self.towers // split

    def gather(x):  # every tower's channels, for a layer that reads both towers
      if not self.mesh_axes:
        return x
      return jax.lax.all_gather(x, self.mesh_axes[1], axis=x.ndim - 1, tiled=True)

    def conv(x, name, features, kernel, stride=1, padding=0, grouped=True):
      kernel_init, bias_init = _initializers(self.initialization, name)
      return act(GroupedConv(features // split, (kernel, kernel),
                             groups=local_towers if grouped else 1, strides=stride,
                             padding=padding, kernel_init=kernel_init, bias_init=bias_init,
                             dtype=self.dtype, name=name)(x))

    def normalize_and_pool(x):
      if self.lrn:
        x = LocalResponseNorm(groups=local_towers)(x)
      return nn.max_pool(x, (window, window), strides=(2, 2))

    def dense(x, name, features):
      kernel_init, bias_init = _initializers(self.initialization, name)
      return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, dtype=self.dtype,
                      name=name)(x)

    def dropout(x, split_columns=True):
      """Dropout whose mask is the slice of the single-device mask that this device holds
      (`split_columns=False`: x's columns are whole on every device of the model axis)."""
      if not train or self.dropout_rate == 0:
        return x
      keep = 1.0 - self.dropout_rate
      key = self.make_rng('dropout')
      if not self.mesh_axes:
        mask = jax.random.bernoulli(key, keep, x.shape)
      else:
        data, model = self.mesh_axes
        rows, columns = x.shape
        column_parts = jax.lax.axis_size(model) if split_columns else 1
        column_part = jax.lax.axis_index(model) if split_columns else 0
        whole = jax.random.bernoulli(
            key, keep, (rows * jax.lax.axis_size(data), columns * column_parts))
        mask = jax.lax.dynamic_slice(
            whole, (jax.lax.axis_index(data) * rows, column_part * columns), x.shape)
      return jnp.where(mask, x / keep, 0).astype(x.dtype)

    inputs_dropped = self.dropout_placement == 'inputs'

    x = x.astype(self.dtype)
    x = conv(x, 'conv1', self.widths[0], 11, stride=4, padding=self.conv1_padding, grouped=False)
    x = normalize_and_pool(x)
    x = normalize_and_pool(conv(x, 'conv2', self.widths[1], 5, padding=2))
    x = conv(gather(x), 'conv3', self.widths[2], 3, padding=1, grouped=False)
    x = conv(x, 'conv4', self.widths[3], 3, padding=1)
    x = conv(x, 'conv5', self.widths[4], 3, padding=1)
    x = nn.max_pool(x, (window, window), strides=(2, 2))
    if self.pooled_size:
      x = adaptive_avg_pool(x, self.pooled_size)
    x = gather(x).reshape(x.shape[0], -1)
    if inputs_dropped:
      x = dropout(x, split_columns=False)
    # fc6's outputs are fc7's inputs: dropped in either placement.
    x = dropout(act(dense(x, 'fc6', self.hidden_units // split)))
    x = act(dense(gather(x), 'fc7', self.hidden_units // split))
    if not inputs_dropped:
      x = dropout(x)
    logits = dense(gather(x), 'fc8', self.num_classes)
    if self.mesh_axes:
      # Every device computed the same logits. shard_map cannot infer that through all_gather;
      # pmean states it (x + x) / 2 = x exactly, and gives each device 1/M of the cotangent.
      logits = jax.lax.pmean(logits, self.mesh_axes[1])
    return logits.astype(jnp.float32)

  def partition_specs(self, params, model_axis: str = 'model'):
    """How the towers split the parameters over the model axis: by output channel, except
    fc8, which every device holds whole."""
    def spec(path, leaf):
      if path[0].key == 'fc8':
        return P()
      return P(*([None] * (leaf.ndim - 1)), model_axis)
    return jax.tree_util.tree_map_with_path(spec, params)
