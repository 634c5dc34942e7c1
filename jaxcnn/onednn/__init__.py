"""oneDNN's CPU convolutions (the library PyTorch runs on CPUs) as XLA custom calls.

`library()` compiles conv.cc against the oneDNN that the `onednn` and `onednn-devel` wheels
install and the FFI headers that jaxlib ships, once per source, oneDNN release, jax version and
machine, into the jaxcnn cache (a few seconds), and registers its three handlers with XLA.
Where a piece is missing (no C++ compiler, no oneDNN, another OS, no CPU device for oneDNN's
SYCL runtime) it returns None and convolutions stay XLA's.
`forward`, `input_gradient` and `filter_gradient` call the handlers: float32, NHWC
activations, HWIO filters, one group.
"""

import ctypes
import functools
import hashlib
import os
import pathlib
import re
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


PREFIX = pathlib.Path(sys.prefix)  # where the onednn wheels put include/ and lib/


def _compile_command(output: pathlib.Path) -> list[str] | None:
  compiler = shutil.which(os.environ.get('CXX', 'g++'))
  if not (compiler and sys.platform == 'linux' and (PREFIX / 'lib' / 'libdnnl.so').exists()
          and (PREFIX / 'include' / 'oneapi' / 'dnnl' / 'dnnl.hpp').exists()):
    return None
  return [compiler, '-O2', '-std=c++17', '-shared', '-fPIC', '-w',
          f'-I{jax.ffi.include_dir()}', f"-I{PREFIX / 'include'}", str(SOURCE),
          f"-L{PREFIX / 'lib'}", '-ldnnl',
          # DT_RPATH, which (unlike RUNPATH) also finds libdnnl's own libraries beside it
          '-Wl,--disable-new-dtags', f"-Wl,-rpath,{PREFIX / 'lib'}", '-o', str(output)]


def _find_cpu_device() -> None:
  """The wheel's oneDNN makes its CPU engine on the SYCL runtime's OpenCL CPU device, which the
  OpenCL loader finds through OCL_ICD_FILENAMES (the runtime's own listing in
  etc/OpenCL/vendors names a path of the machine that built it)."""
  device = PREFIX / 'lib' / 'libintelocl.so'
  listed = [name for name in os.environ.get('OCL_ICD_FILENAMES', '').split(':') if name]
  if device.exists() and str(device) not in listed:
    os.environ['OCL_ICD_FILENAMES'] = ':'.join([*listed, str(device)])


@functools.cache
def release() -> str | None:
  """The oneDNN release that the handlers build against ('3.13.2'), or None without one."""
  header = PREFIX / 'include' / 'oneapi' / 'dnnl' / 'dnnl_version.h'
  if not header.exists():
    return None
  version = dict(re.findall(r'#define DNNL_VERSION_(MAJOR|MINOR|PATCH) (\d+)', header.read_text()))
  return '{MAJOR}.{MINOR}.{PATCH}'.format(**version)


@functools.cache
def library() -> ctypes.CDLL | None:
  """The built and registered handlers, or None where they cannot be built or run here."""
  key = hashlib.sha256(f'{SOURCE.read_text()}{jax.__version__}{release()}'.encode()).hexdigest()[:16]
  path = cache_dir() / f'onednn_conv_{key}.so'
  if not path.exists():
    with tempfile.TemporaryDirectory(dir=cache_dir()) as building:
      command = _compile_command(pathlib.Path(building) / path.name)
      if command is None or subprocess.run(command, capture_output=True).returncode:
        return None
      os.replace(pathlib.Path(building) / path.name, path)  # whole, for a concurrent process
  _find_cpu_device()
  lib = ctypes.CDLL(str(path))
  if not lib.JaxcnnOnednnReady():
    return None
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
