"""LeNet-5 (LeCun et al., 1998) in its common modern form, and its batch-norm variant (d2l).

32x32 input, C1 5x5x6, S2 2x2 average pool, C3 5x5x16 (all input maps), S4, then dense
120-84-classes: 61,706 parameters for 10 classes.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.batch_norm import BatchNorm
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import Window, activation, avg_pool, smallest_input


@register('lenet5')
class LeNet5(nn.Module):
  num_classes: int = 10
  activation: str = 'tanh'
  batch_norm: bool = False  # BN after every conv and hidden dense layer, before the activation
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    conv, pool = Window(5), Window(2, 2)
    return smallest_input((conv, pool, conv, pool))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = activation(self.activation)

    def normalized(y, name):
      if self.batch_norm:
        y = BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                      name=f'{name}_bn')(y)
      return act(y)

    x = x.astype(self.dtype)
    x = normalized(Conv(6, (5, 5), padding='VALID', dtype=self.dtype, name='conv1')(x), 'conv1')
    x = avg_pool(x, 2, 2)
    x = normalized(Conv(16, (5, 5), padding='VALID', dtype=self.dtype, name='conv2')(x), 'conv2')
    x = avg_pool(x, 2, 2)
    x = x.reshape(x.shape[0], -1)
    x = normalized(nn.Dense(120, dtype=self.dtype, name='fc1')(x), 'fc1')
    x = normalized(nn.Dense(84, dtype=self.dtype, name='fc2')(x), 'fc2')
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc3')(x)
    return x.astype(jnp.float32)
