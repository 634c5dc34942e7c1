"""Layers that the classic papers use and Flax does not ship."""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.conv import conv_general_dilated

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'tanh': nn.tanh,
    'sigmoid': nn.sigmoid,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation '{name}'; known: {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class LocalResponseNorm(nn.Module):
  """AlexNet's local response normalization across channels (section 3.3 of the paper).

  b_c = a_c / (k + alpha * sum_{c' within size/2 of c} a_c'^2) ** beta, with the paper's alpha
  (PyTorch divides alpha by `size`; the paper does not). With `groups` > 1 the window never
  crosses a group boundary: each of AlexNet's towers normalizes only its own channels.
  """
  size: int = 5
  k: float = 2.0
  alpha: float = 1e-4
  beta: float = 0.75
  groups: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    squares = jnp.square(x).reshape(*x.shape[:-1], self.groups, channels // self.groups)
    half = self.size // 2
    ones = (1,) * squares.ndim
    window_sums = jax.lax.reduce_window(
        squares, 0.0, jax.lax.add,
        window_dimensions=ones[:-1] + (self.size,),
        window_strides=ones,
        padding=[(0, 0)] * (squares.ndim - 1) + [(half, half)])
    return x / (self.k + self.alpha * window_sums.reshape(x.shape)) ** self.beta


class GroupedConv(nn.Module):
  """A convolution whose input and output channels split into `groups` independent towers.

  Parameters have nn.Conv's grouped layout (kernel: kh x kw x in/groups x out), but each
  group runs as its own convolution and the outputs are concatenated, as the towers ran on
  AlexNet's two GPUs: XLA:CPU runs `feature_group_count` convolutions about 5x slower.
  """
  features: int
  kernel_size: tuple[int, int]
  groups: int = 1
  strides: int = 1
  padding: int = 0
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, in_features // self.groups, self.features))
    bias = self.param('bias', self.bias_init, (self.features,))
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    towers = [
        conv_general_dilated(
            x_tower, kernel_tower, (self.strides,) * 2, [(self.padding,) * 2] * 2,
            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        for x_tower, kernel_tower in zip(jnp.split(x, self.groups, axis=-1),
                                         jnp.split(kernel, self.groups, axis=-1))]
    return jnp.concatenate(towers, axis=-1) + bias
