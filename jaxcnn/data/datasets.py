"""What jaxcnn knows about each dataset, without importing TensorFlow."""

import dataclasses
import glob
import json
import os
import re

from jaxcnn.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The principal components of ImageNet's RGB pixel covariance (pixel / 255), as the AlexNet
# paper's colour augmentation uses them; the figures of fb.resnet.torch. Columns are the
# eigenvectors, in the order of the eigenvalues.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))

STATS_FILE = 'jaxcnn_stats.json'  # written by `python -m jaxcnn.data.stats` next to the TFDS files
ARRAYS_FILE = 'jaxcnn_arrays.npz'  # the in-memory path's cache of a TFDS dataset, next to its files
# The largest dataset (uint8 train and eval images) that the in-memory path holds: it is
# replicated on every device, so this much memory goes to it on each.
IN_MEMORY_LIMIT_BYTES = 4 * 2**30


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  num_classes: int
  channels: int
  mean: tuple[float, ...]  # per-channel statistics of pixel / 255 over the train split
  std: tuple[float, ...]
  # Eigenvalues and eigenvectors (columns) of the channels' covariance, for PCA lighting.
  eigval: tuple[float, ...] | None = None
  eigvec: tuple[tuple[float, ...], ...] | None = None
  train_split: str = 'train'
  eval_split: str = 'test'
  # Where the files must be put by hand, relative to data_dir (None: TFDS downloads them).
  manual_download: str | None = None
  # Every stored image is stored_size x stored_size (None: sizes vary), and the train and
  # eval splits hold `examples` images together: what the in-memory path would hold.
  stored_size: int | None = None
  examples: int = 0

  def array_bytes(self) -> int | None:
    """The bytes of all train and eval images as uint8 arrays (None: sizes vary)."""
    if self.stored_size is None:
      return None
    return self.examples * self.stored_size**2 * self.channels


def grayscale(num_classes: int, mean: float, std: float, stored_size: int,
              examples: int) -> DatasetSpec:
  """One channel: its covariance's only eigenvalue is the variance, its eigenvector (1)."""
  return DatasetSpec(num_classes, 1, (mean,), (std,), (std**2,), ((1.0,),),
                     stored_size=stored_size, examples=examples)


DATASETS: dict[str, DatasetSpec] = {
    # Statistics of the native-size train images (digits: at 8x8; resizing up to the model's
    # input smooths the images, so their normalized std there is below 1, about 0.86 at 32).
    'digits': grayscale(10, 0.3053, 0.3759, stored_size=8, examples=1_797),
    'synthetic': DatasetSpec(1000, 3, (0.0,) * 3, (1.0,) * 3),
    'mnist': grayscale(10, 0.1307, 0.3081, stored_size=28, examples=70_000),
    'fashion_mnist': grayscale(10, 0.2860, 0.3530, stored_size=28, examples=70_000),
    'cifar10': DatasetSpec(10, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           stored_size=32, examples=60_000),
    'cifar100': DatasetSpec(100, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            stored_size=32, examples=60_000),
    'imagenette': DatasetSpec(10, 3, IMAGENET_MEAN, IMAGENET_STD, IMAGENET_EIGVAL,
                              IMAGENET_EIGVEC, eval_split='validation'),
    'imagenet2012': DatasetSpec(1000, 3, IMAGENET_MEAN, IMAGENET_STD, IMAGENET_EIGVAL,
                                IMAGENET_EIGVEC, eval_split='validation',
                                manual_download='downloads/manual'),
}


def dataset_spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise KeyError(name)
  return DATASETS[name]


OFFLINE_BUILDERS = ('digits',)  # prepared on first use, with no network


def fits_in_memory(name: str) -> bool:
  """Whether dataset `name` can train from device memory: its images all of one shape, and
  all of them within IN_MEMORY_LIMIT_BYTES."""
  size = dataset_spec(name).array_bytes()
  return size is not None and size <= IN_MEMORY_LIMIT_BYTES


def trains_in_memory(data) -> bool:
  """Whether the `data` config block's dataset is trained from device memory: it fits and
  data.in_memory asks for it (a run whose config predates the switch read tf.data)."""
  return data.get('in_memory', False) and fits_in_memory(data.name)


def data_root(data_dir: str | None) -> str:
  """The TFDS data_dir that TFDS itself would use."""
  return data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'


def prepared_files(name: str, data_dir: str | None, filename: str) -> list[str]:
  """`filename` in each prepared version of `name` (NAME/[CONFIG/]VERSION/), oldest version first."""
  root = os.path.expanduser(data_root(data_dir))
  paths = [path for depth in ('*', '*/*')
           for path in glob.glob(os.path.join(root, name, depth, filename))]
  version = lambda path: [int(n) for n in re.findall(r'\d+', os.path.basename(os.path.dirname(path)))]
  return sorted(paths, key=version)


def dataset_stats(name: str, data_dir: str | None) -> DatasetSpec:
  """The spec of `name` with the statistics stored in `data_dir` by the stats command, if any."""
  spec = dataset_spec(name)
  stored = prepared_files(name, data_dir, STATS_FILE) if name != 'synthetic' else []
  if not stored:
    return spec
  with open(stored[-1]) as f:
    stats = json.load(f)
  return dataclasses.replace(spec, mean=tuple(stats['mean']), std=tuple(stats['std']),
                             eigval=tuple(stats['eigval']),
                             eigvec=tuple(map(tuple, stats['eigvec'])))


def not_prepared_error(name: str, data_dir: str | None) -> str | None:
  """Why `name` cannot be read from `data_dir` (None if TFDS files for it are there)."""
  root = data_root(data_dir)
  if prepared_files(name, data_dir, 'dataset_info.json'):
    return None
  manual = dataset_spec(name).manual_download
  if manual:
    how = (f'put the original archives in {os.path.join(root, manual)} and run '
           f'`python -m jaxcnn.data.prepare {name} --data_dir {root}`')
  else:
    how = (f'run `python -m jaxcnn.data.prepare {name} --data_dir {root}` on a machine with '
           f'internet and copy {os.path.join(root, name)} here, or pass '
           f'--config.data.download=True')
  return f"dataset '{name}' is not prepared in data_dir {root}: {how}"


def preparation_problem(name: str, data_dir: str | None, download: bool) -> str | None:
  """Why training cannot read `name` as things stand: a dataset that it would have to
  download, unless asked to (None for the offline builders, which prepare themselves, and
  for `synthetic`)."""
  if name == 'synthetic' or name in OFFLINE_BUILDERS or download:
    return None
  return not_prepared_error(name, data_dir)


def require_prepared(name: str, data_dir: str | None, download: bool) -> None:
  """Fails at once (before TensorFlow's slow import) where preparation_problem says why."""
  problem = preparation_problem(name, data_dir, download)
  if problem:
    raise UserError(problem)
