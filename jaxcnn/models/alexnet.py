"""AlexNet as in Krizhevsky, Sutskever and Hinton (2012).

The paper trained two towers on two GPUs. Here the towers are convolution groups: conv2, conv4
and conv5 have `feature_group_count=towers`, so each tower's filters read only its own half of
the channels, and LRN normalizes within a tower. conv3 and the dense layers read both towers.
At 227x227 with 1000 classes this is 60,965,224 parameters; `towers=1` gives the ungrouped net.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.layers import LocalResponseNorm, activation

# The paper: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden dense
# layers (to give ReLUs positive inputs early), 0 elsewhere.
_WEIGHT_INIT = nn.initializers.normal(stddev=0.01)
_ONE_BIAS_LAYERS = ('conv2', 'conv4', 'conv5', 'fc6', 'fc7')


def _bias_init(name: str):
  return nn.initializers.ones if name in _ONE_BIAS_LAYERS else nn.initializers.zeros


@register('alexnet')
class AlexNet(nn.Module):
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  towers: int = 2
  hidden_units: int = 4096
  dropout_rate: float = 0.5
  lrn: bool = True
  overlapping_pool: bool = True  # 3x3 stride-2 pooling; False gives the 2x2 stride-2 ablation
  activation: str = 'relu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    window = 3 if self.overlapping_pool else 2

    def conv(x, name, features, kernel, stride=1, padding=0, grouped=True):
      return act(nn.Conv(features, (kernel, kernel), strides=stride, padding=padding,
                         feature_group_count=self.towers if grouped else 1,
                         kernel_init=_WEIGHT_INIT, bias_init=_bias_init(name),
                         dtype=self.dtype, name=name)(x))

    def normalize_and_pool(x):
      if self.lrn:
        x = LocalResponseNorm(groups=self.towers)(x)
      return nn.max_pool(x, (window, window), strides=(2, 2))

    def dense(x, name, features):
      return nn.Dense(features, kernel_init=_WEIGHT_INIT, bias_init=_bias_init(name),
                      dtype=self.dtype, name=name)(x)

    x = x.astype(self.dtype)
    x = normalize_and_pool(conv(x, 'conv1', self.widths[0], 11, stride=4, grouped=False))
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
