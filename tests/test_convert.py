"""jaxcnn.convert without torchvision: the layout conversions one by one against torch's
conventions (computed by XLA in NCHW/OIHW), the registry, refusals of state_dicts that do not
fit (built by hand in numpy), the command line's one-line errors (offline download
included), a converted run in the notebook, and fine-tuning from it (config.init_from).

torch (the `convert` extra) is needed only where a .pth file is read; those tests are skipped
without it. tests/test_convert_torchvision.py checks the logits against torchvision's own
classes.
"""

import base64
import functools
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import jaxcnn
from conftest import REPO, UNOPTIMIZED, cli_env, load_config, param_count, run_notebook
from jaxcnn import init_from, pretrained, train
from jaxcnn.checkpoint import Checkpoints
from jaxcnn.errors import UserError
from jaxcnn.models import create_model
from jaxcnn.models.layers import GroupedConv
from jaxcnn.pretrained import conversion, download, layout

# Its tests share a costly fixture: one xdist worker makes it once (--dist loadgroup).
pytestmark = [pytest.mark.xdist_group('convert'),
              pytest.mark.usefixtures('unoptimized')]  # XLA's optimizations off (conftest)


@functools.lru_cache
def keys_and_shapes(name: str) -> dict[str, tuple[int, ...]]:
  """torchvision's state_dict keys of `name`, with their shapes in PyTorch's layout."""
  arch = pretrained.arch(name)
  return {key: layout.torch_shape(target.shape)
          for key, target in conversion.targets(arch, conversion.run_config(arch)).items()}


def random_state(name: str, seed: int = 0) -> dict[str, np.ndarray]:
  """A state_dict of `name` built by hand: random tensors, positive running variances."""
  rng = np.random.default_rng(seed)
  return {key: np.abs(rng.standard_normal(shape, np.float32)) + 0.5 if key.endswith('_var')
          else rng.standard_normal(shape, np.float32) * 0.05
          for key, shape in keys_and_shapes(name).items()}


def zeros_state(name: str) -> dict[str, np.ndarray]:
  """A state_dict of `name`'s shapes that takes no memory: for the refusals, which read shapes."""
  return {key: np.broadcast_to(np.float32(0), shape)
          for key, shape in keys_and_shapes(name).items()}


def test_registry_covers_the_issues_archs_with_their_presets():
  expected = ['alexnet', *(f'vgg{d}{bn}' for d in (11, 13, 16, 19) for bn in ('', '_bn')),
              'googlenet', 'inception_v3', *(f'resnet{d}' for d in (18, 34, 50, 101, 152)),
              *(f'densenet{d}' for d in (121, 169, 201))]
  assert sorted(pretrained.ARCHS) == sorted(expected)
  assert pretrained.arch('alexnet').config == 'alexnet.py:torchvision'
  assert pretrained.arch('googlenet').config == 'googlenet.py:torchvision'
  assert pretrained.arch('inception_v3').config == 'inception_v3.py:default'
  assert pretrained.arch('vgg16_bn').config == 'vgg.py:vgg16_bn'
  assert pretrained.arch('resnet18').url == (
      'https://download.pytorch.org/models/resnet18-f37072fd.pth')


def test_readme_table_lists_every_arch_with_its_preset_and_accuracy():
  readme = (REPO / 'README.md').read_text()
  for arch in pretrained.ARCHS.values():
    assert f'| `{arch.name}` | `{arch.config}` | {arch.accuracy} |' in readme, arch.name


