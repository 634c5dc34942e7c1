"""Where each jaxcnn tensor of a torchvision-layout model lives in torchvision's state_dict.

One `Family` per model family, all in this file: `module_name(model, path)` gives the
torchvision module of a jaxcnn module path (('layer1_0', 'downsample_conv') of ResNet is
'layer1.0.downsample.0'); `flattened` names the dense layers that read a flattened feature
map, with the channels of that map (their kernels are reordered, jaxcnn/pretrained/layout.py);
`current_key` renames keys that older torchvision checkpoints still carry. The leaf names
(kernel -> weight, mean -> running_mean, ...) are the same for every family: LEAVES.
"""

import dataclasses
import re
from collections.abc import Callable

from jaxcnn.models import vgg

# (jaxcnn collection, leaf) -> torchvision's parameter or buffer name.
LEAVES = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
          ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
          ('batch_stats', 'var'): 'running_var'}
LEAF_ORDER = ('weight', 'bias', 'running_mean', 'running_var')  # within a module, as torch's
# Buffers with no jaxcnn counterpart: BN's update counter (torchvision uses it only when
# its momentum is None; jaxcnn's BN has a fixed momentum).
IGNORED_BUFFERS = ('num_batches_tracked',)

# torchvision's BasicConv2d (GoogLeNet, Inception v3): `conv` and `bn`, which jaxcnn's
# BasicConv and ConvBN hold under Flax's automatic names.
_BASIC_CONV = {'Conv_0': 'conv', 'BatchNorm_0': 'bn'}


@dataclasses.dataclass(frozen=True)
class Family:
  module_name: Callable  # (jaxcnn model, jaxcnn module path) -> torchvision module name
  flattened: Callable = lambda model: {}  # model -> {module path: channels of the map it reads}
  current_key: Callable = lambda key: key  # an older checkpoint's key -> today's


def _renamed(path, names: dict[str, str]) -> str:
  return '.'.join(names.get(part, part) for part in path)


_ALEXNET = {'conv1': 'features.0', 'conv2': 'features.3', 'conv3': 'features.6',
            'conv4': 'features.8', 'conv5': 'features.10', 'fc6': 'classifier.1',
            'fc7': 'classifier.4', 'fc8': 'classifier.6'}


def _vgg_layers(model) -> dict[str, str]:
  """torchvision's `features` list: conv, (BN,) ReLU per conv and a max pool per stage."""
  names, index = {'fc6': 'classifier.0', 'fc7': 'classifier.3', 'fc8': 'classifier.6'}, 0
  for stage, convs in enumerate(vgg.STAGE_DEPTHS[model.depth], 1):
    for i in range(1, convs + 1):
      names[f'conv{stage}_{i}'] = f'features.{index}'
      if model.batch_norm:
        names[f'conv{stage}_{i}_bn'] = f'features.{index + 1}'
      index += 3 if model.batch_norm else 2
    index += 1
  return names


_GOOGLENET = {**_BASIC_CONV, 'branch2_reduce': 'branch2.0', 'branch2': 'branch2.1',
              'branch3_reduce': 'branch3.0', 'branch3': 'branch3.1', 'branch4': 'branch4.1'}
_RESNET = {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}
_DENSENET = {'conv0': 'features.conv0', 'norm0': 'features.norm0', 'norm_final': 'features.norm5'}


def _resnet(model, path) -> str:
  del model
  return _renamed([re.sub(r'^layer(\d+)_(\d+)$', r'layer\1.\2', part) for part in path], _RESNET)


def _densenet(model, path) -> str:
  del model
  parts = [re.sub(r'^block(\d+)_layer(\d+)$', r'features.denseblock\1.denselayer\2',
                  re.sub(r'^transition(\d+)$', r'features.transition\1', part)) for part in path]
  return _renamed(parts, _DENSENET)


# torchvision's own checkpoints name a dense layer's modules 'norm.1', 'conv.2', ...: its
# densenet loader renames them as here.
_OLD_DENSE_LAYER_KEY = re.compile(
    r'^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$')

FAMILIES = {
    'alexnet': Family(lambda model, path: _renamed(path, _ALEXNET),
                      flattened=lambda model: {('fc6',): model.widths[-1]}),
    'vgg': Family(lambda model, path: _renamed(path, _vgg_layers(model)),
                  flattened=lambda model: {('fc6',): vgg.STAGE_WIDTHS[-1]}),
    'googlenet': Family(lambda model, path: _renamed(path, _GOOGLENET),
                        flattened=lambda model: {('aux1', 'fc1'): 128, ('aux2', 'fc1'): 128}),
    'inception_v3': Family(lambda model, path: _renamed(path, _BASIC_CONV)),
    'resnet': Family(_resnet),
    'densenet': Family(_densenet,
                       current_key=lambda key: _OLD_DENSE_LAYER_KEY.sub(r'\1\2', key)),
}
