"""The model families train end to end through `python -m jaxcnn.main` (but two: see below):
two steps on the offline digits, with each family at its smallest (input size, depth,
width), then an exact evaluation.

Together with test_train.py (LeNet) and test_parallel.py (AlexNet; a CIFAR ResNet in float64)
this runs a train step of every family but GoogLeNet and Inception v3, whose end-to-end runs
took 50 and 65 s of the suite, mostly XLA compiling their steps. Their presets' train and eval
steps, aux heads included, are traced and lowered for GPU and TPU in test_export.py, their
forward passes compute torchvision's logits in test_convert_torchvision.py, and the aux losses
go through a train step in test_googlenet.py. DenseNet's ImageNet layout is checked forward in
test_densenet.py; cifar_densenet trains its blocks here.
"""

import json
import os

import pytest

from conftest import UNOPTIMIZED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# config preset -> (smallest input size, overrides for the smallest of the family)
RUNS = {
    'vgg.py:vgg11_bn': (32, ('--config.model.hidden_units=64',)),
    'nin.py:default': (67, ()),
    'resnet.py:cifar_resnet20': (8, ('--config.model.depth=8',)),  # digits' own 8x8 (any size fits)
    'densenet.py:cifar_densenet_bc100': (4, ('--config.model.depth=10',)),
}

# Two steps of an unoptimized program check the same wiring, and XLA's optimizations would take
# longer than the steps they speed up; but for these: unoptimized, VGG's 3x3 convolutions took
# 25 s of its 40 s run to evaluate the 360 images.
OPTIMIZED = {'vgg.py:vgg11_bn'}


@pytest.mark.parametrize('preset', sorted(RUNS))
def test_trains_end_to_end(preset, digits_dir, run_cli, tmp_path):
  size, extra = RUNS[preset]
  workdir = tmp_path / 'run'
  result = run_cli(tmp_path, '--config', os.path.join(ROOT, 'configs', preset),
                   '--workdir', str(workdir), f'--config.data.data_dir={digits_dir}',
                   '--config.data.name=digits', f'--config.data.image_size={size}',
                   '--config.train.batch_size=8', '--config.eval.batch_size=120',
                   '--config.train.num_steps=2', '--config.train.log_every_steps=1',
                   '--config.eval.every_steps=2', '--config.checkpoint.every_steps=2',
                   '--config.train.conv_tuning=False',  # timing dozens of shapes: minutes
                   *extra, timeout=900,
                   env={} if preset in OPTIMIZED else UNOPTIMIZED)
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  train = [r for r in records if r['split'] == 'train']
  assert [r['step'] for r in train] == [1, 2]
  assert all(r['loss'] > 0 and r['loss'] == r['loss'] for r in train)  # finite, positive
  (evaluation,) = [r for r in records if r['split'] == 'eval']
  assert evaluation['num_examples'] == 360 and 0 <= evaluation['top1'] <= 1
  assert (workdir / 'checkpoints' / '2').is_dir()


def test_below_the_smallest_input_is_a_clear_error(run_cli, tmp_path):
  result = run_cli(tmp_path, '--config', os.path.join(ROOT, 'configs', 'densenet.py'),
                   '--config.data.name=synthetic', '--config.data.image_size=28',
                   '--workdir', str(tmp_path / 'run'))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: data.image_size=28 is too small for model 'DenseNet': the smallest input it "
      'accepts is 29x29']
