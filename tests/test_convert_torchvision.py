"""jaxcnn.convert against torchvision itself: its own model classes with random weights,
converted into jaxcnn runs, restored, and run side by side with torchvision in eval mode (the
deeper variants of a family: every tensor converted, not run); its transform_input; its
weights' addresses. What needs no torchvision is tests/test_convert.py.

Needs torch and torchvision (pip install torch==2.14.1 torchvision==0.29.1; torch 2.13 with
PyPI's torchvision fails to import): without them every test here is skipped.
"""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='torch is not installed')
torchvision = pytest.importorskip('torchvision', reason='torchvision is not installed')

import jaxcnn  # noqa: E402
from conftest import param_count  # noqa: E402
from jaxcnn import pretrained  # noqa: E402
from jaxcnn.models import googlenet, inception_v3  # noqa: E402
from jaxcnn.models.batch_norm import BatchNorm  # noqa: E402
from jaxcnn.pretrained import conversion, torch_files  # noqa: E402

# XLA's optimizations take longer to compile than these tiny forward passes take to run;
# they do not change what is computed.
pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)

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


def fill_randomly(model):
  """Random weights for every layer of a torch model: He-normal kernels (so that activations
  keep their scale), biases and BN shifts N(0, 0.1) and N(0, 0.2), BN scales U(0.5, 1.5),
  running statistics reset. Kernels of over 10M weights (AlexNet's and VGG's classifiers)
  are 1% dense, with the same variance per output: dense, VGG-19's checkpoint alone took
  5 s of the 2-core machine to write, and the test tells the layouts apart as well."""
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
        weight = module.weight
        fan_in = weight[0].numel()
        if weight.numel() > 10**7:
          weight.zero_()
          picked = torch.randint(weight.numel(), (weight.numel() // 100,))
          weight.view(-1)[picked] = torch.randn(len(picked)) * (2 / (fan_in / 100)) ** 0.5
        else:
          weight.normal_(0.0, (2 / fan_in) ** 0.5)
        if module.bias is not None:
          module.bias.normal_(0.0, 0.1)
      elif isinstance(module, torch.nn.BatchNorm2d):
        module.reset_running_stats()
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)


def torchvision_model(arch, seed: int = 0):
  """torchvision's own class for `arch` as its pretrained weights build it, with random
  weights (fill_randomly) and BN running statistics from 3 random batches."""
  torch.manual_seed(seed)
  options = (dict(transform_input=True, aux_logits=True, init_weights=False)
             if arch.transform_input else {})
  with torch.device('meta'):  # torchvision's own initialization: replaced anyway
    model = torchvision.models.get_model(arch.name, weights=None, **options)
  model = model.to_empty(device='cpu')
  fill_randomly(model)
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


def jaxcnn_logits(module, variables, inputs: np.ndarray) -> np.ndarray:
  return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, inputs))


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
    if isinstance(context.module, BatchNorm):
      found.add(context.module.epsilon)
    return call(*args, **kwargs)

  size = restored.config.data.image_size
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: restored.model.apply(v, np.zeros((1, size, size, 3), np.float32)),
                   restored.variables)
  return found


# The shallowest of each family and block kind runs side by side with torchvision; the deeper
# variants repeat the same blocks, converted by the same code, and their every tensor's name and
# shape is checked without running them (a logits comparison each: 80 s of the 2-core machine).
SIDE_BY_SIDE = ('alexnet', 'vgg11', 'vgg11_bn', 'googlenet', 'inception_v3', 'resnet18',
                'resnet50', 'densenet121')
DEEPER = [name for name in pretrained.ARCHS if name not in SIDE_BY_SIDE]


def test_every_family_runs_side_by_side():
  assert {pretrained.arch(name).family for name in DEEPER} <= {
      pretrained.arch(name).family for name in SIDE_BY_SIDE}


@pytest.mark.parametrize('name', SIDE_BY_SIDE)
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


@pytest.mark.parametrize('name', DEEPER)
def test_deeper_variant_converts_every_tensor_of_torchvisions(name):
  """convert rejects a tensor that is extra, missing or of another shape: it takes the
  state_dict of torchvision's class (shapes only, as zeros) whole, with its parameter count."""
  with torch.device('meta'):
    model = torchvision.models.get_model(name, weights=None)
  state = {key: np.broadcast_to(np.float32(0), value.shape)  # no memory: one zero, strided
           for key, value in model.state_dict().items()}
  variables = conversion.convert(pretrained.arch(name), state, 'zeros')
  assert param_count(variables['params']) == sum(p.numel() for p in model.parameters())
  assert param_count(variables.get('batch_stats', {})) == sum(
      buffer.numel() for key, buffer in model.named_buffers()
      if not key.endswith('num_batches_tracked'))


@pytest.mark.parametrize('name', ['googlenet', 'inception_v3'])
def test_transform_input_is_the_configs_normalization(name):
  """torchvision's transform_input, on ImageNet-normalized pixels, gives (pixel - 0.5) / 0.5:
  what a GoogLeNet or Inception v3 run normalizes with (tests/test_convert.py checks the
  configs)."""
  pixels = np.random.default_rng(0).uniform(size=(1, 3, 8, 8)).astype(np.float32)
  with torch.device('meta'):
    model = torchvision.models.get_model(name, weights=None, transform_input=True,
                                         aux_logits=False, init_weights=False)
  normalized = (pixels - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
  transformed = model._transform_input(torch.from_numpy(normalized)).numpy()
  np.testing.assert_allclose(transformed, (pixels - 0.5) / 0.5, atol=1e-6)


def test_registry_has_torchvisions_addresses_and_accuracies():
  for name, arch in pretrained.ARCHS.items():
    weights = torchvision.models.get_model_weights(name)['IMAGENET1K_V1']
    assert arch.url == weights.url
    metrics = weights.meta['_metrics']['ImageNet-1K']
    assert arch.accuracy == f"{metrics['acc@1']:.2f} / {metrics['acc@5']:.2f}"


