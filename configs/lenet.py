"""LeNet-5. Presets: default (offline UCI digits), mnist, fashion_mnist, bn (with batch norm).

  python -m jaxcnn.main --config configs/lenet.py
  python -m jaxcnn.main --config configs/lenet.py:bn
"""

from jaxcnn.config import base_config, parse_preset

PRESETS = ('default', 'mnist', 'fashion_mnist', 'bn')


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'lenet5'
  config.model.activation = 'tanh'
  config.model.batch_norm = preset == 'bn'

  config.data.name = 'digits'
  config.data.image_size = 32
  # Random 32x32 crops of the image at 36x36 (shifts of up to 4 px). Evaluation takes the
  # centre crop, or with --config.eval.crops=10 the four corners, the centre and their mirrors.
  config.data.resize_size = 36
  config.data.augment = ('resize_shorter', 'random_crop')
  config.train.batch_size = 32
  config.train.num_epochs = 30
  config.train.log_every_steps = 100
  config.optimizer.learning_rate = 0.05
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'
  config.eval.batch_size = 128
  config.checkpoint.every_steps = 200

  if preset in ('mnist', 'fashion_mnist'):
    config.data.name = preset
    config.train.batch_size = 128
    config.train.num_epochs = 10
    config.eval.batch_size = 1000
    config.checkpoint.every_steps = 1000
  if preset == 'bn':
    config.optimizer.learning_rate = 0.1
  return config


# Ablations for `python -m jaxcnn.sweep --config configs/lenet.py --sweep NAME` (experiments/).
SWEEPS = {
    'activation': {'model.activation': ['relu', 'tanh', 'sigmoid']},
    'batch_norm': {'model.batch_norm': [False, True], 'optimizer.learning_rate': [0.05, 0.5, 2.0]},
    'recipe': {},  # the preset as it is: with --seeds N, its spread over seeds
}
