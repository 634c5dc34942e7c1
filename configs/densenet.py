"""DenseNet. Default: DenseNet-121 on ImageNet. Presets: densenet121, densenet169, densenet201,
cifar_densenet_bc100.

The ImageNet presets follow Huang et al. (2016): 224x224, batch 256, 90 epochs, SGD with
Nesterov momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at epochs 30 and 60.
`cifar_densenet_bc100` is DenseNet-BC (L=100, k=12) on CIFAR-10: batch 64, 300 epochs,
lr 0.1 divided by 10 at 50% and 75% of training, with the standard augmentation (C10+);
the paper trains without it (--config.data.augment="('resize',)") only with
--config.model.dropout_rate=0.2.

  python -m jaxcnn.main --config configs/densenet.py:cifar_densenet_bc100
"""

from jaxcnn.config import base_config, parse_preset

PRESETS = ('densenet121', 'densenet169', 'densenet201', 'cifar_densenet_bc100')


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'densenet'
  config.model.depth = 121
  config.model.growth_rate = 32
  config.model.dropout_rate = 0.0

  config.data.name = 'imagenet2012'
  config.data.image_size = 224
  config.data.augment = ('random_resized_crop', 'flip')  # as ResNet's (fb.resnet.torch's)
  config.data.resize_size = 256  # evaluation: the centre 224 crop of the image at 256
  config.train.batch_size = 256
  config.train.num_epochs = 90
  config.train.log_every_steps = 100
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'multistep'
  config.optimizer.milestones = (1 / 3, 2 / 3)  # epochs 30 and 60 of 90
  config.optimizer.decay_factor = 0.1
  config.checkpoint.every_steps = 5000

  if preset in ('densenet169', 'densenet201'):
    config.model.depth = int(preset.removeprefix('densenet'))
  if preset == 'cifar_densenet_bc100':
    config.model.name = 'cifar_densenet'
    config.model.depth = 100
    config.model.growth_rate = 12
    config.data.name = 'cifar10'
    config.data.image_size = 32
    config.data.augment = ('resize', 'pad', 'random_crop', 'flip')  # C10+, as ResNet's
    config.data.pad = 4
    config.data.resize_size = 0
    config.train.batch_size = 64
    config.train.num_epochs = 300
    config.optimizer.milestones = (0.5, 0.75)
    config.checkpoint.every_steps = 2000
  return config
