"""How many training images per second the input pipeline alone delivers (no model).

  python -m jaxcnn.data.throughput --config configs/alexnet.py[:PRESET] [--batches N]
      [--standin_images N] [--config.KEY=VALUE ...]

It makes train batches exactly as training does, with the config's recipe (tf.data: read,
decode, augment on the host; in memory: the jit-compiled batch function, on one device), and
times `--batches` of them after two warm-up batches. `--standin_images N` first
writes N random JPEGs with sides of 256-400 px (ImageNet's usual sizes) as a stand-in copy
of the config's dataset in a temporary data_dir, for when the dataset itself is not at hand.
"""

import tempfile
import time

import jax
from absl import flags

from jaxcnn import cli
from jaxcnn import data as input_data

WARMUP_BATCHES = 2
STANDIN_SIDES = (256, 400)


def measure(config, batches: int = 20) -> dict:
  """Times `batches` train batches of the pipeline `config` describes (one process's share);
  returns images_per_sec, batches, batch_size and seconds."""
  data = input_data.create(config, process_index=0, process_count=1)
  iterator = data.train_batches()
  for _ in range(WARMUP_BATCHES):
    jax.block_until_ready(next(iterator))
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(iterator)
  jax.block_until_ready(batch)  # the in-memory path's batches are computed asynchronously, in order
  seconds = time.perf_counter() - start
  return {'images_per_sec': batches * data.train_batch / seconds, 'batches': batches,
          'batch_size': data.train_batch, 'seconds': seconds}


def write_standin(config, data_dir: str, count: int) -> None:
  """A stand-in of the config's dataset in `data_dir`: `count` random train JPEGs, 8 eval."""
  from jaxcnn.data.datasets import dataset_spec
  from jaxcnn.data.standin import random_images, write_dataset
  spec = dataset_spec(config.data.name)
  write_dataset(config.data.name, data_dir, {
      spec.train_split: random_images(count, STANDIN_SIDES, spec.channels, spec.num_classes),
      spec.eval_split: random_images(8, STANDIN_SIDES, spec.channels, spec.num_classes, seed=1)})


def define_flags() -> None:
  cli.define_config_flag()
  flags.DEFINE_integer('batches', 20, 'Train batches to time.')
  flags.DEFINE_integer('standin_images', 0, 'Time a stand-in dataset of this many random '
                       '256-400 px JPEGs instead of the real one.')


def main(arguments: list[str]) -> None:
  del arguments  # cli.run refuses any
  config = flags.FLAGS.config
  from jaxcnn import validate
  validate.check_config(config)
  with tempfile.TemporaryDirectory() as standin_dir:
    if flags.FLAGS.standin_images:
      write_standin(config, standin_dir, flags.FLAGS.standin_images)
      config.data.data_dir = standin_dir
    result = measure(config, flags.FLAGS.batches)
  print(f"input pipeline: {result['images_per_sec']:.1f} images/s ({result['batches']} batches "
        f"of {result['batch_size']} in {result['seconds']:.1f} s; {config.data.name} at "
        f"{config.data.image_size}x{config.data.image_size}, augment "
        f"{tuple(config.data.augment)})")


if __name__ == '__main__':
  cli.run(main, define_flags)
