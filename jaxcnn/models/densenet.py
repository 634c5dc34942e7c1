"""DenseNet (Huang, Liu, van der Maaten and Weinberger, 2016: Densely Connected Convolutional
Networks), in torchvision's ImageNet layout and as DenseNet-BC for CIFAR.

Every layer of a dense block sees the concatenation of all earlier feature maps of the block
and adds `growth_rate` (k) new ones. The layers are bottlenecks, BN-ReLU-1x1 conv (4k)-BN-
ReLU-3x3 conv (k); transitions between blocks are BN-ReLU-1x1 conv (compression 0.5)-2x2
average pool. Convs have no bias: each is preceded by a BN, whose shift takes that role.

`densenet` (ImageNet, k=32, 1000 classes): depth 121 / 169 / 201 has 7,978,856 /
14,149,480 / 20,013,928 parameters. `cifar_densenet` (DenseNet-BC, L=100, k=12, 10
classes): 769,162 parameters.
"""

from collections.abc import Callable
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.batch_norm import BatchNorm
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import Window, smallest_input

# Dense layers per block of the ImageNet nets (Table 1 of the paper).
IMAGENET_BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}

TRANSITION_POOL = Window(2, 2)  # each transition halves the map (three between four blocks)
BOTTLENECK_WIDTH = 4  # the 1x1 conv of a dense layer produces 4k maps
COMPRESSION = 0.5  # a transition keeps half of its input maps

# torchvision initializes convs with kaiming_normal_ (variance 2 / fan_in, untruncated); the
# authors' Torch code for CIFAR (after fb.resnet.torch) uses variance 2 / fan_out. Dense layers
# keep PyTorch's / Torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with zero bias.
IMAGENET_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
CIFAR_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
DENSE_INIT = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def _norm(train: bool, dtype, name: str | None = None) -> BatchNorm:
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   name=name)


class DenseLayer(nn.Module):
  """BN-ReLU-1x1 conv (4k)-BN-ReLU-3x3 conv (k); returns the input with k maps appended."""
  growth_rate: int
  dropout_rate: float
  conv_init: Callable
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(Conv, use_bias=False, kernel_init=self.conv_init, dtype=self.dtype)
    # The paper drops out after every conv but the first (used only without augmentation).
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    y = nn.relu(_norm(train, self.dtype, 'norm1')(x))
    y = dropout(conv(BOTTLENECK_WIDTH * self.growth_rate, (1, 1), name='conv1')(y))
    y = nn.relu(_norm(train, self.dtype, 'norm2')(y))
    y = dropout(conv(self.growth_rate, (3, 3), padding=1, name='conv2')(y))
    return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
  """BN-ReLU-1x1 conv to half the maps-2x2 average pool between two dense blocks."""
  dropout_rate: float
  conv_init: Callable
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(_norm(train, self.dtype, 'norm')(x))
    x = Conv(int(x.shape[-1] * COMPRESSION), (1, 1), use_bias=False,
             kernel_init=self.conv_init, dtype=self.dtype, name='conv')(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.avg_pool(x, (TRANSITION_POOL.size,) * 2, strides=(TRANSITION_POOL.stride,) * 2)


def _dense_blocks(x, block_sizes, growth_rate, dropout_rate, conv_init, dtype, train):
  """Dense blocks with a transition between each two, then the final BN-ReLU and pooling."""
  for i, size in enumerate(block_sizes, start=1):
    for j in range(1, size + 1):
      x = DenseLayer(growth_rate, dropout_rate, conv_init, dtype,
                     name=f'block{i}_layer{j}')(x, train)
    if i < len(block_sizes):
      x = Transition(dropout_rate, conv_init, dtype, name=f'transition{i}')(x, train)
  x = nn.relu(_norm(train, dtype, 'norm_final')(x))
  return jnp.mean(x, axis=(1, 2))


@register('densenet')
class DenseNet(nn.Module):
  """DenseNet-121/169/201 for ImageNet, as torchvision builds it (smallest input 29x29)."""
  num_classes: int = 1000
  depth: int = 121
  growth_rate: int = 32
  # After every conv but the first, as the paper (torchvision's drop_rate only after each 3x3);
  # 0 for the published ImageNet nets.
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    return smallest_input((Window(7, 2, 3), Window(3, 2, 1), *[TRANSITION_POOL] * 3))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth not in IMAGENET_BLOCKS:
      raise ValueError(f'densenet depth must be one of {sorted(IMAGENET_BLOCKS)}, not {self.depth}')
    x = x.astype(self.dtype)
    # Stem: 2k maps, 7x7/2 conv, BN, ReLU, 3x3/2 max pool (56x56 at 224).
    x = Conv(2 * self.growth_rate, (7, 7), strides=(2, 2), padding=3, use_bias=False,
             kernel_init=IMAGENET_CONV_INIT, dtype=self.dtype, name='conv0')(x)
    x = nn.relu(_norm(train, self.dtype, 'norm0')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    x = _dense_blocks(x, IMAGENET_BLOCKS[self.depth], self.growth_rate, self.dropout_rate,
                      IMAGENET_CONV_INIT, self.dtype, train)
    x = nn.Dense(self.num_classes, kernel_init=DENSE_INIT, dtype=self.dtype, name='classifier')(x)
    return x.astype(jnp.float32)


@register('cifar_densenet')
class CifarDenseNet(nn.Module):
  """DenseNet-BC for 32x32 CIFAR: three blocks of (depth - 4) / 6 bottleneck layers each.

  depth counts the first conv, two convs per dense layer, the two transitions and the
  classifier.
  """
  num_classes: int = 10
  depth: int = 100
  growth_rate: int = 12
  dropout_rate: float = 0.0  # the paper: 0.2 only when training without data augmentation
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    return smallest_input([TRANSITION_POOL] * 2)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f'cifar_densenet depth must be 6n + 4 with n >= 1, not {self.depth}')
    layers = (self.depth - 4) // 6
    x = x.astype(self.dtype)
    # BC nets start with 2k maps from a plain 3x3 conv (no BN right after it: the first dense
    # layer begins with one).
    x = Conv(2 * self.growth_rate, (3, 3), padding=1, use_bias=False,
             kernel_init=CIFAR_CONV_INIT, dtype=self.dtype, name='conv0')(x)
    x = _dense_blocks(x, (layers,) * 3, self.growth_rate, self.dropout_rate, CIFAR_CONV_INIT,
                      self.dtype, train)
    x = nn.Dense(self.num_classes, kernel_init=DENSE_INIT, dtype=self.dtype, name='classifier')(x)
    return x.astype(jnp.float32)
