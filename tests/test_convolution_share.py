"""experiments/benchmarks/convolution_share.py: which ops of a compiled step it counts."""

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'experiments', 'benchmarks'))
from convolution_share import convolution_ops  # noqa: E402


def test_counts_the_convolutions_of_a_compiled_step_and_nothing_else():
  def step(images, kernel, weights):
    features = jax.lax.conv_general_dilated(images, kernel, (1, 1), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.tanh(features).reshape(images.shape[0], -1) @ weights

  hlo = jax.jit(step).lower(jnp.zeros((2, 8, 8, 3)), jnp.zeros((3, 3, 3, 4)),
                            jnp.zeros((256, 10))).compile().as_text()
  found = convolution_ops(hlo)
  assert len(found) == 1
  name, = found
  assert f'{name} = ' in hlo and 'convolution(' in hlo.split(f'{name} = ', 1)[1].split('\n')[0]
  assert convolution_ops('  %ffi_call.5 = f32[2]{0} custom-call(f32[2]{0} %p), '
                         'custom_call_target="JaxcnnConvForward"\n'
                         '  %custom-call.1 = f32[2]{0} custom-call(f32[2]{0} %p), '
                         'custom_call_target="Sharding"') == {'ffi_call.5'}
  assert convolution_ops(
      '  %dot.3 = f32[4,4]{1,0} dot(f32[4,4]{1,0} %a, f32[4,4]{1,0} %b), '
      'metadata={op_name="jit(train_step)/Conv_0/dot_conv_forward/dot_general"}\n'
      '  %dot.4 = f32[4,4]{1,0} dot(f32[4,4]{1,0} %a, f32[4,4]{1,0} %b), '
      'metadata={op_name="jit(train_step)/fc/dot_general"}') == {'dot.3'}
