"""VGG (Simonyan and Zisserman, 2014, "Very deep convolutional networks for large-scale image
recognition") in torchvision's layout, with its batch-norm variants.

Configurations A, B, D and E of the paper's Table 1 are depths 11, 13, 16 and 19: five stages of
3x3 convolutions (padding 1, ReLU) each closed by a 2x2 max pool, then three dense layers. With
`batch_norm` every conv is followed by BN and, as in torchvision's vgg*_bn, keeps its bias.
Parameters (1000 classes, 224x224): 132,863,336 / 133,047,848 / 138,357,544 / 143,667,240 for
VGG-11/13/16/19, and 132,868,840 / 133,053,736 / 138,365,992 / 143,678,248 with BN.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.batch_norm import BatchNorm
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import Window, adaptive_avg_pool, smallest_input

STAGE_WIDTHS = (64, 128, 256, 512, 512)
# Convs per stage: Table 1's configurations A (11), B (13), D (16) and E (19 weight layers).
STAGE_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
                19: (2, 2, 4, 4, 4)}
POOLED_SIZE = 7  # the classifier reads a 7x7x512 map: what 224x224 inputs give

# torchvision's initialization (the paper pre-trained A and initialized deeper nets from it):
# convs He normal over fan_out with zero biases, dense layers N(0, 0.01) with zero biases.
_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
_DENSE_INIT = nn.initializers.normal(stddev=0.01)


@register('vgg')
class VGG(nn.Module):
  num_classes: int = 1000
  depth: int = 16
  batch_norm: bool = False
  hidden_units: int = 4096  # of fc6 and fc7
  dropout_rate: float = 0.5
  dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    # Fail when the model is built, not later as an input-size error of init.
    if self.depth not in STAGE_DEPTHS:
      known = ', '.join(map(str, STAGE_DEPTHS))
      raise ValueError(f'unknown VGG depth {self.depth}; known: {known}')
    super().__post_init__()

  def min_input_size(self) -> int:
    return smallest_input([Window(2, 2)] * len(STAGE_WIDTHS))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = x.astype(self.dtype)
    for stage, (width, convs) in enumerate(zip(STAGE_WIDTHS, STAGE_DEPTHS[self.depth]), 1):
      for i in range(1, convs + 1):
        name = f'conv{stage}_{i}'
        x = Conv(width, (3, 3), padding=1, kernel_init=_CONV_INIT, dtype=self.dtype,
                 name=name)(x)
        if self.batch_norm:
          x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=self.dtype, name=f'{name}_bn')(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))

    # Inputs other than 224x224 leave a map other than 7x7; pooling it to 7x7 keeps the
    # classifier's 25088 inputs (torchvision's AdaptiveAvgPool2d((7, 7))).
    x = adaptive_avg_pool(x, POOLED_SIZE)
    x = x.reshape(x.shape[0], -1)  # (h, w, c) order; torchvision flattens (c, h, w)
    for name in ('fc6', 'fc7'):
      x = nn.relu(nn.Dense(self.hidden_units, kernel_init=_DENSE_INIT, dtype=self.dtype,
                           name=name)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=_DENSE_INIT, dtype=self.dtype, name='fc8')(x)
    return x.astype(jnp.float32)
