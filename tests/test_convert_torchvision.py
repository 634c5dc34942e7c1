"""jaxcnn.convert: torchvision's own model classes with random weights, converted into jaxcnn
runs, restored, and run side by side with torchvision in eval mode; the layout conversions one
by one; refusals of weights that do not fit; the command line.

Needs the `convert` extra (torch, torchvision): without it every test here is skipped.
"""

import functools
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason="the 'convert' extra (torch) is not installed")
torchvision = pytest.importorskip('torchvision',
                                  reason="the 'convert' extra (torchvision) is not installed")

import jaxcnn  # noqa: E402
from conftest import cli_env, param_count  # noqa: E402
from jaxcnn import pretrained  # noqa: E402
from jaxcnn.errors import UserError  # noqa: E402
from jaxcnn.models import googlenet, inception_v3  # noqa: E402
from jaxcnn.models.layers import GroupedConv  # noqa: E402
from jaxcnn.pretrained import conversion, layout, torch_files  # noqa: E402

# Batches of 2 small images: one torch thread runs them 20x faster than two threads on a
# shared 2-core machine.
torch.set_num_threads(1)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Input sides: small, but each large enough that what could go wrong shows. AlexNet at 224
# flattens its own 6x6 map and at 100 a 2x2 one that the adaptive pool repeats to 6x6; VGG's
# 2x2 map likewise; GoogLeNet's 40 leaves odd maps, where ceil-mode pooling rounds up;
# Inception v3's 107 ends on 2x2 (75 is its smallest).
SIZES = {'alexnet': (224, 100), 'googlenet': (40,), 'inception_v3': (107,)}
DEFAULT_SIZE = {'vgg': 64, 'resnet': 32, 'densenet': 32}

# Auxiliary heads, run on random feature maps: (jaxcnn module name, its class, channels, side).
AUX_HEADS = {
    'googlenet': [('aux1', functools.partial(googlenet.AuxHead, 1000, 'torchvision'), 512, 14),
                  ('aux2', functools.partial(googlenet.AuxHead, 1000, 'torchvision'), 528, 14)],
    'inception_v3': [('AuxLogits', functools.partial(inception_v3.InceptionAux, 1000), 768, 17)],
}
TORCH_AUX = {'aux1': 'aux1', 'aux2': 'aux2', 'AuxLogits': 'AuxLogits'}


def sizes(arch) -> tuple[int, ...]:
  return SIZES.get(arch.name) or (DEFAULT_SIZE[arch.family],)


def accumulate_batch_norm(module, batches):
  """Running statistics from `batches` (train mode, cumulative average), then eval mode."""
  norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  for norm in norms:
    norm.momentum = None  # the plain average of the batches' statistics
  module.train()
  with torch.no_grad():
    for batch in batches:
      module(batch)
  module.eval()


def torchvision_model(arch, seed: int = 0):
  """torchvision's own class for `arch` as its pretrained weights build it, with random
  weights: BN scales and shifts away from 1 and 0, running statistics from 3 random batches."""
  torch.manual_seed(seed)
  options = dict(transform_input=True, aux_logits=True, init_weights=True) if arch.transform_input else {}
  model = torchvision.models.get_model(arch.name, weights=None, **options)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)
  side = sizes(arch)[0]
  aux_heads = {name: getattr(model, TORCH_AUX[name]) for name, *_ in AUX_HEADS.get(arch.name, [])}
  if arch.name == 'inception_v3':  # its head runs in training only, and only on 17x17 maps
    model.AuxLogits = None
  accumulate_batch_norm(model, [torch.randn(2, 3, side, side) for _ in range(3)])
  for name, _, channels, aux_side in AUX_HEADS.get(arch.name, []):
    setattr(model, TORCH_AUX[name], aux_heads[name])
    accumulate_batch_norm(aux_heads[name],
                          [torch.randn(2, channels, aux_side, aux_side) for _ in range(3)])
  return model.eval()


def numpy_state(model) -> dict[str, np.ndarray]:
  return torch_files.as_numpy(model.state_dict(), 'random weights')


def torch_logits(module, inputs_nhwc: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return module(torch.from_numpy(inputs_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


# XLA's optimizations take longer to compile than these tiny forward passes take to run;
# they do not change what is computed.
UNOPTIMIZED = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def jaxcnn_logits(module, variables, inputs: np.ndarray) -> np.ndarray:
  return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False),
                            compiler_options=UNOPTIMIZED)(variables, inputs))


