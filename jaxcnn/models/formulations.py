"""Ways to compute a 2-D convolution and its two gradients, all equal up to float rounding.

A convolution has three directions: the forward pass, the input gradient and the filter
(kernel) gradient. Each formulation offers some of them for some geometries:
- 'xla': XLA's convolution, and the convolutions XLA transposes it into. Every direction,
  every geometry; the only one off CPU.
- 'taps': the convolution as one matrix product per kernel tap, whose filter gradient
  contracts a strided window of the input with the output gradient: plain matrix products
  where XLA:CPU runs a slow convolution over the batch. Filter gradient only.
- 'dot': a 1x1 convolution as one matrix product over a strided view of the input.
- 'onednn': oneDNN's kernels (jaxcnn/onednn), float32 with one group, where they build.
jaxcnn/tuning.py times the candidates of each direction on the machine at hand.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn import onednn

NHWC = ('NHWC', 'HWIO', 'NHWC')
DIRECTIONS = ('forward', 'input_grad', 'kernel_grad')


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Everything but the values that a convolution's cost and result depend on."""
  input_shape: tuple[int, int, int, int]  # NHWC
  kernel_shape: tuple[int, int, int, int]  # HWIO (I = input channels / groups)
  strides: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  dilation: tuple[int, int]
  groups: int
  dtype: str
  precision: Any = None

  @property
  def output_shape(self) -> tuple[int, int, int, int]:
    batch, *spatial, _ = self.input_shape
    out = [(size + sum(pad) - dilation * (kernel - 1) - 1) // stride + 1
           for size, pad, dilation, kernel, stride in zip(
               spatial, self.padding, self.dilation, self.kernel_shape[:2], self.strides)]
    return batch, *out, self.kernel_shape[3]

  @property
  def macs(self) -> int:
    return math.prod(self.output_shape) * math.prod(self.kernel_shape[:3])

  def __str__(self) -> str:
    shape = lambda dims: 'x'.join(map(str, dims))
    return (f'{shape(self.input_shape)} * {shape(self.kernel_shape)} stride {shape(self.strides)} '
            f'padding {self.padding} dilation {shape(self.dilation)} groups {self.groups} '
            f'{self.dtype}' + (f' precision {self.precision}' if self.precision else ''))


@dataclasses.dataclass(frozen=True)
class Formulation:
  """The directions a formulation computes (None: not offered), each a function of
  (x, kernel, out_grad, geometry) with out_grad None for the forward pass."""
  forward: Callable | None
  input_grad: Callable | None
  kernel_grad: Callable | None
  supports: Callable[[Geometry], bool] = lambda geometry: True

  def offers(self, direction: str, geometry: Geometry) -> bool:
    return getattr(self, direction) is not None and self.supports(geometry)


def by_vjp(conv: Callable, directions=DIRECTIONS, **fields) -> Formulation:
  """A formulation from conv(x, kernel, geometry), its gradients taken by `jax.vjp`. Each
  gradient is then the transpose of a function linear in what it differentiates, so under
  shard_map JAX adds the psum over the axes a replicated kernel is shared on."""
  directions = {
      'forward': lambda x, kernel, out_grad, g: conv(x, kernel, g),
      'input_grad': lambda x, kernel, out_grad, g: jax.vjp(
          lambda x: conv(x, kernel, g), x)[1](out_grad)[0],
      'kernel_grad': lambda x, kernel, out_grad, g: jax.vjp(
          lambda kernel: conv(x, kernel, g), kernel)[1](out_grad)[0],
  } | {direction: None for direction in DIRECTIONS if direction not in directions}
  return Formulation(**directions, **fields)


def xla_conv(x, kernel, g: Geometry):
  return lax.conv_general_dilated(x, kernel, g.strides, g.padding, rhs_dilation=g.dilation,
                                  dimension_numbers=NHWC, feature_group_count=g.groups,
                                  precision=g.precision)


def conv_by_taps(x, kernel, g: Geometry):
  """The convolution as a sum of one matrix product per kernel tap."""
  kernel_h, kernel_w, group_in, out_features = kernel.shape
  padded = jnp.pad(x, ((0, 0), *g.padding, (0, 0)))
  batch, _, _, channels = padded.shape
  _, out_h, out_w, _ = g.output_shape
  out = 0
  for i in range(kernel_h):
    for j in range(kernel_w):
      top, left = i * g.dilation[0], j * g.dilation[1]
      # The input pixels that tap (i, j) multiplies into each output pixel.
      window = lax.slice(padded, (0, top, left, 0),
                         (batch, top + g.strides[0] * (out_h - 1) + 1,
                          left + g.strides[1] * (out_w - 1) + 1, channels),
                         (1, g.strides[0], g.strides[1], 1))
      window = window.reshape(batch, out_h, out_w, g.groups, group_in)
      tap = kernel[i, j].reshape(group_in, g.groups, out_features // g.groups)
      out = out + jnp.einsum('bhwgc,cgo->bhwgo', window, tap, precision=g.precision)
  return out.reshape(batch, out_h, out_w, out_features)


def conv_by_dot(x, kernel, g: Geometry):
  """A 1x1 convolution without padding: the input at the strides, times the kernel."""
  strided = x[:, ::g.strides[0], ::g.strides[1], :]
  return jnp.einsum('bhwc,co->bhwo', strided, kernel[0, 0], precision=g.precision)


def _is_pointwise(g: Geometry) -> bool:
  return (g.kernel_shape[:2] == (1, 1) and g.groups == 1 and g.padding == ((0, 0), (0, 0)))


def _onednn_builds(g: Geometry) -> bool:
  return g.dtype == 'float32' and g.groups == 1 and onednn.library() is not None


FORMULATIONS: dict[str, Formulation] = {
    'xla': by_vjp(xla_conv),
    'taps': by_vjp(conv_by_taps, directions=('kernel_grad',)),
    'dot': by_vjp(conv_by_dot, supports=_is_pointwise),
    'onednn': Formulation(
        forward=lambda x, kernel, out_grad, g: onednn.forward(x, kernel, g),
        input_grad=lambda x, kernel, out_grad, g: onednn.input_gradient(out_grad, kernel, g),
        kernel_grad=lambda x, kernel, out_grad, g: onednn.filter_gradient(x, out_grad, g),
        supports=_onednn_builds),
}
