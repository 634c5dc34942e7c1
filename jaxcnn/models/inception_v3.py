"""Inception v3 (Szegedy et al., 2015, "Rethinking the Inception Architecture for Computer
Vision") in torchvision's layout.

Every conv is torchvision's BasicConv2d: no bias, batch norm (eps 1e-3), ReLU. Stem, then
Mixed_5b..5d (35x35), Mixed_6a..6e (17x17, 7x7 convs factorized into 1x7 and 7x1), Mixed_7a..7c
(8x8, expanded 1x3/3x1 branches), global average pool, dropout, dense. The auxiliary head on
Mixed_6e (5x5/3 average pool, 1x1 conv 128, 5x5 conv 768, dense) is built at init and runs
when `train=True`; the model then returns (main, aux) logits, in evaluation only the main
logits. At 299x299 with 1000 classes: 27,161,264 parameters with the aux head, 23,834,568
without; 5.713 GMACs (aux head excluded).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import register
from jaxcnn.models.batch_norm import BatchNorm
from jaxcnn.models.conv import Conv
from jaxcnn.models.layers import Window, avg_pool, smallest_input


class ConvBN(nn.Module):
  """torchvision's BasicConv2d. Weights: normal with stddev 0.1 unless a layer says otherwise
  (torchvision's Inception3 init; it truncates at +-2, i.e. 20 stddevs or more: never)."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  stddev: float = 0.1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = Conv(self.features, self.kernel, self.strides,
             padding=[(p, p) for p in self.padding], use_bias=False,
             kernel_init=nn.initializers.normal(self.stddev), dtype=self.dtype)(x)
    x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3,
                  dtype=self.dtype)(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # Padded cells count in the average, as torch's avg_pool2d (count_include_pad=True).
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""
  pool_features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(ConvBN, dtype=self.dtype)
    b1 = conv(64, (1, 1), name='branch1x1')(x, train)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x, train)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5, train)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x, train)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3, train)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3, train)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x), train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(ConvBN, dtype=self.dtype)
    b3 = conv(384, (3, 3), strides=2, name='branch3x3')(x, train)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x, train)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd, train)
    bd = conv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd, train)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """17x17 module, 7x7 convs factorized into 1x7 and 7x1 with `c7` channels in between."""
  c7: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(ConvBN, dtype=self.dtype)
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = conv(192, (1, 1), name='branch1x1')(x, train)
    b7 = conv(self.c7, (1, 1), name='branch7x7_1')(x, train)
    b7 = conv(self.c7, **row, name='branch7x7_2')(b7, train)
    b7 = conv(192, **col, name='branch7x7_3')(b7, train)
    bd = conv(self.c7, (1, 1), name='branch7x7dbl_1')(x, train)
    bd = conv(self.c7, **col, name='branch7x7dbl_2')(bd, train)
    bd = conv(self.c7, **row, name='branch7x7dbl_3')(bd, train)
    bd = conv(self.c7, **col, name='branch7x7dbl_4')(bd, train)
    bd = conv(192, **row, name='branch7x7dbl_5')(bd, train)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x), train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(ConvBN, dtype=self.dtype)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x, train)
    b3 = conv(320, (3, 3), strides=2, name='branch3x3_2')(b3, train)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x, train)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7, train)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7, train)
    b7 = conv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7, train)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """8x8 module whose 3x3 branches end in parallel 1x3 and 3x1 convs (wider, not deeper)."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(ConvBN, dtype=self.dtype)

    def split(y, prefix):  # 1x3 and 3x1 side by side
      return jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name=f'{prefix}a')(y, train),
                              conv(384, (3, 1), padding=(1, 0), name=f'{prefix}b')(y, train)],
                             axis=-1)

    b1 = conv(320, (1, 1), name='branch1x1')(x, train)
    b3 = split(conv(384, (1, 1), name='branch3x3_1')(x, train), 'branch3x3_2')
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x, train)
    bd = split(conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd, train),
               'branch3x3dbl_3')
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x), train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier on 17x17x768: 5x5/3 avg pool (-> 5x5), 1x1 conv 128, 5x5 conv 768
  (-> 1x1), dense. torchvision initializes the 5x5 conv with stddev 0.01, the dense with 0.001."""
  num_classes: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = avg_pool(x, 5, 3)
    x = ConvBN(128, (1, 1), dtype=self.dtype, name='conv0')(x, train)
    x = ConvBN(768, (5, 5), stddev=0.01, dtype=self.dtype, name='conv1')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.001),
                    dtype=self.dtype, name='fc')(x)


@register('inception_v3')
class InceptionV3(nn.Module):
  num_classes: int = 1000
  aux_head: bool = True  # the auxiliary classifier after Mixed_6e (training only)
  dropout_rate: float = 0.5
  dtype: jnp.dtype = jnp.float32

  def min_input_size(self) -> int:
    reduce = Window(3, 2)  # the unpadded 3x3/2 convs and pools; the modules keep the size
    to_6e = (reduce, Window(3), Window(3, 1, 1), reduce, Window(3), reduce, reduce)
    aux = (*to_6e, Window(5, 3), Window(5)) if self.aux_head else ()
    return smallest_input((*to_6e, reduce), aux)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    conv = functools.partial(ConvBN, dtype=self.dtype)
    x = x.astype(self.dtype)
    x = conv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x, train)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x, train)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x, train)
    x = _max_pool_3x3_s2(x)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x, train)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x, train)
    x = _max_pool_3x3_s2(x)
    for name, pool_features in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
      x = InceptionA(pool_features, dtype=self.dtype, name=name)(x, train)
    x = InceptionB(dtype=self.dtype, name='Mixed_6a')(x, train)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, dtype=self.dtype, name=name)(x, train)
    # The head is built at init (so its parameters exist) and run in training only.
    aux = None
    if self.aux_head and (train or self.is_initializing()):
      aux = InceptionAux(self.num_classes, dtype=self.dtype, name='AuxLogits')(x, train)
    x = InceptionD(dtype=self.dtype, name='Mixed_7a')(x, train)
    x = InceptionE(dtype=self.dtype, name='Mixed_7b')(x, train)
    x = InceptionE(dtype=self.dtype, name='Mixed_7c')(x, train)

    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.1),
                 dtype=self.dtype, name='fc')(x).astype(jnp.float32)
    if train and aux is not None:
      return x, aux.astype(jnp.float32)
    return x
