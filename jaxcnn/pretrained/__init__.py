"""torchvision's pretrained ImageNet weights, converted into jaxcnn runs.

The registry below is the one place where an architecture that converts is declared, as
timm's `register_model` is: its torchvision name, the jaxcnn preset with the same layout, the
family whose name mapping (jaxcnn/pretrained/names.py) converts its tensors, and the accuracy
torchvision publishes for its IMAGENET1K_V1 weights, and the file that holds them. Nothing
here imports torch: the registry serves the README table and `jaxcnn.summary` as well;
downloading, reading and converting the files is jaxcnn/pretrained/download.py,
torch_files.py and conversion.py, the command `jaxcnn.convert`.
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
  file: str  # torchvision's IMAGENET1K_V1 weights file, under WEIGHTS_URL
  # torchvision builds GoogLeNet and Inception v3 with transform_input=True for these
  # weights: the model rescales ImageNet-normalized input to (pixel - 0.5) / 0.5 first.
  transform_input: bool = False


  @property
  def url(self) -> str:
    return WEIGHTS_URL + self.file


# Where torchvision publishes its weights (torchvision.models.get_model_weights(name)
# ['IMAGENET1K_V1'].url; tests/test_convert_torchvision.py checks that these agree).
WEIGHTS_URL = 'https://download.pytorch.org/models/'
ARCHS: dict[str, Arch] = {}


def register(name: str, config: str, family: str, accuracy: str, file: str, **options) -> None:
  if name in ARCHS:
    raise ValueError(f'arch {name!r} is registered twice')
  ARCHS[name] = Arch(name, config, family, accuracy, file, **options)


register('alexnet', 'alexnet.py:torchvision', 'alexnet', '56.52 / 79.07',
         'alexnet-owt-7be5be79.pth')
for _depth, _plain, _plain_file, _bn, _bn_file in (
    (11, '69.02 / 88.63', '8a719046', '70.37 / 89.81', '6002323d'),
    (13, '69.93 / 89.25', '19584684', '71.59 / 90.37', 'abd245e5'),
    (16, '71.59 / 90.38', '397923af', '73.36 / 91.52', '6c64b313'),
    (19, '72.38 / 90.88', 'dcbb9e9d', '74.22 / 91.84', 'c79401a0')):
  register(f'vgg{_depth}', f'vgg.py:vgg{_depth}', 'vgg', _plain, f'vgg{_depth}-{_plain_file}.pth')
  register(f'vgg{_depth}_bn', f'vgg.py:vgg{_depth}_bn', 'vgg', _bn,
           f'vgg{_depth}_bn-{_bn_file}.pth')
register('googlenet', 'googlenet.py:torchvision', 'googlenet', '69.78 / 89.53',
         'googlenet-1378be20.pth', transform_input=True)
register('inception_v3', 'inception_v3.py:default', 'inception_v3', '77.29 / 93.45',
         'inception_v3_google-0cc3c7bd.pth', transform_input=True)
for _depth, _accuracy, _file in ((18, '69.76 / 89.08', 'f37072fd'),
                                 (34, '73.31 / 91.42', 'b627a593'),
                                 (50, '76.13 / 92.86', '0676ba61'),
                                 (101, '77.37 / 93.55', '63fe2227'),
                                 (152, '78.31 / 94.05', '394f9c45')):
  register(f'resnet{_depth}', f'resnet.py:resnet{_depth}', 'resnet', _accuracy,
           f'resnet{_depth}-{_file}.pth')
for _depth, _accuracy, _file in ((121, '74.43 / 91.97', 'a639ec97'),
                                 (169, '75.60 / 92.81', 'b2777c0a'),
                                 (201, '76.90 / 93.37', 'c1103571')):
  register(f'densenet{_depth}', f'densenet.py:densenet{_depth}', 'densenet', _accuracy,
           f'densenet{_depth}-{_file}.pth')


def arch(name: str) -> Arch:
  """The registered arch `name`; a UserError that suggests the closest name otherwise."""
  if name not in ARCHS:
    close = difflib.get_close_matches(name, ARCHS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ''
    raise UserError(f"unknown --arch '{name}'; {hint}known: {', '.join(ARCHS)}")
  return ARCHS[name]
