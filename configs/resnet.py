"""ResNet (He et al., 2015). Default: resnet50 on ImageNet. Presets: resnet18/34/50/101/152,
cifar_resnet20/32/44/56/110 and cifar_plain20/32/44/56/110 (the same nets without shortcuts),
digits (ResNet-20 on the offline digits at 16x16, CPU-sized).

  python -m jaxcnn.main --config configs/resnet.py:resnet18
  python -m jaxcnn.main --config configs/resnet.py:cifar_plain56

ImageNet (section 3.4): 224x224, batch 256, SGD lr 0.1, momentum 0.9, weight decay 1e-4, no
dropout. The paper divides the lr by 10 when the error plateaus; here it is divided at 30 and 60
of 90 epochs, as torchvision's reference recipe does (`--config.optimizer.schedule=plateau`
gives the paper's rule).

CIFAR-10 (section 4.2): 32x32, batch 128, lr 0.1, momentum 0.9, weight decay 1e-4, lr / 10 at
32k and 48k iterations, stop at 64k. The paper trains on 45k images and tunes on 5k; it also
warms ResNet-110 up at lr 0.01 for about 400 iterations (until training error < 80%), which
the multistep schedule does not do: if 110 does not start to learn, lower the lr.
"""

from jaxcnn.config import base_config, parse_preset

_IMAGENET_DEPTHS = (50, 18, 34, 101, 152)
_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
PRESETS = (tuple(f'resnet{d}' for d in _IMAGENET_DEPTHS)
           + tuple(f'cifar_resnet{d}' for d in _CIFAR_DEPTHS)
           + tuple(f'cifar_plain{d}' for d in _CIFAR_DEPTHS) + ('digits',))


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'multistep'
  config.optimizer.decay_factor = 0.1
  config.train.label_smoothing = 0.0

  if preset.startswith('resnet'):
    config.model.name = 'resnet'
    config.model.depth = int(preset.removeprefix('resnet'))
    config.data.name = 'imagenet2012'
    config.data.image_size = 224
    # Inception-style crops and mirror images, as torchvision's reference recipe; evaluation
    # takes the centre crop of the image at 256 (the paper's 10 crops: --config.eval.crops=10).
    config.data.augment = ('random_resized_crop', 'flip')
    config.data.resize_size = 256
    config.train.batch_size = 256
    config.train.num_epochs = 90
    config.train.log_every_steps = 100
    config.optimizer.milestones = (1 / 3, 2 / 3)  # epochs 30 and 60 of 90
    config.checkpoint.every_steps = 5000
  else:
    config.model.name = 'cifar_resnet'
    config.model.depth = 20 if preset == 'digits' else int(
        preset.removeprefix('cifar_resnet').removeprefix('cifar_plain'))
    config.model.shortcuts = preset.startswith('cifar_resnet') or preset == 'digits'
    config.data.name = 'cifar10'
    config.data.image_size = 32
    # The paper's: pad 4, random 32x32 crop, mirror (the resize is the identity on CIFAR's
    # 32x32 and brings other data to image_size first).
    config.data.augment = ('resize', 'pad', 'random_crop', 'flip')
    config.data.pad = 4
    config.train.batch_size = 128
    config.train.num_steps = 64_000
    config.train.log_every_steps = 100
    config.optimizer.milestones = (0.5, 0.75)  # iterations 32k and 48k of 64k
    config.checkpoint.every_steps = 2000
  if preset == 'digits':
    # ResNet-20 sized for a CPU (experiments/): the offline digits at 16x16, no augmentation
    # (digits have no mirror images), 15 epochs with the lr / 10 steps at 50% and 75%.
    config.data.name = 'digits'
    config.data.image_size = 16
    config.data.augment = ('resize',)
    config.train.batch_size = 64
    config.train.num_steps = 0
    config.train.num_epochs = 15
    config.train.log_every_steps = 11
    config.eval.batch_size = 360
    config.checkpoint.every_steps = 1000
  return config


# Ablations for `python -m jaxcnn.sweep --config configs/resnet.py:PRESET --sweep NAME`.
SWEEPS = {
    # Section 4.2's degradation: plain nets get worse with depth, residual nets do not.
    'degradation': {'model.depth': [20, 56], 'model.shortcuts': [False, True]},
}
