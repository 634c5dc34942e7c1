"""Network in Network (Lin et al., 2013), d2l's ImageNet layout. Presets: default (ImageNet,
224x224), imagenette (the same net and recipe on the 10-class ImageNet subset).

The paper (section 4.1) trains with mini-batches of 128 and, following AlexNet, divides the
learning rate by 10 when accuracy stops improving, twice, so the final rate is 1% of the
first. It gives no ImageNet learning rate or decay, so those are AlexNet's: lr 0.01, momentum
0.9, weight decay 5e-4 (d2l instead runs plain SGD at lr 0.1 on Fashion-MNIST). The plateau
here watches validation error, not training accuracy. The 11x11 stride-4 stem needs at least
67x67 inputs, so CIFAR-sized images do not fit.
"""

import os

from jaxcnn.config import base_config, load_module, parse_preset

ALEXNET = load_module(os.path.join(os.path.dirname(__file__), 'alexnet.py'))

PRESETS = ('default', 'imagenette')


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'nin'
  config.model.dropout_rate = 0.5

  config.data.name = 'imagenet2012'
  config.data.image_size = 224
  ALEXNET.imagenet_recipe(config)
  config.train.num_epochs = 90
  config.train.log_every_steps = 100
  config.optimizer.plateau_min_scale = 1e-2  # two reductions, as the paper
  config.checkpoint.every_steps = 5000

  if preset == 'imagenette':
    config.data.name = 'imagenette'
    config.train.num_epochs = 60
    config.checkpoint.every_steps = 1000
  return config
