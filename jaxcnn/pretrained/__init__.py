"""torchvision's pretrained ImageNet weights, converted into jaxcnn runs.

The registry below is the one place where an architecture that converts is declared, as
timm's `register_model` is: its torchvision name, the jaxcnn preset with the same layout, the
family whose name mapping (jaxcnn/pretrained/names.py) converts its tensors, and the accuracy
torchvision publishes for its IMAGENET1K_V1 weights. Nothing here imports torch: the
registry serves the README table and `jaxcnn.summary` as well; reading and converting the
files is jaxcnn/pretrained/torch_files.py and conversion.py, the command `jaxcnn.convert`.
"""

import dataclasses
import difflib

from jaxcnn.errors import UserError


@dataclasses.dataclass(frozen=True)
class Arch:
  name: str  # torchvision's model name, as torchvision.models.get_model takes it
  config: str  # configs/FILE.py:PRESET, the jaxcnn preset with torchvision's layout
  family: str  # the name mapping of jaxcnn/pretrained/names.py that converts its tensors
  accuracy: str  # torchvision's published ImageNet top-1 / top-5 (%) of IMAGENET1K_V1
  # torchvision builds GoogLeNet and Inception v3 with transform_input=True for these
  # weights: the model rescales ImageNet-normalized input to (pixel - 0.5) / 0.5 first.
  transform_input: bool = False


ARCHS: dict[str, Arch] = {}


def register(name: str, config: str, family: str, accuracy: str, **options) -> None:
  if name in ARCHS:
    raise ValueError(f'arch {name!r} is registered twice')
  ARCHS[name] = Arch(name, config, family, accuracy, **options)


register('alexnet', 'alexnet.py:torchvision', 'alexnet', '56.52 / 79.07')
for _depth, _plain, _bn in ((11, '69.02 / 88.63', '70.37 / 89.81'),
                            (13, '69.93 / 89.25', '71.59 / 90.37'),
                            (16, '71.59 / 90.38', '73.36 / 91.52'),
                            (19, '72.38 / 90.88', '74.22 / 91.84')):
  register(f'vgg{_depth}', f'vgg.py:vgg{_depth}', 'vgg', _plain)
  register(f'vgg{_depth}_bn', f'vgg.py:vgg{_depth}_bn', 'vgg', _bn)
register('googlenet', 'googlenet.py:torchvision', 'googlenet', '69.78 / 89.53',
         transform_input=True)
register('inception_v3', 'inception_v3.py:default', 'inception_v3', '77.29 / 93.45',
         transform_input=True)
for _depth, _accuracy in ((18, '69.76 / 89.08'), (34, '73.31 / 91.42'), (50, '76.13 / 92.86'),
                          (101, '77.37 / 93.55'), (152, '78.31 / 94.05')):
  register(f'resnet{_depth}', f'resnet.py:resnet{_depth}', 'resnet', _accuracy)
for _depth, _accuracy in ((121, '74.43 / 91.97'), (169, '75.60 / 92.81'),
                          (201, '76.90 / 93.37')):
  register(f'densenet{_depth}', f'densenet.py:densenet{_depth}', 'densenet', _accuracy)


def arch(name: str) -> Arch:
  """The registered arch `name`; a UserError that suggests the closest name otherwise."""
  if name not in ARCHS:
    close = difflib.get_close_matches(name, ARCHS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ''
    raise UserError(f"unknown --arch '{name}'; {hint}known: {', '.join(ARCHS)}")
  return ARCHS[name]
