"""Residual networks (He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", 2015).

`resnet`: the ImageNet nets in torchvision's layout. 7x7/2 conv 64 + BN + ReLU, 3x3/2 max
pool, four stages (64, 128, 256, 512 wide) of basic blocks (depth 18, 34) or bottleneck
blocks (50, 101, 152; 4x expansion, stride on the 3x3 conv as torchvision's "v1.5", where the
paper strides the first 1x1), projection shortcuts (1x1 conv + BN, the paper's option B)
where the shape changes, global average pool, dense. With 1000 classes: 11,689,512 /
21,797,672 / 25,557,032 / 44,549,160 / 60,192,808 parameters for depth 18 / 34 / 50 / 101 / 152.

`cifar_resnet`: the CIFAR-10 nets of section 4.2. 3x3 conv 16, three stages of n basic
blocks 16, 32 and 64 wide (depth 6n + 2), option-A shortcuts: parameter-free, they subsample
by 2 and zero-pad the new channels. With 10 classes: 269,722 / 464,154 / 658,586 / 853,018 /
1,727,962 parameters for depth 20 / 32 / 44 / 56 / 110. `shortcuts=False` gives the paper's
plain nets: the same layers and parameters, without the skip additions.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.batch_norm import BatchNorm
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import Window, smallest_input

# Convs: He et al. (2015, "Delving deep") normal init, fan_out as torchvision's ResNet
# (kaiming_normal_(mode='fan_out')); 'normal' is untruncated, as torch's.
_CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _dense(features: int, fan_in: int, dtype, name: str) -> nn.Dense:
  """torchvision leaves the classifier at PyTorch's Linear default: U(+-1/sqrt(fan_in))."""
  bound = 1 / math.sqrt(fan_in)

  def bias_init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return nn.Dense(features, kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
                  bias_init=bias_init, dtype=dtype, name=name)


def _conv(features: int, kernel: int, strides: int, dtype, name: str) -> nn.Conv:
  # Padding kernel // 2 as torchvision: each stride-2 layer maps n to ceil(n / 2).
  return Conv(features, (kernel, kernel), strides=strides, padding=kernel // 2, use_bias=False,
              kernel_init=_CONV_INIT, dtype=dtype, name=name)


def _batch_norm(train: bool, dtype, name: str) -> BatchNorm:
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   name=name)


# How a block's input reaches its output (the paper's section 3.3 options):
#   'projection': identity, or a 1x1 conv + BN where the shape changes (option B);
#   'zero_pad': identity, or subsample by the stride and zero-pad the channels (option A);
#   'none': no skip connection at all (the plain nets).
SHORTCUTS = ('projection', 'zero_pad', 'none')


