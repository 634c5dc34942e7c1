"""What jaxcnn knows about each dataset, without importing TensorFlow."""

import dataclasses
import glob
import os

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  num_classes: int
  channels: int
  mean: tuple[float, ...]  # per-channel statistics of pixel / 255 over the train split
  std: tuple[float, ...]
  train_split: str = 'train'
  eval_split: str = 'test'
  # Where the files must be put by hand, relative to data_dir (None: TFDS downloads them).
  manual_download: str | None = None


DATASETS: dict[str, DatasetSpec] = {
    # Statistics of the native-size train images (digits: at 8x8; resizing up to the model's
    # input smooths the images, so their normalized std there is below 1, about 0.86 at 32).
    'digits': DatasetSpec(10, 1, (0.3053,), (0.3759,)),
    'synthetic': DatasetSpec(1000, 3, (0.0,) * 3, (1.0,) * 3),
    'mnist': DatasetSpec(10, 1, (0.1307,), (0.3081,)),
    'fashion_mnist': DatasetSpec(10, 1, (0.2860,), (0.3530,)),
    'cifar10': DatasetSpec(10, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    'cifar100': DatasetSpec(100, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'imagenette': DatasetSpec(10, 3, IMAGENET_MEAN, IMAGENET_STD, eval_split='validation'),
    'imagenet2012': DatasetSpec(1000, 3, IMAGENET_MEAN, IMAGENET_STD, eval_split='validation',
                                manual_download='downloads/manual'),
}


def dataset_spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise KeyError(name)
  return DATASETS[name]


OFFLINE_BUILDERS = ('digits',)  # prepared on first use, with no network


def not_prepared_error(name: str, data_dir: str | None) -> str | None:
  """Why `name` cannot be read from `data_dir` (None if TFDS files for it are there)."""
  root = data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'
  if glob.glob(os.path.join(os.path.expanduser(root), name, '*', 'dataset_info.json')):
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
