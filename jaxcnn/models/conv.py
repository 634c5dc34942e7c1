"""2-D convolution whose forward pass, input gradient and filter gradient each run the
formulation chosen for their geometry (jaxcnn/models/formulations.py).

XLA's CPU convolutions are several times slower than oneDNN's on small channel counts and in
the filter gradient, and which formulation is fastest depends on the shape and the processor.
So the choice is made by measurement (jaxcnn/tuning.py) and handed to the traced step:
`with using(choices):` maps each Geometry to a formulation per direction. Without choices,
every direction is XLA's. A choice other than XLA's runs on CPU only (lax.platform_dependent),
so a step lowered for GPU or TPU holds XLA's convolutions alone (tests/test_export.py); on
CPU it runs under the name scope NAME_conv_DIRECTION (e.g. `taps_conv_kernel_grad`).

`Conv` is `nn.Conv` with this convolution; parameters and their names are unchanged.
"""

import collections
import contextlib
import contextvars
import functools
from collections.abc import Iterator, Mapping

import flax.linen as nn
import jax
from jax import lax

from jaxcnn.models.formulations import DIRECTIONS, FORMULATIONS, NHWC, Geometry

# Geometry -> the formulation names of (forward, input_grad, kernel_grad).
ConvChoices = Mapping[Geometry, tuple[str, str, str]]

_choices: contextvars.ContextVar[ConvChoices] = contextvars.ContextVar('conv_choices', default={})
_seen: contextvars.ContextVar[dict | None] = contextvars.ContextVar('conv_seen', default=None)


@contextlib.contextmanager
def using(choices: ConvChoices) -> Iterator[None]:
  """Convolutions traced inside run the formulations `choices` names for their geometry."""
  token = _choices.set(choices)
  try:
    yield
  finally:
    _choices.reset(token)


@contextlib.contextmanager
def recording() -> Iterator[dict[Geometry, collections.Counter[str]]]:
  """Collects the geometry of every convolution traced inside, with how many times it runs
  each direction (the forward pass alone where nothing differentiates it)."""
  seen = {}
  token = _seen.set(seen)
  try:
    yield seen
  finally:
    _seen.reset(token)


def conv_general_dilated(x, kernel, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None):
  """`lax.conv_general_dilated`'s signature; NHWC 2-D convolutions run the chosen formulations."""
  dilation = tuple(rhs_dilation or (1,) * (x.ndim - 2))
  nhwc = (x.ndim == 4 and not any(d != 1 for d in lhs_dilation or ()) and
          lax.conv_dimension_numbers(x.shape, kernel.shape, dimension_numbers) ==
          lax.conv_dimension_numbers(x.shape, kernel.shape, NHWC))
  if not nhwc:
    return lax.conv_general_dilated(x, kernel, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, precision=precision)
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:2], dilation)]
    padding = lax.padtype_to_pads(x.shape[1:3], window, window_strides, padding)
  geometry = Geometry(tuple(x.shape), tuple(kernel.shape), tuple(window_strides),
                      tuple(tuple(pad) for pad in padding), dilation, feature_group_count,
                      jax.numpy.dtype(x.dtype).name, precision)
  return _conv(x, kernel, geometry)


def _run(direction: str, geometry: Geometry, x, kernel, out_grad=None):
  if (seen := _seen.get()) is not None:
    seen.setdefault(geometry, collections.Counter())[direction] += 1
  name = _choices.get().get(geometry, ('xla',) * 3)[DIRECTIONS.index(direction)]
  xla = functools.partial(getattr(FORMULATIONS['xla'], direction), g=geometry)
  if name == 'xla':
    return xla(x, kernel, out_grad)
  chosen = functools.partial(getattr(FORMULATIONS[name], direction), g=geometry)
  # Named, so that a profile or a lowered module says which formulation runs where.
  chosen = jax.named_scope(f'{name}_conv_{direction}')(chosen)
  return lax.platform_dependent(x, kernel, out_grad, cpu=chosen, default=xla)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x, kernel, geometry):
  return _run('forward', geometry, x, kernel)


def _conv_forward(x, kernel, geometry):
  # With symbolic zeros, JAX says which operands are differentiated: the first layer's input
  # (the images) is not, and its input gradient, the costliest direction there, is never
  # traced, timed or run.
  residuals = (x.value, kernel.value, x.perturbed, kernel.perturbed)
  return _conv(x.value, kernel.value, geometry), residuals


def _conv_backward(geometry, residuals, out_grad):
  x, kernel, input_differentiated, kernel_differentiated = residuals
  if isinstance(out_grad, jax.custom_derivatives.SymbolicZero):  # the output is never used
    return None, None
  return (_run('input_grad', geometry, x, kernel, out_grad) if input_differentiated else None,
          _run('kernel_grad', geometry, x, kernel, out_grad) if kernel_differentiated else None)


_conv.defvjp(_conv_forward, _conv_backward, symbolic_zeros=True)

Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
