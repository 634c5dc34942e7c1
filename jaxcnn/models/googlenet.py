"""GoogLeNet (Szegedy et al., 2014, "Going deeper with convolutions"), two layouts.

variant='paper': the paper's table 1 and figure 3: convs with biases and ReLU, no batch
norm, true 5x5 convs in the 5x5 branch, LRN after the first pool and after conv3, a 3x3/2
pool after inception 4e. 6,998,552 parameters for 1000 classes (13,378,280 with the two
auxiliary heads), 1.583 GMACs at 224x224 (heads excluded: they only run in training).

variant='torchvision': torchvision's GoogLeNet: every conv without bias, followed by batch
norm (eps 1e-3) and ReLU; its "5x5" branch is a 3x3 conv (a known upstream bug kept for
weight compatibility) and its pool after 4e is 2x2/2. 6,624,904 parameters (13,004,888 with
aux heads), 1.498 GMACs.

With `aux_heads`, the heads after inception 4a and 4d are built at init and run when
`train=True`; the model then returns (main, aux1, aux2) logits. In evaluation only the main
logits come back, and no aux-head compute is traced.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.batch_norm import BatchNorm
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import (LocalResponseNorm, Window, adaptive_avg_pool, avg_pool,
                                  smallest_input)

VARIANTS = ('paper', 'torchvision')

# Widths of each inception module, from the paper's table 1:
# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj).
INCEPTION_WIDTHS = {
    '3a': (64, 96, 128, 16, 32, 32),
    '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64),
    '4b': (160, 112, 224, 24, 64, 64),
    '4c': (128, 128, 256, 24, 64, 64),
    '4d': (112, 144, 288, 32, 64, 64),
    '4e': (256, 160, 320, 32, 128, 128),
    '5a': (256, 160, 320, 32, 128, 128),
    '5b': (384, 192, 384, 48, 128, 128),
}
AUX_AFTER = ('4a', '4d')


def _initializers(variant: str, classifier: bool = False):
  """(kernel_init, bias_init). The paper gives none; 'paper' follows the Caffe replication
  (bvlc_googlenet): "xavier" (uniform, variance 1 / fan_in) weights, biases 0.2 in hidden
  layers and 0 in classifiers. 'torchvision': normal with stddev 0.01 (torchvision truncates at
  +-2, i.e. 200 stddevs: never), zero biases."""
  if variant == 'paper':
    return nn.initializers.lecun_uniform(), nn.initializers.constant(0.0 if classifier else 0.2)
  return nn.initializers.normal(0.01), nn.initializers.zeros


def max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
  """Max pooling that keeps a last, partial window (Caffe, and torchvision's ceil_mode=True):
  224 -> 112 -> 56 -> 28 -> 14 -> 7, where floor rounding would give 55, 27, 13, 6."""
  pads = []
  for size in x.shape[1:3]:
    windows = -(-(size - window) // stride) + 1
    pads.append((0, max(0, (windows - 1) * stride + window - size)))
  return nn.max_pool(x, (window, window), (stride, stride), padding=pads)  # pads with -inf


class BasicConv(nn.Module):
  """Conv + ReLU ('paper'), or conv without bias + batch norm + ReLU ('torchvision')."""
  features: int
  kernel: int
  variant: str
  strides: int = 1
  padding: int = 0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    batch_norm = self.variant == 'torchvision'
    kernel_init, bias_init = _initializers(self.variant)
    x = Conv(self.features, (self.kernel, self.kernel), self.strides,
             padding=[(self.padding, self.padding)] * 2, use_bias=not batch_norm,
             kernel_init=kernel_init, bias_init=bias_init, dtype=self.dtype)(x)
    if batch_norm:
      x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3,
                    dtype=self.dtype)(x)
    return nn.relu(x)


class Inception(nn.Module):
  """Four parallel branches, concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1."""
  widths: tuple[int, ...]
  variant: str
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(BasicConv, variant=self.variant, dtype=self.dtype)
    n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj = self.widths
    k5 = 5 if self.variant == 'paper' else 3  # torchvision's "5x5" branch is 3x3
    branch1 = conv(n1x1, 1, name='branch1')(x, train)
    branch2 = conv(n3x3_reduce, 1, name='branch2_reduce')(x, train)
    branch2 = conv(n3x3, 3, padding=1, name='branch2')(branch2, train)
    branch3 = conv(n5x5_reduce, 1, name='branch3_reduce')(x, train)
    branch3 = conv(n5x5, k5, padding=k5 // 2, name='branch3')(branch3, train)
    branch4 = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    branch4 = conv(pool_proj, 1, name='branch4')(branch4, train)
    return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class AuxHead(nn.Module):
  """Auxiliary classifier on a 14x14 map: pool to 4x4, 1x1 conv 128, dense 1024, dropout 0.7.

  The paper pools 5x5 with stride 3 (so its dense layer's input depends on the map size);
  torchvision pools adaptively to 4x4 (any map size works).
  """
  num_classes: int
  variant: str
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.variant == 'paper':
      x = avg_pool(x, 5, 3)
    else:
      x = adaptive_avg_pool(x, 4)
    x = BasicConv(128, 1, self.variant, dtype=self.dtype, name='conv')(x, train)
    x = x.reshape(x.shape[0], -1)
    kernel_init, bias_init = _initializers(self.variant)
    x = nn.relu(nn.Dense(1024, kernel_init=kernel_init, bias_init=bias_init, dtype=self.dtype,
                         name='fc1')(x))
    x = nn.Dropout(0.7, deterministic=not train)(x)
    kernel_init, bias_init = _initializers(self.variant, classifier=True)
    return nn.Dense(self.num_classes, kernel_init=kernel_init, bias_init=bias_init,
                    dtype=self.dtype, name='fc2')(x)


@register('googlenet')
class GoogLeNet(nn.Module):
  num_classes: int = 1000
  variant: str = 'paper'  # 'paper' | 'torchvision'
  aux_heads: bool = True  # the two auxiliary classifiers (training only)
  dropout_rate: float = 0.4
  dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    # At construction: raised inside __call__, the input-size check would read it as "too small".
    if self.variant not in VARIANTS:
      raise ValueError(f"unknown model.variant '{self.variant}'; known: {', '.join(VARIANTS)}")
    super().__post_init__()

  def min_input_size(self) -> int:
    pool = Window(3, 2, ceil=True)
    to_4a = (Window(7, 2, 3), pool, pool, pool)  # inception modules keep the size
    main = (*to_4a, Window(3 if self.variant == 'paper' else 2, 2, ceil=True))
    # The paper's aux heads pool 5x5/3 without padding (torchvision's pool adaptively).
    aux = (*to_4a, Window(5, 3)) if self.aux_heads and self.variant == 'paper' else ()
    return smallest_input(main, aux)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    paper = self.variant == 'paper'
    conv = functools.partial(BasicConv, variant=self.variant, dtype=self.dtype)
    # Caffe's LRN (size 5, alpha 1e-4, beta 0.75, k 1) divides alpha by the size; ours does not.
    lrn = LocalResponseNorm(size=5, k=1.0, alpha=1e-4 / 5, beta=0.75) if paper else (lambda y: y)
    # Heads are built at init (so their parameters exist) and run in training only.
    run_aux = self.aux_heads and (train or self.is_initializing())

    x = x.astype(self.dtype)
    x = lrn(max_pool_ceil(conv(64, 7, strides=2, padding=3, name='conv1')(x, train), 3, 2))
    x = conv(64, 1, name='conv2')(x, train)
    x = lrn(conv(192, 3, padding=1, name='conv3')(x, train))
    x = max_pool_ceil(x, 3, 2)
    aux_logits = []
    for name, widths in INCEPTION_WIDTHS.items():
      if name in ('4a', '5a'):
        x = max_pool_ceil(x, 3 if paper or name == '4a' else 2, 2)
      x = Inception(widths, self.variant, dtype=self.dtype, name=f'inception{name}')(x, train)
      if run_aux and name in AUX_AFTER:
        aux_logits.append(AuxHead(self.num_classes, self.variant, dtype=self.dtype,
                                  name=f'aux{len(aux_logits) + 1}')(x, train))

    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    kernel_init, bias_init = _initializers(self.variant, classifier=True)
    x = nn.Dense(self.num_classes, kernel_init=kernel_init, bias_init=bias_init, dtype=self.dtype,
                 name='fc')(x)
    if train and aux_logits:
      return tuple(logits.astype(jnp.float32) for logits in (x, *aux_logits))
    return x.astype(jnp.float32)
