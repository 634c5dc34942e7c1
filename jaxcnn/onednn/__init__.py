"""oneDNN's CPU convolutions (the library PyTorch runs on CPUs) as XLA custom calls.

`library()` compiles conv.cc against the oneDNN that the `onednn-cpu-gomp` wheels install and
the FFI headers that jaxlib ships, once per source, jax version and machine, into the jaxcnn
cache (a few seconds), and registers its three handlers with XLA. Where a piece is missing
(no C++ compiler, no oneDNN, another OS) it returns None and convolutions stay XLA's.
`forward`, `input_gradient` and `filter_gradient` call the handlers: float32, NHWC
activations, HWIO filters, one group.
"""

import ctypes
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.cache import cache_dir

SOURCE = pathlib.Path(__file__).with_name('conv.cc')
_TARGETS = {'forward': 'JaxcnnConvForward', 'input_gradient': 'JaxcnnConvInputGradient',
            'filter_gradient': 'JaxcnnConvFilterGradient'}


def _compile_command(output: pathlib.Path) -> list[str] | None:
  compiler = shutil.which(os.environ.get('CXX', 'g++'))
  prefix = pathlib.Path(sys.prefix)  # where the onednn wheels put include/ and lib/
  if not (compiler and sys.platform == 'linux' and (prefix / 'lib' / 'libdnnl.so').exists()
          and (prefix / 'include' / 'oneapi' / 'dnnl' / 'dnnl.hpp').exists()):
    return None
  return [compiler, '-O2', '-std=c++17', '-shared', '-fPIC', '-w',
          f'-I{jax.ffi.include_dir()}', f"-I{prefix / 'include'}", str(SOURCE),
          f"-L{prefix / 'lib'}", '-ldnnl', f"-Wl,-rpath,{prefix / 'lib'}", '-o', str(output)]


@functools.cache
def library() -> ctypes.CDLL | None:
  """The built and registered handlers, or None where they cannot be built here."""
  key = hashlib.sha256(SOURCE.read_bytes() + jax.__version__.encode()).hexdigest()[:16]
  path = cache_dir() / f'onednn_conv_{key}.so'
  if not path.exists():
    with tempfile.TemporaryDirectory(dir=cache_dir()) as building:
      command = _compile_command(pathlib.Path(building) / path.name)
      if command is None or subprocess.run(command, capture_output=True).returncode:
        return None
      os.replace(pathlib.Path(building) / path.name, path)  # whole, for a concurrent process
  lib = ctypes.CDLL(str(path))
  for target in _TARGETS.values():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, target)), platform='cpu')
  return lib


def _call(direction: str, result_shape, first, second, geometry):
  (pad_top, pad_bottom), (pad_left, pad_right) = geometry.padding
  attributes = dict(zip(
      ('stride_h', 'stride_w', 'pad_top', 'pad_bottom', 'pad_left', 'pad_right', 'dilation_h',
       'dilation_w'),
      map(np.int64, (*geometry.strides, pad_top, pad_bottom, pad_left, pad_right,
                     *geometry.dilation))))
  call = jax.ffi.ffi_call(_TARGETS[direction], jax.ShapeDtypeStruct(result_shape, jnp.float32),
                          vmap_method='sequential')
  return call(first, second, **attributes)


def forward(x, kernel, geometry):
  return _call('forward', geometry.output_shape, x, kernel, geometry)


def input_gradient(out_grad, kernel, geometry):
  return _call('input_gradient', geometry.input_shape, out_grad, kernel, geometry)


def filter_gradient(x, out_grad, geometry):
  return _call('filter_gradient', geometry.kernel_shape, x, out_grad, geometry)
