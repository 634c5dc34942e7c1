"""What jaxcnn knows about each dataset, without importing TensorFlow."""

import dataclasses

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
