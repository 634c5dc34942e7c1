"""Network in Network (Lin, Chen and Yan, 2013) in the ImageNet layout of Dive into Deep
Learning (d2l.ai, section 8.3), which follows AlexNet's first layers.

Four NiN blocks, each a spatial conv followed by two 1x1 convs of the same width (the
"mlpconv" layer: a small MLP slid over the image), ReLU after every conv. Max pools 3/2 sit
between blocks; the last block has one map per class and global average pooling replaces the
dense layers. 7,439,608 parameters for 3 input channels and 1000 classes.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import Window, smallest_input

# (features, kernel, stride, padding) of each block's first conv; None: num_classes.
BLOCKS = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1), (None, 3, 1, 1))

# d2l initializes every conv with Xavier (Glorot) uniform; biases here start at zero.
_KERNEL_INIT = nn.initializers.glorot_uniform()


@register('nin')
class NiN(nn.Module):
  num_classes: int = 1000
  dropout_rate: float = 0.5
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    pool = Window(3, 2)
    convs = [Window(kernel, stride, padding) for _, kernel, stride, padding in BLOCKS]
    return smallest_input((convs[0], pool, convs[1], pool, convs[2], pool, convs[3]))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = x.astype(self.dtype)
    for block, (features, kernel, stride, padding) in enumerate(BLOCKS, 1):
      features = features or self.num_classes
      if block == len(BLOCKS):
        # Dropout before the class block, as d2l places it (the paper drops out between
        # mlpconv layers).
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(Conv(features, (kernel, kernel), strides=stride, padding=padding,
                       kernel_init=_KERNEL_INIT, dtype=self.dtype, name=f'block{block}_conv')(x))
      for i in (1, 2):
        x = nn.relu(Conv(features, (1, 1), kernel_init=_KERNEL_INIT, dtype=self.dtype,
                         name=f'block{block}_mlp{i}')(x))
      if block < len(BLOCKS):
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
    # One map per class, averaged over space: the class scores (ReLU'd, as in d2l).
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
