"""Configs: the base config with every key, and loading config files, presets and overrides.

`base_config()` is what every file in configs/ starts from; a file changes what its paper
changes. Public keys (docs, tests and tools rely on them) are all present here with their
defaults. `load('configs/NAME.py:PRESET')` is how every tool, test and experiment reads a
config file, as `--config` does on the command line.
"""

import importlib.util
import os

from ml_collections import config_dict

# The repository's config files (in a clone; they are not installed with the package).
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def base_config() -> config_dict.ConfigDict:
  config = config_dict.ConfigDict()
  config.seed = 0
  # A run's workdir (a converted one from jaxcnn.convert included) whose params and batch-norm
  # statistics this run starts from, with a fresh optimizer; layers whose only difference is
  # the number of classes (the classifiers) keep their fresh initialization. '' starts afresh.
  config.init_from = ''

  config.model = config_dict.ConfigDict()
  config.model.name = ''  # a registered model; every other key of the block is a model field

  config.data = config_dict.ConfigDict()
  config.data.name = 'digits'
  config.data.data_dir = config_dict.placeholder(str)  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.download = False  # training never touches the network unless asked to
  # True: a dataset whose images share one shape and fit datasets.IN_MEMORY_LIMIT_BYTES
  # (digits, mnist, fashion_mnist, cifar10, cifar100) is read once into memory, replicated on
  # the devices, and shuffled and augmented there by JAX (jaxcnn/data/in_memory.py); the
  # others, and every dataset with False, go through tf.data on the host. Both paths run
  # the same recipe; only their random numbers differ.
  config.data.in_memory = True
  config.data.image_size = 32  # the model's input is image_size x image_size
  config.data.mean = ()  # per-channel normalization; () takes the dataset's own statistics
  config.data.std = ()
  config.data.shuffle_buffer = 16_384  # tf.data's; the in-memory path shuffles whole epochs
  # Training images go through these ops in order (jaxcnn/data/augment.py for tf.data,
  # jax_augment.py in memory), each with its own random numbers from (seed, epoch, the
  # example's index in the epoch). The ops:
  # resize (the whole image to image_size), resize_shorter (shorter side to resize_size),
  # pad (data.pad pixels of black on each side), random_crop (an image_size crop),
  # random_resized_crop (a crop of random area and aspect, resized to image_size: Inception's),
  # flip (left-right, half the time), pca_lighting (AlexNet's colour shift along the
  # dataset's RGB eigenvectors). The last op that sizes the image must make it image_size.
  config.data.augment = ('resize',)
  # > 0: evaluation resizes the shorter side to this and takes image_size crops (the centre
  # one, or 10 with eval.crops=10), as does resize_shorter in training; 0: evaluation resizes
  # the whole image to image_size.
  config.data.resize_size = 0
  config.data.pad = 4  # pad: pixels on each side (CIFAR's 4)
  config.data.crop_area = (0.08, 1.0)  # random_resized_crop: range of the crop's share of the area
  config.data.crop_aspect = (3 / 4, 4 / 3)  # random_resized_crop: range of width / height
  config.data.lighting_std = 0.1  # pca_lighting: std of each component's random weight (AlexNet's)

  config.train = config_dict.ConfigDict()
  config.train.batch_size = 128  # global, over all devices and processes
  config.train.num_epochs = 10
  config.train.num_steps = 0  # > 0 overrides num_epochs
  config.train.log_every_steps = 50
  config.train.label_smoothing = 0.0
  # Batch-norm statistics over the global batch (default), or over each data-parallel
  # device's share of it (the statistics of pmap-era multi-GPU training).
  config.train.batch_norm_per_device = False
  config.train.aux_loss_weights = ()  # weights of the auxiliary heads' losses, in output order
  # A step with a non-finite loss or state stops the run with an error (default), or with
  # True is skipped (the state stays as it was) and counted in the train records.
  config.train.skip_nonfinite_steps = False
  # SIGTERM or Ctrl-C stops the run after its step, with a checkpoint; a run that has not
  # ended this many seconds later (blocked, say, waiting for a lost process), or a second
  # signal, ends at once without one.
  config.train.stop_grace_seconds = 120
  # The models' computation dtype: 'bfloat16' is mixed precision (parameters, optimizer state
  # and the loss stay float32); 'float64' needs JAX_ENABLE_X64=1.
  config.train.compute_dtype = 'float32'
  # On a CPU with one device, time each convolution's formulations (XLA's, oneDNN's, ...) once
  # per machine and shape, and run the fastest (jaxcnn/tuning.py); False: XLA's convolutions.
  config.train.conv_tuning = True

  config.optimizer = config_dict.ConfigDict()
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 5e-4
  # constant | multistep | plateau | cosine
  config.optimizer.schedule = 'constant'
  config.optimizer.milestones = ()  # multistep: fractions of training at which lr *= decay_factor
  config.optimizer.decay_factor = 0.1  # multistep and plateau
  config.optimizer.plateau_patience = 3  # evaluations without improvement before lr *= decay_factor
  config.optimizer.plateau_min_scale = 1e-3  # stop reducing after lr has fallen 1000x (3 steps)
  config.optimizer.warmup_epochs = 0.0  # cosine: linear warmup from 0

  config.eval = config_dict.ConfigDict()
  config.eval.batch_size = 256
  config.eval.every_steps = 0  # 0: after every epoch (and always at the end)
  # 1: one image (see data.resize_size); 10: the 4 corner and the centre crops and their
  # mirror images, softmax averaged (AlexNet's and ResNet's test protocol); 5: the same
  # without the mirror images (for data that are not mirror symmetric, as digits).
  config.eval.crops = 1

  config.checkpoint = config_dict.ConfigDict()
  config.checkpoint.every_steps = 500
  config.checkpoint.keep = 3

  # Several processes (hosts): JAX's multi-controller runtime. With no coordinator address,
  # processes started by SLURM (srun, several tasks) or on a multi-host TPU slice find each
  # other by themselves; a single process needs nothing.
  config.distributed = config_dict.ConfigDict()
  config.distributed.coordinator_address = ''  # host:port of process 0
  config.distributed.num_processes = 1
  config.distributed.process_id = 0
  # JAX's runtime (seconds): how long the processes wait for each other to start; how long a
  # silent process may go before it counts as lost, which ends every process of the run; how
  # long a process that has finished waits for the others at exit.
  config.distributed.initialization_timeout_seconds = 300
  config.distributed.heartbeat_timeout_seconds = 100
  config.distributed.shutdown_timeout_seconds = 300

  config.mesh = config_dict.ConfigDict()
  config.mesh.data = -1  # -1: every device not used by the model axis
  config.mesh.model = 1
  return config


