"""VGG (Simonyan and Zisserman, 2014) on ImageNet. Presets: vgg16 (default), vgg11, vgg13,
vgg19, and the batch-norm variants vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn.

The paper's recipe (section 3.1): 224x224 crops, batch 256, SGD with momentum 0.9, weight
decay 5e-4, dropout 0.5 on the first two dense layers, lr 0.01 divided by 10 when validation
accuracy stopped improving (three times in all), 74 epochs.

  python -m jaxcnn.main --config configs/vgg.py:vgg11_bn
"""

import os

from jaxcnn.config import base_config, load_module, parse_preset

ALEXNET = load_module(os.path.join(os.path.dirname(__file__), 'alexnet.py'))

DEPTHS = (16, 11, 13, 19)
PRESETS = tuple(f'vgg{d}' for d in DEPTHS) + tuple(f'vgg{d}_bn' for d in (11, 13, 16, 19))


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'vgg'
  config.model.depth = int(preset.removeprefix('vgg').removesuffix('_bn'))
  config.model.batch_norm = preset.endswith('_bn')
  config.model.hidden_units = 4096
  config.model.dropout_rate = 0.5

  config.data.name = 'imagenet2012'
  config.data.image_size = 224
  # The paper's fixed-scale training (S = 256) is AlexNet's: random 224 crops, mirror images
  # and RGB colour shift, SGD at lr 0.01 divided by 10 on plateaus (three times in all).
  ALEXNET.imagenet_recipe(config)
  config.train.batch_size = 256
  config.train.num_epochs = 74
  config.train.log_every_steps = 100
  # Three reductions in 74 epochs: a stall of 4 evaluations (epochs) triggers each one.
  config.optimizer.plateau_patience = 4
  config.checkpoint.every_steps = 5000
  return config


# Ablations for `python -m jaxcnn.sweep --config configs/vgg.py[:PRESET] --sweep NAME`.
SWEEPS = {
    # Ioffe and Szegedy (2015): batch norm trains faster and at learning rates that fail without.
    'batch_norm': {'model.batch_norm': [False, True], 'optimizer.learning_rate': [0.01, 0.1]},
}
