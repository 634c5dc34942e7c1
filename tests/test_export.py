"""Every model family's train and eval steps lower for GPU and TPU on this CPU-only machine
(jax.export), with XLA's convolutions alone: the CPU formulations a tuned CPU run traces
(oneDNN's custom calls, the per-tap filter gradient) stay out of their modules.

The exports run in one subprocess with 8 CPU devices (tests/export_worker.py), which AlexNet's
(4, 2) tower mesh needs."""

import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env
from jaxcnn import models, onednn

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group('export')

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope='module')
def exported(once_per_session):
  def run_worker(_):
    result = subprocess.run([sys.executable, os.path.join(HERE, 'export_worker.py')],
                            capture_output=True, text=True, env=cli_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)

  return once_per_session('export', run_worker)


def modules(exported):
  return [(case, split, result[split]) for case, result in exported.items()
          for split in ('train', 'eval')]


def test_every_registered_model_is_exported(exported):
  assert sorted({result['model'] for result in exported.values()}) == models.model_names()


def test_steps_lower_for_cuda_and_tpu_with_xla_convolutions_alone(exported):
  for case, split, module in modules(exported):
    assert module['platforms'] == ['cuda', 'tpu'], (case, split)
    assert module['cpu_only'] == [], (case, split)
    # Each convolution the step traces (each direction) is one XLA convolution per platform.
    assert module['convolutions'] == 2 * module['convolutions_traced'] > 0, (case, split)


def test_cpu_lowering_of_the_same_steps_holds_the_cpu_formulations(exported):
  """Not vacuous: lowered for CPU, the CPU-tuned steps run oneDNN and the per-tap gradient."""
  onednn_forward = ['@JaxcnnConvForward', 'onednn_conv_forward'] if onednn.library() else []
  onednn_input_grad = (['@JaxcnnConvInputGradient', 'onednn_conv_input_grad']
                       if onednn.library() else [])
  for case in ('lenet5', 'cifar_resnet'):
    assert exported[case]['train']['cpu_only_on_cpu'] == sorted(
        onednn_forward + onednn_input_grad + ['taps_conv_kernel_grad'])
    assert exported[case]['eval']['cpu_only_on_cpu'] == onednn_forward


def test_alexnet_towers_stay_split_over_the_model_axis(exported):
  towers = exported['alexnet_towers_10crop']
  assert towers['train']['devices'] == towers['eval']['devices'] == 8
  # conv1-5's and fc6-7's kernels and biases, and their momentum in the train step (the eval
  # step reads no optimizer state).
  assert towers['params_split_over_model'] == 14
  assert towers['train']['exported_state_split_over_model'] == 28
  assert towers['eval']['exported_state_split_over_model'] == 14
  # Five conv layers: forward and filter gradient each, input gradient but for the images.
  assert towers['train']['convolutions_traced'] == 14


def test_ten_crop_eval_runs_the_views_one_at_a_time(exported):
  ten_crop = exported['alexnet_towers_10crop']['eval']
  assert ten_crop['image_shape'] == [8, 10, 227, 227, 3]
  assert ten_crop['convolutions_traced'] == 5  # the five conv layers once, in a loop over views


def test_bfloat16_compute_convolves_in_bfloat16(exported):
  for case, split, module in modules(exported):
    expected = ['bf16'] if case == 'resnet_bfloat16' else ['f32']
    assert module['convolution_dtypes'] == expected, (case, split)
