"""PyTorch's tensor layouts to Flax's, one function per kind of tensor.

PyTorch computes NCHW: a conv weight is (out, in / groups, kh, kw) and a Linear weight
(out, in). jaxcnn computes NHWC with Flax's kernels, (kh, kw, in / groups, out) and (in, out).
Grouped convolutions need nothing more: both frameworks order a grouped kernel's outputs
group by group, each group reading its own slice of the input channels. A dense layer that
reads a flattened map is the one place where more than a transpose is needed: PyTorch
flattens (C, H, W), jaxcnn (H, W, C).
"""

import math

import numpy as np


def conv_kernel(weight: np.ndarray) -> np.ndarray:
  return weight.transpose(2, 3, 1, 0)


def dense_kernel(weight: np.ndarray, flattened_channels: int | None = None) -> np.ndarray:
  """The kernel of a torch Linear; with `flattened_channels` C, of one that reads a flattened
  C x S x S map, its input rows reordered from torch's (C, S, S) to jaxcnn's (S, S, C)."""
  if flattened_channels:
    outputs, inputs = weight.shape
    side = math.isqrt(inputs // flattened_channels)
    if side * side * flattened_channels != inputs:
      raise ValueError(f'{inputs} inputs are no square map of {flattened_channels} channels')
    weight = weight.reshape(outputs, flattened_channels, side, side).transpose(0, 2, 3, 1)
  return weight.reshape(weight.shape[0], -1).T


def to_jaxcnn(weight: np.ndarray, flattened_channels: int | None = None) -> np.ndarray:
  """Any tensor of a state_dict in jaxcnn's layout: kernels as above, vectors as they are."""
  if weight.ndim == 4:
    return conv_kernel(weight)
  if weight.ndim == 2:
    return dense_kernel(weight, flattened_channels)
  return weight


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  """The shape in PyTorch's layout of a jaxcnn tensor of `shape` (what to_jaxcnn inverts)."""
  if len(shape) == 4:
    height, width, inputs, outputs = shape
    return outputs, inputs, height, width
  return tuple(reversed(shape))
