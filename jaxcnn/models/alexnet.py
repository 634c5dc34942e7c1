"""AlexNet as in Krizhevsky, Sutskever and Hinton (2012).

The paper trained two towers on two GPUs. Here the towers are convolution groups: conv2, conv4
and conv5 have `feature_group_count=towers`, so each tower's filters read only its own half of
the channels, and LRN normalizes within a tower. conv3 and the dense layers read both towers.
At 227x227 with 1000 classes this is 60,965,224 parameters; `towers=1` gives the ungrouped net.
torchvision's layout (64/192/384/256/256, one tower, conv1 padded by 2, no LRN, 224x224) is
the same module with other fields: 61,100,840 parameters. (torchvision also moves dropout
onto the inputs of fc6 and fc7 rather than their outputs; here it stays where the paper put it.)
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.layers import GroupedConv, LocalResponseNorm, activation

# The paper: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden dense
# layers (to give ReLUs positive inputs early), 0 elsewhere. 'he' (He et al., 2015: variance
# 2 / fan_in, zero biases) trains from the first step where the paper's init first idles.
_ONE_BIAS_LAYERS = ('conv2', 'conv4', 'conv5', 'fc6', 'fc7')
INITIALIZATIONS = ('paper', 'he')


def _initializers(init: str, name: str):
  if init == 'he':
    return nn.initializers.he_normal(), nn.initializers.zeros
  if init == 'paper':
    bias = nn.initializers.ones if name in _ONE_BIAS_LAYERS else nn.initializers.zeros
    return nn.initializers.normal(stddev=0.01), bias
  raise ValueError(f"unknown model.initialization '{init}'; known: {', '.join(INITIALIZATIONS)}")


@register('alexnet')
class AlexNet(nn.Module):
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  towers: int = 2
  conv1_padding: int = 0  # torchvision's single-tower layout pads 2 and takes 224x224 input
  hidden_units: int = 4096
  dropout_rate: float = 0.5
  lrn: bool = True
  overlapping_pool: bool = True  # 3x3 stride-2 pooling; False gives the 2x2 stride-2 ablation
  activation: str = 'relu'
  initialization: str = 'paper'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    window = 3 if self.overlapping_pool else 2

    def conv(x, name, features, kernel, stride=1, padding=0, grouped=True):
      kernel_init, bias_init = _initializers(self.initialization, name)
      return act(GroupedConv(features, (kernel, kernel), groups=self.towers if grouped else 1,
                             strides=stride, padding=padding, kernel_init=kernel_init,
                             bias_init=bias_init, dtype=self.dtype, name=name)(x))

    def normalize_and_pool(x):
      if self.lrn:
        x = LocalResponseNorm(groups=self.towers)(x)
      return nn.max_pool(x, (window, window), strides=(2, 2))

    def dense(x, name, features):
      kernel_init, bias_init = _initializers(self.initialization, name)
      return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, dtype=self.dtype,
                      name=name)(x)

    x = x.astype(self.dtype)
    x = normalize_and_pool(conv(x, 'conv1', self.widths[0], 11, stride=4, padding=self.conv1_padding,
                                grouped=False))
    x = normalize_and_pool(conv(x, 'conv2', self.widths[1], 5, padding=2))
    x = conv(x, 'conv3', self.widths[2], 3, padding=1, grouped=False)
    x = conv(x, 'conv4', self.widths[3], 3, padding=1)
    x = conv(x, 'conv5', self.widths[4], 3, padding=1)
    x = nn.max_pool(x, (window, window), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    for name in ('fc6', 'fc7'):
      x = act(dense(x, name, self.hidden_units))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(x, 'fc8', self.num_classes).astype(jnp.float32)
