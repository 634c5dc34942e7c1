"""The JAX twins of augment.py's ops: train-time augmentation on the devices, for the
in-memory path.

Each op that jaxcnn/data/recipes.py lists is the function of the same name here, called as
`op(image, key, config)` on one float32 [H, W, C] image of pixel / 255 with static H and W
(vmap runs it over a batch). Every random number comes from jax.random with the example's own
key (from the run's seed, the epoch and the example's index in the epoch) folded with the op's
position in the recipe, so an example is augmented alike on any mesh, in any number of
processes, resumed or not. The distributions are those of the tf.data twins.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.data import jax_preprocess
from jaxcnn.data.recipes import statistics

# tf.image.sample_distorted_bounding_box's attempts at a box before it takes the whole image.
CROP_ATTEMPTS = 10


def resize(image, key, config):
  del key
  return jax_preprocess.resize(image, config.data.image_size)


def resize_shorter(image, key, config):
  del key
  return jax_preprocess.resize_shorter(image, config.data.resize_size)


def pad(image, key, config):
  del key
  pad = config.data.pad
  return jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))


def random_crop(image, key, config):
  """An image_size square at offsets drawn uniformly from every place it fits."""
  size = config.data.image_size
  height, width, channels = image.shape
  top, left = jax.random.randint(key, (2,), 0, np.array([height - size + 1, width - size + 1]))
  return jax.lax.dynamic_slice(image, (top, left, 0), (size, size, channels))


def crop_box(key, height: int, width: int, area_range, aspect_range) -> tuple[jax.Array, ...]:
  """(top, left, box height, box width) of a random box in a height x width image, drawn as
  tf.image.sample_distorted_bounding_box draws it with no object boxes: each of CROP_ATTEMPTS
  attempts takes an aspect ratio (width / height) uniform in `aspect_range` and a height
  uniform between those of the smallest and the largest area of `area_range` (fractions of
  the image), rounds as TensorFlow's kernel does, and keeps the box if its area and sides fit;
  the first kept box wins, else the whole image. As in that kernel, offsets are uniform in
  [0, side - box side), the last place excluded unless the box fills the side."""
  aspect_key, height_key, top_key, left_key = jax.random.split(key, 4)
  attempts = (CROP_ATTEMPTS,)
  aspect = jax.random.uniform(aspect_key, attempts, jnp.float32, *aspect_range)
  min_area = jnp.float32(area_range[0]) * width * height
  max_area = jnp.float32(area_range[1]) * width * height
  lowest = jnp.rint(jnp.sqrt(min_area / aspect))
  highest = jnp.rint(jnp.sqrt(max_area / aspect))
  # The tallest box whose rounded width still fits the image.
  fitting = jnp.floor((width + 0.5 - 1e-7) / aspect)
  fitting = jnp.where(jnp.rint(fitting * aspect) > width, fitting - 1, fitting)
  highest = jnp.minimum(jnp.where(jnp.rint(highest * aspect) > width, fitting, highest), height)
  lowest = jnp.minimum(lowest, highest)
  box_height = jax.random.randint(height_key, attempts, lowest.astype(jnp.int32),
                                  highest.astype(jnp.int32) + 1)
  box_width = jnp.rint(box_height * aspect).astype(jnp.int32)
  # Rounding can leave the area just outside the range: one row more, then one less.
  grow = box_height * box_width < min_area
  box_height = jnp.where(grow, box_height + 1, box_height)
  box_width = jnp.where(grow, jnp.rint(box_height * aspect).astype(jnp.int32), box_width)
  shrink = box_height * box_width > max_area
  box_height = jnp.where(shrink, box_height - 1, box_height)
  box_width = jnp.where(shrink, jnp.rint(box_height * aspect).astype(jnp.int32), box_width)
  area = box_height * box_width
  fits = ((area >= min_area) & (area <= max_area) & (box_width <= width)
          & (box_height <= height) & (box_width > 0) & (box_height > 0))
  top = jax.random.randint(top_key, attempts, 0, jnp.maximum(height - box_height, 1))
  left = jax.random.randint(left_key, attempts, 0, jnp.maximum(width - box_width, 1))
  first = jnp.argmax(fits)
  found = fits[first]
  return (jnp.where(found, top[first], 0), jnp.where(found, left[first], 0),
          jnp.where(found, box_height[first], height), jnp.where(found, box_width[first], width))


def random_resized_crop(image, key, config):
  """A crop of random area (data.crop_area of the image) and aspect ratio (data.crop_aspect,
  width / height), resized to image_size; the whole image if ten tries find none. The resize
  samples the box from the whole image, so at the box's edges the antialiasing kernel may
  weigh a pixel just outside it, where the tf.data twin (which slices first) has none."""
  size = config.data.image_size
  height, width, channels = image.shape
  top, left, box_height, box_width = crop_box(key, height, width, tuple(config.data.crop_area),
                                              tuple(config.data.crop_aspect))
  scale = size / jnp.stack([box_height, box_width]).astype(jnp.float32)
  translation = -jnp.stack([top, left]).astype(jnp.float32) * scale
  return jax.image.scale_and_translate(image, (size, size, channels), (0, 1), scale, translation,
                                       'linear', antialias=True)


def flip(image, key, config):
  del config
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1], image)


def pca_lighting(image, key, config):
  """AlexNet's colour augmentation: add sum_i alpha_i eigval_i eigvec_i to every pixel, with
  alpha_i ~ N(0, data.lighting_std) drawn once per image."""
  stats = statistics(config)
  alpha = config.data.lighting_std * jax.random.normal(key, (len(stats.eigval),))
  eigvec = jnp.asarray(stats.eigvec, jnp.float32)
  return image + eigvec @ (alpha * jnp.asarray(stats.eigval, jnp.float32))


def train_image(image, key, config) -> jax.Array:
  """float32 [S, S, C]: one uint8 image through `data.augment`, then normalized."""
  image = jax_preprocess.to_float(image)
  for position, op in enumerate(config.data.augment):
    # Each op of recipes.OPS is the function of its name here.
    image = globals()[op](image, jax.random.fold_in(key, position), config)
  return jax_preprocess.normalize(image, config)
