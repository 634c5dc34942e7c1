"""Train-time augmentation: the ops that `data.augment` names, run in order on one image.

Each op that jaxcnn/data/recipes.py lists is the function of the same name here.

Every random number comes from TensorFlow's stateless ops, seeded by the example's own seed
(from the run's seed, the epoch and the example's index in the epoch) folded with the op's
position in the recipe: an example is augmented the same way however many processes read the
data and whether or not the run was resumed.
"""

from jaxcnn.data.tensorflow import tf

from jaxcnn.data import preprocess
from jaxcnn.data.recipes import statistics


def resize(image, seed, config):
  del seed
  return preprocess.resize(image, config.data.image_size)


def resize_shorter(image, seed, config):
  del seed
  return preprocess.resize_shorter(image, config.data.resize_size)


def pad(image, seed, config):
  del seed
  pad = config.data.pad
  return tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])


def random_crop(image, seed, config):
  size = config.data.image_size
  return tf.image.stateless_random_crop(image, (size, size, image.shape[-1]), seed)


def random_resized_crop(image, seed, config):
  """A crop of random area (data.crop_area of the image) and aspect ratio (data.crop_aspect,
  width / height), resized to image_size; the whole image if ten tries find none."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed, min_object_covered=0.0,
      aspect_ratio_range=tuple(config.data.crop_aspect), area_range=tuple(config.data.crop_area),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  return preprocess.resize(tf.slice(image, begin, size), config.data.image_size)


def flip(image, seed, config):
  del config
  return tf.image.stateless_random_flip_left_right(image, seed)


def pca_lighting(image, seed, config):
  """AlexNet's colour augmentation: add sum_i alpha_i eigval_i eigvec_i to every pixel, with
  alpha_i ~ N(0, data.lighting_std) drawn once per image."""
  stats = statistics(config)
  alpha = tf.random.stateless_normal([len(stats.eigval)], seed, stddev=config.data.lighting_std)
  eigvec = tf.constant(stats.eigvec, tf.float32)
  return image + tf.linalg.matvec(eigvec, alpha * tf.constant(stats.eigval, tf.float32))


def epoch_seed(seed: int, epoch: int) -> int:
  """The seed of an epoch's shuffle and of its examples' augmentation, in a run seeded `seed`."""
  return seed * 100_003 + epoch


def example_seed(seed: int, epoch: int, index) -> tf.Tensor:
  """The stateless seed of the example at `index` of `epoch` in a run seeded `seed`."""
  return tf.stack([tf.cast(epoch_seed(seed, epoch), tf.int64), tf.cast(index, tf.int64)])


@tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for AutoGraph to rewrite
def train_image(image, seed: tf.Tensor, config) -> tf.Tensor:
  """float32 [S, S, C]: one decoded uint8 image through `data.augment`, then normalized."""
  image = preprocess.to_float(image)
  for position, op in enumerate(config.data.augment):
    # Each op of recipes.OPS is the function of its name here.
    image = globals()[op](image, tf.random.experimental.stateless_fold_in(seed, position), config)
  return preprocess.normalize(image, config)
