"""configs/*.py: every preset loads, has the public keys, and carries its paper's numbers."""

import pytest

from conftest import load_config, load_config_module
from jaxcnn import validate
from jaxcnn.errors import UserError

PUBLIC_KEYS = ('model.name', 'data.name', 'data.data_dir', 'data.image_size', 'train.batch_size',
               'train.num_epochs', 'train.num_steps', 'train.log_every_steps',
               'optimizer.learning_rate', 'optimizer.momentum', 'optimizer.weight_decay', 'seed',
               'checkpoint.every_steps', 'mesh.data', 'mesh.model', 'eval.crops')

ALL_PRESETS = [('lenet', p) for p in ('default', 'mnist', 'fashion_mnist', 'bn')] + \
              [('alexnet', p) for p in ('default', 'digits', 'cifar10', 'imagenette')]


def lookup(config, dotted: str):
  node = config
  for part in dotted.split('.'):
    assert part in node, f'missing public key {dotted}'
    node = node[part]
  return node


@pytest.mark.parametrize('name, preset', ALL_PRESETS)
def test_preset_has_public_keys_and_passes_validation(name, preset):
  config = load_config(name, preset)
  values = {key: lookup(config, key) for key in PUBLIC_KEYS}
  assert values['model.name'] == {'lenet': 'lenet5', 'alexnet': 'alexnet'}[name]
  assert values['data.data_dir'] is None  # TFDS default unless a run sets it
  for key in ('data.image_size', 'train.batch_size', 'train.num_epochs',
              'train.log_every_steps', 'checkpoint.every_steps', 'optimizer.learning_rate'):
    assert values[key] > 0, key
  assert values['train.num_steps'] == 0  # presets train by epochs
  assert 0 <= values['optimizer.momentum'] < 1
  assert values['optimizer.weight_decay'] >= 0
  assert isinstance(values['seed'], int)
  assert values['mesh.data'] == -1 or values['mesh.data'] >= 1
  assert values['mesh.model'] >= 1
  assert values['eval.crops'] >= 1
  validate.check_config(config)  # raises UserError on a value the trainer would refuse


@pytest.mark.parametrize('name', ['lenet', 'alexnet'])
def test_no_argument_is_the_default_preset(name):
  module = load_config_module(name)
  assert module.PRESETS[0] == 'default'
  assert module.get_config().to_dict() == module.get_config('default').to_dict()


def test_alexnet_default_is_the_paper_setup():
  c = load_config('alexnet')
  assert (c.data.name, c.data.image_size) == ('imagenet2012', 227)
  assert c.train.batch_size == 128
  assert c.train.num_epochs == 90
  assert c.optimizer.learning_rate == 0.01
  assert c.optimizer.momentum == 0.9
  assert c.optimizer.weight_decay == 5e-4
  assert c.optimizer.schedule == 'plateau'
  assert c.optimizer.decay_factor == 0.1
  assert c.model.dropout_rate == 0.5
  assert c.model.lrn is True
  assert c.model.overlapping_pool is True
  assert c.model.towers == 2


def test_alexnet_presets():
  digits = load_config('alexnet', 'digits')
  # The offline digits at the smallest input AlexNet's layer stack accepts (see test_models).
  assert (digits.data.name, digits.data.image_size) == ('digits', 67)
  for preset in ('cifar10', 'imagenette'):
    c = load_config('alexnet', preset)
    assert c.data.name == preset
    assert c.model.name == 'alexnet'
    assert c.data.image_size >= 67


def test_lenet_presets():
  default = load_config('lenet')
  assert (default.data.name, default.data.image_size) == ('digits', 32)  # LeNet-5's 32x32
  assert default.model.batch_norm is False
  for preset in ('mnist', 'fashion_mnist'):
    c = load_config('lenet', preset)
    assert (c.data.name, c.data.image_size) == (preset, 32)
    assert c.model.batch_norm is False
  bn = load_config('lenet', 'bn')
  assert bn.model.batch_norm is True
  assert bn.data.name == 'digits'


@pytest.mark.parametrize('name', ['lenet', 'alexnet'])
def test_unknown_preset_names_the_presets(name):
  module = load_config_module(name)
  with pytest.raises(ValueError) as error:
    module.get_config('no_such_preset')
  message = str(error.value)
  assert 'no_such_preset' in message
  assert all(p in message for p in module.PRESETS), message


@pytest.mark.parametrize('key, smallest', [(key, smallest) for key, smallest, _ in validate.COUNTS])
def test_every_count_below_its_range_is_refused_naming_it(key, smallest):
  section, field = key.split('.')
  # A config whose model has the key.
  config = load_config(*{'model.growth_rate': ('densenet', 'densenet121')}.get(
      key, ('alexnet' if section == 'model' else 'lenet', 'default')))
  config[section][field] = smallest - 1  # a float key keeps its type: -1.0
  with pytest.raises(UserError) as error:
    validate.check_config(config)
  bound = '> 0' if smallest else '>= 0'
  assert str(error.value).startswith(f'{key}={config[section][field]} must be {bound}')