def assert_same_logits(ours, theirs):
  """Equal to 1e-4 of the largest magnitude, and not trivially (outputs vary)."""
  assert ours.shape == theirs.shape
  scale = np.abs(theirs).max()
  assert scale > 0 and np.ptp(theirs) > 1e-3 * scale
  error = np.abs(ours - theirs).max() / scale
  assert error <= 1e-4, error


def batch_norm_epsilons(restored) -> set[float]:
  """The epsilon of every BatchNorm the jaxcnn model calls."""
  found = set()

  def record(call, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm):
      found.add(context.module.epsilon)
    return call(*args, **kwargs)

  size = restored.config.data.image_size
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: restored.model.apply(v, np.zeros((1, size, size, 3), np.float32)),
                   restored.variables)
  return found


@pytest.mark.parametrize('name', list(pretrained.ARCHS))
def test_converted_run_computes_torchvisions_logits(name, tmp_path):
  arch = pretrained.arch(name)
  model = torchvision_model(arch)
  workdir = str(tmp_path / name)
  conversion.write_run(arch, conversion.convert(arch, numpy_state(model), 'random weights'),
                       workdir)
  restored = jaxcnn.restore(workdir)

  trainable = sum(p.numel() for p in model.parameters())
  assert param_count(restored.variables['params']) == trainable
  assert batch_norm_epsilons(restored) == {
      m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
  rng = np.random.default_rng(1)
  config_mean, config_std = (np.array(restored.config.data[key], np.float32)
                             for key in ('mean', 'std'))
  for side in sizes(arch):
    pixels = rng.uniform(size=(2, side, side, 3)).astype(np.float32)  # pixel / 255
    # Each side normalizes as it expects: torchvision with ImageNet's statistics (and
    # GoogLeNet's and Inception v3's transform_input), jaxcnn with its run's config.
    assert_same_logits(jaxcnn_logits(restored.model, restored.variables,
                                     (pixels - config_mean) / config_std),
                       torch_logits(model, (pixels - IMAGENET_MEAN) / IMAGENET_STD))
  for module_name, head, channels, side in AUX_HEADS.get(name, []):
    features = rng.standard_normal((2, side, side, channels)).astype(np.float32)
    variables = {collection: restored.variables[collection][module_name]
                 for collection in ('params', 'batch_stats')}
    assert_same_logits(jaxcnn_logits(head(), variables, features),
                       torch_logits(getattr(model, TORCH_AUX[module_name]), features))


def test_transform_input_is_the_configs_normalization():
  """torchvision's transform_input, on ImageNet-normalized pixels, gives (pixel - 0.5) / 0.5:
  what a GoogLeNet or Inception v3 run normalizes with, where other runs use ImageNet's."""
  pixels = np.random.default_rng(0).uniform(size=(1, 3, 8, 8)).astype(np.float32)
  model = torchvision.models.googlenet(weights=None, transform_input=True, aux_logits=False,
                                       init_weights=False)
  normalized = (pixels - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
  transformed = model._transform_input(torch.from_numpy(normalized)).numpy()
  np.testing.assert_allclose(transformed, (pixels - 0.5) / 0.5, atol=1e-6)
  for name, arch in pretrained.ARCHS.items():
    config = conversion.run_config(arch)
    expected = ((0.5,) * 3, (0.5,) * 3) if name in ('googlenet', 'inception_v3') else (
        tuple(IMAGENET_MEAN.tolist()), tuple(IMAGENET_STD.tolist()))
    np.testing.assert_allclose((config.data.mean, config.data.std), expected, rtol=1e-6)


@pytest.mark.parametrize('groups', [1, 2])
def test_conv_kernel_layout_with_groups(groups):
  """OIHW -> HWIO, for a grouped convolution too: jaxcnn's GroupedConv (AlexNet's towers) and
  Flax's feature groups compute torch's Conv2d(groups=...) with the converted kernel."""
  torch.manual_seed(0)
  conv = torch.nn.Conv2d(8, 12, (3, 5), stride=2, padding=1, groups=groups)
  kernel = layout.conv_kernel(conv.weight.detach().numpy())
  assert kernel.shape == (3, 5, 8 // groups, 12)
  x = np.random.default_rng(0).standard_normal((2, 9, 11, 8)).astype(np.float32)
  params = {'params': {'kernel': kernel, 'bias': conv.bias.detach().numpy()}}
  expected = torch_logits(conv, x).transpose(0, 2, 3, 1)
  grouped = GroupedConv(12, (3, 5), groups=groups, strides=2, padding=1).apply(params, x)
  flax_groups = nn.Conv(12, (3, 5), strides=2, padding=1, feature_group_count=groups).apply(
      params, x)
  np.testing.assert_allclose(grouped, expected, atol=1e-5)
  np.testing.assert_allclose(flax_groups, expected, atol=1e-5)


def test_dense_kernel_layout_and_the_flatten_order():
  """A Linear is transposed; one that reads torch's (C, H, W) flatten is reordered to read
  jaxcnn's (H, W, C) flatten of the same map."""
  torch.manual_seed(0)
  linear = torch.nn.Linear(5 * 3 * 3, 4)
  weight = linear.weight.detach().numpy()
  np.testing.assert_array_equal(layout.dense_kernel(weight), weight.T)
  feature_map = np.random.default_rng(0).standard_normal((2, 5, 3, 3)).astype(np.float32)  # NCHW
  expected = linear(torch.from_numpy(feature_map).flatten(1)).detach().numpy()
  nhwc_flat = feature_map.transpose(0, 2, 3, 1).reshape(2, -1)
  ours = nhwc_flat @ layout.dense_kernel(weight, flattened_channels=5) + linear.bias.detach().numpy()
  np.testing.assert_allclose(ours, expected, atol=1e-5)
  assert np.abs(nhwc_flat @ weight.T + linear.bias.detach().numpy() - expected).max() > 0.1
  with pytest.raises(ValueError, match='no square map'):
    layout.dense_kernel(np.zeros((4, 40), np.float32), flattened_channels=5)


def test_old_densenet_keys_are_renamed():
  """torchvision's published DenseNet files name a layer's modules 'norm.1', 'conv.2', ...;
  their weights convert as today's names do."""
  arch = pretrained.arch('densenet121')
  state = numpy_state(torchvision.models.densenet121(weights=None))
  old = {key.replace('.norm1.', '.norm.1.').replace('.conv2.', '.conv.2.'): value
         for key, value in state.items()}
  assert 'features.denseblock1.denselayer1.norm.1.weight' in old
  converted = conversion.convert(arch, old, 'old names')
  expected = conversion.convert(arch, state, 'new names')
  jax.tree.map(np.testing.assert_array_equal, converted, expected)


@functools.lru_cache
def resnet_state(name: str) -> dict[str, np.ndarray]:
  torch.manual_seed(0)
  return numpy_state(torchvision.models.get_model(name, weights=None))


def altered(state, drop=(), add=None, reshape=None):
  """A copy of `state` without the keys in `drop`, with `add` added and `reshape`
  ({key: shape}) tensors replaced by zeros of another shape."""
  result = {key: value for key, value in state.items() if key not in drop}
  result.update(add or {})
  for key, shape in (reshape or {}).items():
    result[key] = np.zeros(shape, np.float32)
  return result


# (arch, state_dict maker, the one error line's text)
MISMATCHES = {
    'another_architecture': ('resnet18', lambda: resnet_state('resnet50'),
                             "source does not hold torchvision's resnet18 weights: its tensor "
                             "'layer1.0.conv1.weight' has shape (64, 64, 1, 1) where resnet18's "
                             "has (64, 64, 3, 3) (another architecture's weights?)"),
    'fewer_classes': ('resnet18', lambda: altered(resnet_state('resnet18'),
                                                  reshape={'fc.weight': (10, 512)}),
                      "its tensor 'fc.weight' has shape (10, 512) where resnet18's has "
                      '(1000, 512)'),
    'missing': ('resnet18', lambda: altered(resnet_state('resnet18'),
                                            drop=('bn1.running_var', 'fc.bias')),
                "it lacks resnet18's tensor 'bn1.running_var' and 1 more"),
    'extra': ('resnet18', lambda: altered(resnet_state('resnet18'),
                                          add={'head.weight': np.zeros((2, 2), np.float32)}),
              "it has a tensor 'head.weight', which resnet18 has not"),
    'bn_weights_for_plain_vgg': ('vgg11_bn', lambda: numpy_state(torchvision.models.vgg11()),
                                 "it has a tensor 'features.3.weight', which vgg11_bn has not"),
}


@pytest.mark.parametrize('case', list(MISMATCHES))
def test_a_mismatch_names_the_first_differing_tensor(case, tmp_path):
  name, state, words = MISMATCHES[case]
  with pytest.raises(UserError) as error:
    conversion.convert(pretrained.arch(name), state(), 'source')
  assert '\n' not in str(error.value) and words in str(error.value)


def test_unknown_arch_suggests_the_closest():
  with pytest.raises(UserError, match=r"unknown --arch 'resnet51'; did you mean 'resnet50'\?"):
    pretrained.arch('resnet51')
  with pytest.raises(UserError, match=r"unknown --arch 'vgg16bn'; did you mean 'vgg16_bn'\?"):
    pretrained.arch('vgg16bn')


def convert_cli(*args: str, env: dict | None = None):
  return subprocess.run([sys.executable, '-m', 'jaxcnn.convert', *args], capture_output=True,
                        text=True, env=cli_env(**(env or {})), timeout=300)


def assert_refused(result, line: str, tmp_path, files_before: list[str]):
  """Exit status 2, one `error:` line, and nothing written next to the workdir."""
  assert result.returncode == 2, result.stderr
  assert result.stderr.splitlines() == [f'error: {line}'], result.stderr
  assert result.stdout == ''
  assert sorted(os.listdir(tmp_path)) == files_before


@pytest.fixture(scope='module')
def resnet18_file(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('weights') / 'resnet18.pth')
  torch.manual_seed(0)
  torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
  return path


def test_cli_help_exits_0():
  result = convert_cli('--help')
  assert result.returncode == 0 and '--arch' in result.stdout + result.stderr


@pytest.mark.parametrize('case', ['unknown_arch', 'missing_file', 'other_architecture',
                                  'not_a_state_dict', 'offline'])
def test_cli_refuses_bad_input_in_one_line(case, resnet18_file, tmp_path):
  workdir = str(tmp_path / 'run')
  not_weights = tmp_path / 'notes.pth'
  not_weights.write_text('not weights')
  before = sorted(os.listdir(tmp_path))
  url = 'https://download.pytorch.org/models/resnet18-f37072fd.pth'
  cases = {
      'unknown_arch': (['--arch', 'resnet51'], {}, "unknown --arch 'resnet51'; did you mean "
                       f"'resnet50'? known: {', '.join(pretrained.ARCHS)}"),
      'missing_file': (['--arch', 'resnet18', '--weights', str(tmp_path / 'nope.pth')], {},
                       f"--weights {tmp_path / 'nope.pth'}: no such file"),
      'other_architecture': (['--arch', 'resnet34', '--weights', resnet18_file], {},
                             f"{resnet18_file} does not hold torchvision's resnet34 weights: it "
                             "lacks resnet34's tensor 'layer1.2.conv1.weight' and 79 more"),
      'not_a_state_dict': (['--arch', 'resnet18', '--weights', str(not_weights)], {}, None),
      # No network: every request goes to a proxy on a closed port; nothing is cached.
      'offline': (['--arch', 'resnet18'],
                  {'TORCH_HOME': str(tmp_path / 'torch_home'), 'https_proxy': 'http://127.0.0.1:9',
                   'HTTPS_PROXY': 'http://127.0.0.1:9', 'no_proxy': '', 'NO_PROXY': ''},
                  f'cannot download {url} ([Errno 111] Connection refused); fetch that file by hand '
                  'on a machine with internet and pass it as --weights FILE'),
  }
  args, env, line = cases[case]
  result = convert_cli(*args, '--workdir', workdir, env=env)
  if line is None:  # torch's own reason follows the file name
    assert result.stderr.startswith(f'error: --weights {not_weights}: torch cannot read it (')
    line = result.stderr.splitlines()[0][len('error: '):]
  if case == 'offline':  # torch says where it downloads to, on stdout; its cache stays empty
    assert result.stdout == (f'Downloading: "{url}" to {tmp_path}/torch_home/hub/checkpoints/'
                             'resnet18-f37072fd.pth\n')
    assert os.listdir(tmp_path / 'torch_home' / 'hub' / 'checkpoints') == []
    before, result.stdout = sorted([*before, 'torch_home']), ''
  assert_refused(result, line, tmp_path, before)