def parse_preset(arg: str | None, presets: tuple[str, ...]) -> str:
  """The preset named after ':' in `--config FILE.py:PRESET`, checked against `presets`."""
  preset = arg or presets[0]
  if preset not in presets:
    raise ValueError(f"unknown preset '{preset}'; this config has: {', '.join(presets)}")
  return preset


def load_module(path: str):
  """A config file imported from its path, as ml_collections' --config flag imports it."""
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(argument: str) -> config_dict.ConfigDict:
  """The config that `--config PATH[:PRESET]` gives."""
  path, _, preset = argument.partition(':')
  return load_module(path).get_config(preset or None)


def has_key(config, key: str) -> bool:
  """Whether the dotted `key` ('section.name') names a field of `config`."""
  *sections, field = key.split('.')
  for section in sections:
    config = config.get(section)
    if not isinstance(config, config_dict.ConfigDict):
      return False
  return field in config


def override(config, overrides: dict) -> config_dict.ConfigDict:
  """`config` with {'section.key': value} overrides applied, as --config.section.key=value
  applies them: a key the config lacks raises KeyError, a value of the wrong type TypeError."""
  missing = [key for key in overrides if not has_key(config, key)]
  if missing:
    raise KeyError(f'the config has no key {missing[0]}')
  config.update_from_flattened_dict(overrides)
  return config


def total_steps(config, steps_per_epoch: int) -> int:
  """How many steps a run trains: train.num_steps, or train.num_epochs whole epochs."""
  return config.train.num_steps or config.train.num_epochs * steps_per_epoch
