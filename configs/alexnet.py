"""AlexNet. Default: the paper's ImageNet setup. Presets: torchvision, digits, cifar10, imagenette.

The default follows Krizhevsky et al. (2012): 227x227, batch 128, SGD lr 0.01 with momentum
0.9 and weight decay 5e-4, dropout 0.5, LRN, overlapping pooling, about 90 epochs, lr / 10
whenever validation error stops improving (three times at most). `digits` is a CPU-sized run
of the same layers: the smallest input the layer stack accepts, the offline digits, and He
initialization (see below).
"""

from jaxcnn.config import base_config, parse_preset

PRESETS = ('default', 'torchvision', 'digits', 'cifar10', 'imagenette')


def imagenet_recipe(config) -> None:
  """The paper's ImageNet training (sections 4.1 and 5), which VGG and NiN follow too.

  Augmentation: shorter side to 256, random crops, mirror images, and PCA lighting along
  ImageNet's RGB eigenvectors; evaluation takes the centre crop of the 256 image, or the
  paper's 10 crops with --config.eval.crops=10. SGD with batch 128, momentum 0.9, weight
  decay 5e-4 and lr 0.01, divided by 10 when validation error stops improving, three times.
  """
  config.data.resize_size = 256
  config.data.augment = ('resize_shorter', 'random_crop', 'flip', 'pca_lighting')
  config.train.batch_size = 128
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = 'plateau'
  config.optimizer.decay_factor = 0.1
  config.optimizer.plateau_patience = 3
  config.optimizer.plateau_min_scale = 1e-3


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'alexnet'
  config.model.towers = 2
  config.model.widths = (96, 256, 384, 384, 256)
  config.model.conv1_padding = 0
  config.model.dropout_rate = 0.5
  config.model.dropout_placement = 'outputs'  # of fc6 and fc7, as the paper
  config.model.pooled_size = 0  # fc6 reads the last pool's map as it is
  config.model.lrn = True
  config.model.overlapping_pool = True
  config.model.initialization = 'paper'  # N(0, 0.01) weights, biases 1 where the paper says
  config.model.activation = 'relu'
  config.model.hidden_units = 4096

  config.data.name = 'imagenet2012'
  config.data.image_size = 227
  imagenet_recipe(config)
  config.data.std = (1 / 255,) * 3  # the paper only subtracts the mean, from 0..255 pixels
  config.train.num_epochs = 90
  config.train.log_every_steps = 100
  config.checkpoint.every_steps = 5000

  if preset == 'torchvision':  # the widely used single-tower layout, at 224x224
    config.model.widths = (64, 192, 384, 256, 256)
    config.model.towers = 1
    config.model.conv1_padding = 2
    config.model.lrn = False
    # torchvision's classifier: its 6x6 adaptive pool and dropout before fc6 and fc7.
    config.model.pooled_size = 6
    config.model.dropout_placement = 'inputs'
    config.data.image_size = 224
  if preset in ('cifar10', 'imagenette'):
    config.data.name = preset
    if preset == 'cifar10':
      # No built-in colour eigenvectors for pca_lighting: `python -m jaxcnn.data.stats
      # cifar10` computes them, and then it can be added back.
      config.data.augment = ('resize_shorter', 'random_crop', 'flip')
    config.train.num_epochs = 60
    config.checkpoint.every_steps = 1000
  if preset == 'digits':
    config.data.name = 'digits'
    config.data.image_size = 67  # conv1 -> 15x15, pools -> 7, 3, 1: the smallest that fits
    config.data.resize_size = 76  # 67 x 256 / 227: the paper's crop-to-image ratio
    config.data.augment = ('resize_shorter', 'random_crop')  # digits have no mirrors or colour
    config.data.std = ()  # the dataset's own, with He initialization
    # From N(0, 0.01) the paper's net sits at chance for thousands of steps before it learns
    # (ImageNet affords that; 11 steps per epoch of digits do not). He init learns at once.
    config.model.initialization = 'he'
    config.train.num_epochs = 25
    config.train.log_every_steps = 20
    config.checkpoint.every_steps = 100
  return config


# Ablations for `python -m jaxcnn.sweep --config configs/alexnet.py[:PRESET] --sweep NAME`.
SWEEPS = {
    'activation': {'model.activation': ['relu', 'tanh']},  # section 3.1: ReLU trains faster
    'lrn_pooling': {'model.lrn': [True, False], 'model.overlapping_pool': [True, False]},
    'dropout': {'model.dropout_rate': [0.5, 0.0]},  # section 4.2: dropout against overfitting
}