class _Block(nn.Module):
  features: int  # output channels of the block's inner convs
  strides: int = 1
  shortcut: str = 'projection'
  dtype: jnp.dtype = jnp.float32

  expansion = 1  # the block outputs features * expansion channels

  def residual(self, x: jax.Array, train: bool) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = self.residual(x, train)
    if self.shortcut == 'none':
      return nn.relu(y)
    if x.shape != y.shape:
      if self.shortcut == 'projection':
        x = _conv(y.shape[-1], 1, self.strides, self.dtype, 'downsample_conv')(x)
        x = _batch_norm(train, self.dtype, 'downsample_bn')(x)
      elif self.shortcut == 'zero_pad':
        # x[::2] keeps ceil(n / 2) rows, as many as the residual's stride-2 conv produces.
        x = x[:, ::self.strides, ::self.strides, :]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, y.shape[-1] - x.shape[-1])))
      else:
        raise ValueError(f"unknown shortcut '{self.shortcut}'; known: {', '.join(SHORTCUTS)}")
    return nn.relu(y + x)


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-18/34 and the CIFAR nets)."""

  def residual(self, x, train):
    y = _conv(self.features, 3, self.strides, self.dtype, 'conv1')(x)
    y = nn.relu(_batch_norm(train, self.dtype, 'bn1')(y))
    y = _conv(self.features, 3, 1, self.dtype, 'conv2')(y)
    return _batch_norm(train, self.dtype, 'bn2')(y)


class Bottleneck(_Block):
  """1x1 reduce, 3x3 (strided, as torchvision v1.5), 1x1 expand by 4 (ResNet-50/101/152)."""
  expansion = 4

  def residual(self, x, train):
    y = _conv(self.features, 1, 1, self.dtype, 'conv1')(x)
    y = nn.relu(_batch_norm(train, self.dtype, 'bn1')(y))
    y = _conv(self.features, 3, self.strides, self.dtype, 'conv2')(y)
    y = nn.relu(_batch_norm(train, self.dtype, 'bn2')(y))
    y = _conv(self.features * self.expansion, 1, 1, self.dtype, 'conv3')(y)
    return _batch_norm(train, self.dtype, 'bn3')(y)


# depth -> (block, blocks per stage), table 1 of the paper.
IMAGENET_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _stages(x, train, block, stage_sizes, widths, shortcut, dtype):
  """Stage i has stage_sizes[i] blocks; every stage after the first halves the resolution."""
  for i, (blocks, width) in enumerate(zip(stage_sizes, widths)):
    for j in range(blocks):
      strides = 2 if i > 0 and j == 0 else 1
      x = block(width, strides, shortcut, dtype, name=f'layer{i + 1}_{j}')(x, train)
  return x


@register('resnet')
class ResNet(nn.Module):
  num_classes: int = 1000
  depth: int = 50  # 18, 34, 50, 101 or 152
  # 'imagenet': 7x7/2 conv and 3x3/2 max pool; 'cifar': one 3x3/1 conv and no pool, the
  # usual stem for 32x32 inputs (ResNet-18 on CIFAR: 11,173,962 parameters for 10 classes).
  stem: str = 'imagenet'
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    # Every strided layer pads, so even a 1x1 image keeps a 1x1 map to the end.
    stem = (Window(7, 2, 3), Window(3, 2, 1)) if self.stem == 'imagenet' else ()
    return smallest_input((*stem, *[Window(3, 2, 1)] * 3))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth not in IMAGENET_DEPTHS:
      raise ValueError(f'model.depth={self.depth}: resnet has depths '
                       f'{", ".join(map(str, IMAGENET_DEPTHS))}')
    if self.stem not in ('imagenet', 'cifar'):
      raise ValueError(f"unknown model.stem '{self.stem}'; known: imagenet, cifar")
    block, stage_sizes = IMAGENET_DEPTHS[self.depth]
    x = x.astype(self.dtype)
    imagenet = self.stem == 'imagenet'
    x = _conv(64, 7 if imagenet else 3, 2 if imagenet else 1, self.dtype, 'conv1')(x)
    x = nn.relu(_batch_norm(train, self.dtype, 'bn1')(x))
    if imagenet:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    x = _stages(x, train, block, stage_sizes, (64, 128, 256, 512), 'projection', self.dtype)
    x = jnp.mean(x, axis=(1, 2))
    return _dense(self.num_classes, x.shape[-1], self.dtype, 'fc')(x).astype(jnp.float32)


@register('cifar_resnet')
class CifarResNet(nn.Module):
  num_classes: int = 10
  depth: int = 20  # 6n + 2: the paper trains 20, 32, 44, 56, 110 (and 1202)
  shortcuts: bool = True  # False: the plain net (same layers and parameters, no skips)
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    return smallest_input([Window(3, 2, 1)] * 2)  # padded stride-2 convs: 1x1 is enough

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth < 8 or (self.depth - 2) % 6:
      raise ValueError(f'model.depth={self.depth}: cifar_resnet needs depth 6n + 2 '
                       '(20, 32, 44, 56, 110, ...)')
    blocks = (self.depth - 2) // 6
    x = x.astype(self.dtype)
    x = _conv(16, 3, 1, self.dtype, 'conv1')(x)
    x = nn.relu(_batch_norm(train, self.dtype, 'bn1')(x))
    x = _stages(x, train, BasicBlock, (blocks,) * 3, (16, 32, 64),
                'zero_pad' if self.shortcuts else 'none', self.dtype)
    x = jnp.mean(x, axis=(1, 2))
    return _dense(self.num_classes, x.shape[-1], self.dtype, 'fc')(x).astype(jnp.float32)
