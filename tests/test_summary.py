"""The summary tool against REFERENCE.md: exact parameter counts, MACs within 0.5%,
receptive fields of stacked convolutions."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import pytest

from jaxcnn import summary
from jaxcnn.config import load_module

# The README table test reads the summaries that the reference tests made: one worker runs all.
pytestmark = pytest.mark.xdist_group('summary')

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs')

# config preset -> (trainable parameters, GMACs or None where REFERENCE.md gives none)
REFERENCE = {
    'lenet.py:default': (61_706, 0.000417),
    'alexnet.py:default': (60_965_224, 0.724),
    'alexnet.py:torchvision': (61_100_840, 0.714),
    'vgg.py:vgg11': (132_863_336, 7.609),
    'vgg.py:vgg13': (133_047_848, 11.308),
    'vgg.py:vgg16': (138_357_544, 15.470),
    'vgg.py:vgg19': (143_667_240, 19.632),
    'vgg.py:vgg11_bn': (132_868_840, 7.609),
    'vgg.py:vgg13_bn': (133_053_736, 11.308),
    'vgg.py:vgg16_bn': (138_365_992, 15.470),
    'vgg.py:vgg19_bn': (143_678_248, 19.632),
    'nin.py:default': (7_439_608, 0.966),
    'googlenet.py:default': (13_378_280, 1.583),  # with aux heads; they add no eval MACs
    'googlenet.py:torchvision': (13_004_888, 1.498),
    'inception_v3.py:default': (27_161_264, 5.713),
    'resnet.py:resnet18': (11_689_512, 1.814),
    'resnet.py:resnet34': (21_797_672, 3.664),
    'resnet.py:resnet50': (25_557_032, 4.089),
    'resnet.py:resnet101': (44_549_160, 7.801),
    'resnet.py:resnet152': (60_192_808, 11.514),
    'resnet.py:cifar_resnet20': (269_722, None),
    'resnet.py:cifar_resnet32': (464_154, None),
    'resnet.py:cifar_resnet44': (658_586, None),
    'resnet.py:cifar_resnet56': (853_018, None),
    'resnet.py:cifar_resnet110': (1_727_962, None),
    'resnet.py:cifar_plain20': (269_722, None),
    'resnet.py:cifar_plain56': (853_018, None),
    'densenet.py:densenet121': (7_978_856, 2.834),
    'densenet.py:densenet169': (14_149_480, 3.360),
    'densenet.py:densenet201': (20_013_928, 4.291),
    'densenet.py:cifar_densenet_bc100': (769_162, None),
}


def config_of(key):
  file, preset = key.split(':')
  return load_module(os.path.join(CONFIGS, file)).get_config(preset)


_SUMMARIES = {}
_summarize_config = summary.summarize_config  # before the README table test replaces it


def summarize_config(config) -> dict:
  """summary.summarize_config, once per config in this process: the README table test
  summarizes every preset that the reference tests summarized (20 s of tracing, twice)."""
  key = config.to_json_best_effort(sort_keys=True)
  if key not in _SUMMARIES:
    _SUMMARIES[key] = _summarize_config(config)
  return _SUMMARIES[key]


@pytest.mark.parametrize('key', sorted(REFERENCE))
def test_params_and_macs_match_reference(key):
  params, gmacs = REFERENCE[key]
  result = summarize_config(config_of(key))
  assert result['params'] == params
  if gmacs is not None:
    assert result['macs'] == pytest.approx(gmacs * 1e9, rel=0.005)


def test_lenet_layers_exactly():
  result = summary.summarize_config(config_of('lenet.py:default'))
  rows = {r['path']: r for r in result['layers']}
  assert result['macs'] == 416_520  # 117,600 + 240,000 + 48,000 + 10,080 + 840
  assert rows['conv1']['output_shape'] == [1, 28, 28, 6] or rows['conv1']['output_shape'] == (1, 28, 28, 6)
  assert (rows['conv1']['params'], rows['conv2']['params'], rows['fc1']['params']) == (156, 2416, 48_120)
  assert [rows[k]['receptive_field'] for k in ('conv1', 'conv2')] == [5, 14]
  assert result['receptive_field'] == 16 and result['stride'] == 4


class StackedConvs(nn.Module):
  num_classes: int
  layers: int
  kernel: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    for _ in range(self.layers):
      x = nn.relu(nn.Conv(8, (self.kernel, self.kernel), padding='SAME')(x))
    return x.mean(axis=(1, 2))


@pytest.mark.parametrize('layers, field', [(1, 3), (2, 5), (3, 7)])
def test_stacked_3x3_receptive_field(layers, field):
  result = summary.summarize(StackedConvs(10, layers), (1, 16, 16, 8))
  assert result['receptive_field'] == field
  assert result['stride'] == 1
  # Three 3x3 layers cost 27 C^2 weights against 49 C^2 for one 7x7 (claim 6).
  weights = result['params'] - 8 * layers  # minus biases
  assert weights == layers * 9 * 8 * 8


def test_strided_conv_and_pool_compose():
  class Net(nn.Module):
    num_classes: int = 1

    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(4, (7, 7), strides=2, padding=3)(x)  # rf 7, stride 2
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')  # rf 7 + 2*2 = 11, stride 4
      return nn.Conv(4, (3, 3))(x)  # rf 11 + 2*4 = 19, stride 4

  result = summary.summarize(Net(), (1, 32, 32, 3))
  assert [r['receptive_field'] for r in result['layers']] == [7, 11, 19]
  assert [r['stride'] for r in result['layers']] == [2, 4, 4]


def test_json_cli():
  out = subprocess.run([sys.executable, '-m', 'jaxcnn.summary', '--config',
                        os.path.join(CONFIGS, 'alexnet.py'), '--json'],
                       capture_output=True, text=True, check=True).stdout
  result = json.loads(out)
  assert result['params'] == 60_965_224
  assert result['macs'] == pytest.approx(0.724e9, rel=0.005)
  assert result['receptive_field'] == 195


def test_readme_model_table_is_current(monkeypatch):
  monkeypatch.setattr(summary, 'summarize_config', summarize_config)
  readme = open(os.path.join(os.path.dirname(CONFIGS), 'README.md')).read()
  table = readme.split('<!-- model-table -->\n')[1].split('\n<!-- /model-table -->')[0]
  assert table == summary.model_table(CONFIGS)