def test_the_configs_normalize_as_torchvisions_weights_expect():
  """ImageNet's mean and std, but (pixel - 0.5) / 0.5 for GoogLeNet and Inception v3, whose
  weights expect torchvision's transform_input (tests/test_convert_torchvision.py shows that
  it computes this), which jaxcnn's models do not have."""
  for name, arch in pretrained.ARCHS.items():
    config = conversion.run_config(arch)
    expected = ((0.5,) * 3, (0.5,) * 3) if arch.transform_input else (
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    np.testing.assert_allclose((config.data.mean, config.data.std), expected, rtol=1e-6)
  assert {n for n, a in pretrained.ARCHS.items() if a.transform_input} == {'googlenet',
                                                                            'inception_v3'}


@pytest.mark.parametrize('groups', [1, 2])
def test_conv_kernel_layout_with_groups(groups):
  """OIHW -> HWIO, for a grouped convolution too: jaxcnn's GroupedConv (AlexNet's towers) and
  Flax's feature groups compute, with the converted kernel, what an NCHW convolution with
  torch's OIHW kernel and groups computes."""
  rng = np.random.default_rng(0)
  weight = rng.standard_normal((12, 8 // groups, 3, 5), np.float32)  # torch's Conv2d.weight
  bias = rng.standard_normal(12, np.float32)
  x = rng.standard_normal((2, 8, 9, 11), np.float32)  # NCHW
  expected = jax.lax.conv_general_dilated(
      x, weight, (2, 2), [(1, 1), (1, 1)], dimension_numbers=('NCHW', 'OIHW', 'NCHW'),
      feature_group_count=groups) + bias[:, None, None]
  expected = np.asarray(expected).transpose(0, 2, 3, 1)
  kernel = layout.conv_kernel(weight)
  assert kernel.shape == (3, 5, 8 // groups, 12)
  params = {'params': {'kernel': kernel, 'bias': bias}}
  nhwc = x.transpose(0, 2, 3, 1)
  grouped = GroupedConv(12, (3, 5), groups=groups, strides=2, padding=1).apply(params, nhwc)
  flax_groups = nn.Conv(12, (3, 5), strides=2, padding=1, feature_group_count=groups).apply(
      params, nhwc)
  np.testing.assert_allclose(grouped, expected, atol=1e-4)
  np.testing.assert_allclose(flax_groups, expected, atol=1e-4)


def test_dense_kernel_layout_and_the_flatten_order():
  """A Linear is transposed; one that reads torch's (C, H, W) flatten is reordered to read
  jaxcnn's (H, W, C) flatten of the same map."""
  rng = np.random.default_rng(0)
  weight = rng.standard_normal((4, 5 * 3 * 3), np.float32)  # torch's Linear.weight
  np.testing.assert_array_equal(layout.dense_kernel(weight), weight.T)
  feature_map = rng.standard_normal((2, 5, 3, 3), np.float32)  # NCHW
  expected = feature_map.reshape(2, -1) @ weight.T  # torch's flatten(1), then the Linear
  nhwc_flat = feature_map.transpose(0, 2, 3, 1).reshape(2, -1)
  np.testing.assert_allclose(nhwc_flat @ layout.dense_kernel(weight, flattened_channels=5),
                             expected, atol=1e-5)
  assert np.abs(nhwc_flat @ weight.T - expected).max() > 0.1  # the reordering matters
  with pytest.raises(ValueError, match='no square map'):
    layout.dense_kernel(np.zeros((4, 40), np.float32), flattened_channels=5)


def test_convert_puts_every_tensor_in_its_place():
  """resnet18 by hand: each tensor lands where the name mapping and the layout say, BN's
  update counter is ignored, and the parameter count is torchvision's (11,689,512)."""
  state = random_state('resnet18')
  state['bn1.num_batches_tracked'] = np.array(3)
  variables = conversion.convert(pretrained.arch('resnet18'), state, 'by hand')
  np.testing.assert_array_equal(variables['params']['conv1']['kernel'],
                                state['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['params']['fc']['kernel'], state['fc.weight'].T)
  np.testing.assert_array_equal(variables['batch_stats']['layer2_0']['downsample_bn']['var'],
                                state['layer2.0.downsample.1.running_var'])
  assert param_count(variables['params']) == 11_689_512


def test_old_densenet_keys_are_renamed():
  """torchvision's published DenseNet files name a layer's modules 'norm.1', 'conv.2', ...;
  their weights convert as today's names do."""
  arch = pretrained.arch('densenet121')
  state = random_state('densenet121')
  old = {key.replace('.norm1.', '.norm.1.').replace('.conv2.', '.conv.2.'): value
         for key, value in state.items()}
  assert 'features.denseblock1.denselayer1.norm.1.weight' in old
  converted = conversion.convert(arch, old, 'old names')
  expected = conversion.convert(arch, state, 'new names')
  jax.tree.map(np.testing.assert_array_equal, converted, expected)


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
    'another_architecture': ('resnet18', lambda: zeros_state('resnet50'),
                             "source does not hold torchvision's resnet18 weights: its tensor "
                             "'layer1.0.conv1.weight' has shape (64, 64, 1, 1) where resnet18's "
                             "has (64, 64, 3, 3) (another architecture's weights?)"),
    'fewer_classes': ('resnet18', lambda: altered(zeros_state('resnet18'),
                                                  reshape={'fc.weight': (10, 512)}),
                      "its tensor 'fc.weight' has shape (10, 512) where resnet18's has "
                      '(1000, 512)'),
    'missing': ('resnet18', lambda: altered(zeros_state('resnet18'),
                                            drop=('bn1.running_var', 'fc.bias')),
                "it lacks resnet18's tensor 'bn1.running_var' and 1 more"),
    'extra': ('resnet18', lambda: altered(zeros_state('resnet18'),
                                          add={'head.weight': np.zeros((2, 2), np.float32)}),
              "it has a tensor 'head.weight', which resnet18 has not"),
    'bn_weights_for_plain_vgg': ('vgg11_bn', lambda: zeros_state('vgg11'),
                                 "it has a tensor 'features.3.weight', which vgg11_bn has not"),
    'googlenet_without_aux_heads': ('googlenet', lambda: {
        k: v for k, v in zeros_state('googlenet').items() if not k.startswith('aux')},
                                    "it lacks googlenet's tensor 'aux1.conv.conv.weight' and"),
}


@pytest.mark.parametrize('case', list(MISMATCHES))
def test_a_mismatch_names_the_first_differing_tensor(case):
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
  assert sorted(os.listdir(tmp_path)) == files_before


def test_cli_help_exits_0():
  result = convert_cli('--help')
  assert result.returncode == 0 and '--arch' in result.stdout + result.stderr


RESNET18_URL = 'https://download.pytorch.org/models/resnet18-f37072fd.pth'
# No network: every request goes to a proxy on a closed port.
OFFLINE = {'https_proxy': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9',
           'no_proxy': '', 'NO_PROXY': ''}


def test_cli_offline_without_weights_fails_at_once_naming_the_url(tmp_path):
  torch_home = tmp_path / 'torch_home'
  result = convert_cli('--arch', 'resnet18', '--workdir', str(tmp_path / 'run'),
                       env={'TORCH_HOME': str(torch_home), **OFFLINE})
  assert_refused(result, f'cannot download {RESNET18_URL} ([Errno 111] Connection refused); '
                 'fetch that file by hand on a machine with internet and pass it as '
                 '--weights FILE', tmp_path, [])
  # Where torchvision's cache would hold it, said on stdout; nothing is written there.
  assert result.stdout == (f'Downloading: "{RESNET18_URL}" to {torch_home}/hub/checkpoints/'
                           'resnet18-f37072fd.pth\n')


def test_the_download_is_read_from_torchs_cache(tmp_path, monkeypatch):
  """A file already in $TORCH_HOME/hub/checkpoints (torchvision's cache) is used as it is."""
  cached = tmp_path / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'
  cached.parent.mkdir(parents=True)
  cached.write_bytes(b'weights')
  monkeypatch.setenv('TORCH_HOME', str(tmp_path))
  for name, value in OFFLINE.items():
    monkeypatch.setenv(name, value)
  assert download.cached_file(RESNET18_URL) == str(cached)


@pytest.fixture
def served(tmp_path):
  """(base URL, directory): a local HTTP server of the directory's files."""
  import http.server
  import threading
  root = tmp_path / 'served'
  root.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield f'http://127.0.0.1:{server.server_address[1]}/', root
  server.shutdown()


def test_a_download_is_checked_against_the_hash_in_its_name(served, tmp_path, monkeypatch):
  import hashlib
  base, root = served
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
  for name in ('http_proxy', 'HTTP_PROXY'):
    monkeypatch.delenv(name, raising=False)
  content = b'weights' * 1000
  good = f'good-{hashlib.sha256(content).hexdigest()[:8]}.pth'
  (root / good).write_bytes(content)
  (root / 'bad-0123abcd.pth').write_bytes(content)
  checkpoints = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
  assert download.cached_file(base + good) == str(checkpoints / good)
  assert (checkpoints / good).read_bytes() == content
  with pytest.raises(UserError, match=rf'^the download of {base}bad-0123abcd.pth is damaged '
                     r'\(its SHA-256 does not start with 0123abcd\); run again, or fetch'):
    download.cached_file(base + 'bad-0123abcd.pth')
  assert os.listdir(checkpoints) == [good]  # nothing of the damaged download is left


@pytest.mark.parametrize('case', ['unknown_arch', 'missing_file', 'workdir_not_empty',
                                  'no_torch'])
def test_cli_refuses_bad_input_in_one_line(case, tmp_path):
  workdir = tmp_path / 'run'
  weights = tmp_path / 'weights.pth'
  weights.write_bytes(b'not read')
  if case == 'workdir_not_empty':
    workdir.mkdir()
    (workdir / 'notes.txt').write_text('mine')
  # A `torch` that cannot be imported, as where the extra is not installed.
  no_torch = tmp_path / 'no_torch'
  no_torch.mkdir()
  (no_torch / 'torch.py').write_text(
      "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
  before = sorted(os.listdir(tmp_path))
  cases = {
      'unknown_arch': (['--arch', 'resnet51'], {}, "unknown --arch 'resnet51'; did you mean "
                       f"'resnet50'? known: {', '.join(pretrained.ARCHS)}"),
      'missing_file': (['--arch', 'resnet18', '--weights', str(tmp_path / 'nope.pth')], {},
                       f"--weights {tmp_path / 'nope.pth'}: no such file"),
      'workdir_not_empty': (['--arch', 'resnet18', '--weights', str(weights)], {},
                            f'workdir {workdir} exists and is not empty; pass a new --workdir'),
      'no_torch': (['--arch', 'resnet18', '--weights', str(weights)],
                   {'PYTHONPATH': os.pathsep.join([str(no_torch), os.environ.get('PYTHONPATH', ''),
                                                   str(REPO)])},
                   "reading torchvision's weight files needs torch (No module named 'torch'): "
                   "pip install -e '.[convert]'"),
  }
  args, env, line = cases[case]
  result = convert_cli(*args, '--workdir', str(workdir), env=env)
  assert_refused(result, line, tmp_path, before)
  assert result.stdout == ''
  if case == 'workdir_not_empty':
    assert os.listdir(workdir) == ['notes.txt']


class TestWithTorch:
  """The command line on .pth files, which only torch reads."""

  @pytest.fixture(autouse=True)
  def torch(self):
    return pytest.importorskip('torch', reason="the 'convert' extra (torch) is not installed")

  @pytest.fixture
  def resnet18_file(self, torch, tmp_path) -> str:
    path = str(tmp_path / 'resnet18.pth')
    torch.save({k: torch.from_numpy(v) for k, v in random_state('resnet18').items()}, path)
    return path

  def test_a_converted_file_restores_with_its_weights(self, resnet18_file, tmp_path):
    workdir = str(tmp_path / 'run')
    result = convert_cli('--arch', 'resnet18', '--weights', resnet18_file, '--workdir', workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"converted torchvision's resnet18 ({resnet18_file}) into "
                                    f'{workdir}')
    restored = jaxcnn.restore(workdir)
    assert restored.step == 0 and restored.config.model.name == 'resnet'
    np.testing.assert_array_equal(restored.variables['params']['fc']['kernel'],
                                  random_state('resnet18')['fc.weight'].T)

  @pytest.mark.parametrize('case', ['other_architecture', 'not_a_state_dict'])
  def test_cli_refuses_bad_files_in_one_line(self, case, resnet18_file, tmp_path):
    not_weights = tmp_path / 'notes.pth'
    not_weights.write_text('not weights')
    before = sorted(os.listdir(tmp_path))
    if case == 'other_architecture':
      result = convert_cli('--arch', 'resnet34', '--weights', resnet18_file,
                           '--workdir', str(tmp_path / 'run'))
      line = (f"{resnet18_file} does not hold torchvision's resnet34 weights: it lacks "
              "resnet34's tensor 'layer1.2.conv1.weight' and 79 more")
    else:
      result = convert_cli('--arch', 'resnet18', '--weights', str(not_weights),
                           '--workdir', str(tmp_path / 'run'))
      assert result.stderr.startswith(f'error: {not_weights}: torch cannot read it (')
      line = result.stderr.splitlines()[0][len('error: '):]
    assert_refused(result, line, tmp_path, before)


@pytest.fixture(scope='module')
def converted_run(tmp_path_factory) -> dict[str, str]:
  """{arch: workdir} of runs converted from random state_dicts built by hand."""
  root = tmp_path_factory.mktemp('converted')
  runs = {}
  for name in ('alexnet', 'resnet18'):
    arch = pretrained.arch(name)
    runs[name] = str(root / name)
    conversion.write_run(arch, conversion.convert(arch, random_state(name), 'by hand'),
                         runs[name])
  return runs


def test_notebook_shows_a_converted_runs_first_layer_filters(converted_run, monkeypatch):
  """AlexNet's 64 first-layer filters of 11x11x3 (random weights here); the cells that need
  the run's dataset (ImageNet, not here) or its training history say so and show nothing."""
  code, text = run_notebook(converted_run['alexnet'], monkeypatch)
  workdir = converted_run['alexnet']
  assert f'alexnet trained on imagenet2012 to step 0 ({workdir})' in text
  assert 'no test images of imagenet2012 here: no predictions, no confusion matrix' in text
  assert f'no training history in {workdir} (no metrics.jsonl)' in text
  assert '64 filters of 11x11x3' in text
  figures = [(cell.metadata['tags'][0], output['data']) for cell in code
             for output in cell.outputs if 'image/png' in output.get('data', {})]
  assert [tag for tag, _ in figures] == ['filters']
  assert 'with 72 Axes' in figures[0][1]['text/plain']  # 6 rows of 12, 8 of them blank
  assert len(base64.b64decode(figures[0][1]['image/png'])) > 10_000


def test_predict_cli_reads_a_converted_run(converted_run, tmp_path):
  """`python -m jaxcnn.predict` on a converted run prints the top-5 classes that the restored
  model gives (indices: ImageNet's label names are not here)."""
  import tensorflow as tf
  workdir = converted_run['resnet18']
  image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8)
  path = str(tmp_path / 'image.png')
  tf.io.write_file(path, tf.io.encode_png(image))
  # Unoptimized as this process: the same probabilities to the last digit printed.
  result = subprocess.run([sys.executable, '-m', 'jaxcnn.predict', '--workdir', workdir, path],
                          capture_output=True, text=True, env=cli_env(**UNOPTIMIZED), timeout=300)
  assert result.returncode == 0, result.stderr
  probabilities = jaxcnn.restore(workdir).predict([image])[0]
  top = probabilities.argsort()[::-1][:5]
  assert result.stdout.splitlines() == [
      f"resnet at step 0 of {workdir}; classes: class indices (dataset 'imagenet2012' has no "
      'label names here)', path, *(f'  {100 * probabilities[i]:6.2f}%  {i}' for i in top)]


def fresh_variables(config, num_classes: int) -> dict:
  """A fresh init (on 32x32 images: ResNet's shapes do not depend on the size)."""
  return jax.jit(lambda: create_model(config.model, num_classes).init(
      jax.random.key(1), jnp.zeros((1, 32, 32, 3)), train=False))()


def test_init_from_takes_every_tensor_but_a_classifier_for_other_classes(converted_run):
  config = load_config('resnet', 'resnet18')
  fresh = fresh_variables(config, 10)
  merged, kept = init_from.merged_variables(fresh, 10, converted_run['resnet18'])
  assert kept == ['params/fc/bias', 'params/fc/kernel']
  state = random_state('resnet18')
  flat = traverse_util.flatten_dict(merged)
  np.testing.assert_array_equal(flat['params', 'conv1', 'kernel'],
                                state['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(flat['batch_stats', 'layer4_1', 'bn2', 'mean'],
                                state['layer4.1.bn2.running_mean'])
  np.testing.assert_array_equal(flat['params', 'fc', 'kernel'], fresh['params']['fc']['kernel'])
  assert flat['params', 'fc', 'kernel'].shape == (512, 10)


def test_init_from_refuses_another_architecture(converted_run):
  model = create_model(load_config('resnet', 'resnet34').model, 1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3))))
  with pytest.raises(UserError) as error:
    init_from.merged_variables(shapes, 1000, converted_run['resnet18'])
  assert str(error.value) == (
      f"--config.init_from={converted_run['resnet18']} does not fit this run's model: it lacks "
      'the tensor batch_stats/layer1_2/bn1/mean (resnet there, another architecture?)')


def test_init_from_names_the_option_when_its_workdir_is_no_run(tmp_path):
  with pytest.raises(UserError, match=rf'^--config.init_from={tmp_path}/nope: workdir '
                     rf'{tmp_path}/nope does not exist'):
    init_from.merged_variables({}, 10, str(tmp_path / 'nope'))


def stub_evaluation(monkeypatch) -> list:
  """train.evaluate replaced by one that records the states it is given (these tests are
  about which weights a run holds; evaluation is tested on trained runs elsewhere)."""
  evaluated = []
  monkeypatch.setattr(train, 'evaluate', lambda step, state, data, mesh: evaluated.append(state)
                      or {'loss': 0.0, 'top1': 0.0, 'top5': 0.0, 'num_examples': 1})
  return evaluated


def test_training_starts_from_a_converted_run(converted_run, monkeypatch, tmp_path, capsys):
  """What `python -m jaxcnn.main --config.init_from=DIR` runs, on other data (synthetic, 2
  steps at a learning rate of 1e-12): training starts at step 0 from the converted weights,
  which its checkpoint still holds."""
  stub_evaluation(monkeypatch)
  config = load_config('resnet', 'resnet18')
  config.init_from = converted_run['resnet18']
  config.data.name, config.data.image_size = 'synthetic', 16
  config.train.batch_size, config.train.num_steps, config.train.log_every_steps = 4, 2, 1
  config.optimizer.learning_rate, config.optimizer.weight_decay = 1e-12, 0.0
  workdir = str(tmp_path / 'finetuned')
  train.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert f"starting from the weights of {converted_run['resnet18']}" in out
  assert 'training for 2 steps' in out
  trained = jaxcnn.restore(workdir)
  assert trained.step == 2
  np.testing.assert_allclose(trained.variables['params']['conv1']['kernel'],
                             random_state('resnet18')['conv1.weight'].transpose(2, 3, 1, 0),
                             atol=1e-6)
  assert json.load(open(os.path.join(workdir, 'config.json')))['init_from'] == (
      converted_run['resnet18'])


def test_a_converted_run_is_not_resumed(converted_run):
  """Its checkpoint holds no optimizer state: restoring a whole train state from it (what
  resuming does) is refused in one line that says how to train from it."""
  workdir = converted_run['resnet18']
  checkpoints = Checkpoints(workdir, create=False)
  try:
    with pytest.raises(UserError) as error:
      checkpoints.restore({'opt_state': {}})
  finally:
    checkpoints.close()
  assert str(error.value) == (
      f"checkpoint at step 0 in {workdir}/checkpoints holds a model's variables but no "
      'optimizer state (a converted run): it cannot be resumed; train from it in another '
      f'--workdir with --config.init_from={workdir}')
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['0']  # not set aside


def test_evaluation_reads_a_converted_run(converted_run, monkeypatch):
  """jaxcnn.train.evaluate_checkpoint (the path of any eval.crops) reads a converted run,
  which has no optimizer state: the state it evaluates holds the converted weights. (On
  synthetic data in place of ImageNet; the evaluation itself is stubbed, it is tested on
  trained runs elsewhere.)"""
  workdir = converted_run['resnet18']
  config = jaxcnn.restore(workdir).config
  config.data.name, config.data.image_size = 'synthetic', 32
  config.train.conv_tuning = False  # timing ResNet-18's convolutions: 20 s, beside the point
  evaluated = stub_evaluation(monkeypatch)
  assert train.evaluate_checkpoint(config, workdir)['step'] == 0
  state = evaluated[0]
  state_dict = random_state('resnet18')
  np.testing.assert_array_equal(state.params['fc']['kernel'], state_dict['fc.weight'].T)
  np.testing.assert_array_equal(state.batch_stats['bn1']['var'], state_dict['bn1.running_var'])
