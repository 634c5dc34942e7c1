"""The JAX twin of preprocess.py: one uint8 image to the model's input, as the in-memory
path's evaluation feeds it and as `jaxcnn.restore(...).predict` feeds it on either path, and
the resizes that the JAX train ops share.

Every function takes one image of static shape [H, W, C] and gives a static shape, so that jit
compiles it once per image shape and vmap runs it over a batch. `eval_views` gives the views
of multi-crop testing (the four corner crops and the centre crop, then for 10 crops the same
five mirrored), whose view CENTER_VIEW is `eval_image`. Pixels are scaled to [0, 1] first.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.data.recipes import normalization


def to_float(image) -> jax.Array:
  return jnp.asarray(image, jnp.float32) / 255.0


def normalize(image: jax.Array, config) -> jax.Array:
  """Per-channel (image - mean) / std; `data.mean` and `data.std` override the dataset's."""
  mean, std = normalization(config)
  return (image - mean) / std


def _resized(image: jax.Array, height: int, width: int) -> jax.Array:
  # Antialiased bilinear, as tf.image.resize(..., antialias=True) on the tf.data path.
  return jax.image.resize(image, (height, width, image.shape[-1]), 'linear', antialias=True)


def resize(image: jax.Array, size: int) -> jax.Array:
  """The whole image to size x size (the aspect ratio is not kept)."""
  return _resized(image, size, size)


def shorter_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
  """(height, width) with the shorter side at `size` and the aspect ratio kept, computed in
  float32 and rounded half to even, as the tf.data path's resize_shorter computes it."""
  scale = np.float32(size) / np.float32(min(height, width))
  return tuple(max(int(np.round(np.float32(side) * scale)), size) for side in (height, width))


def resize_shorter(image: jax.Array, size: int) -> jax.Array:
  """The shorter side to `size`, keeping the aspect ratio."""
  return _resized(image, *shorter_side_shape(*image.shape[:2], size))


def _eval_resized(image, config) -> jax.Array:
  """The image the eval crops are cut from: shorter side to `data.resize_size` when set, else
  the whole image at `data.image_size` (then the single crop is the image itself)."""
  image = to_float(image)
  if config.data.resize_size:
    return resize_shorter(image, config.data.resize_size)
  return resize(image, config.data.image_size)


def _crop(image: jax.Array, top: int, left: int, size: int) -> jax.Array:
  return image[top:top + size, left:left + size]


def _center_crop(image: jax.Array, size: int) -> jax.Array:
  return _crop(image, (image.shape[0] - size) // 2, (image.shape[1] - size) // 2, size)


def _five_crops(image: jax.Array, size: int) -> list[jax.Array]:
  """Top-left, top-right, bottom-left, bottom-right and centre size x size crops."""
  bottom, right = image.shape[0] - size, image.shape[1] - size
  return [_crop(image, 0, 0, size), _crop(image, 0, right, size), _crop(image, bottom, 0, size),
          _crop(image, bottom, right, size), _center_crop(image, size)]


def eval_image(image, config) -> jax.Array:
  """float32 [S, S, C], S = data.image_size: the centre crop of the resized image, normalized."""
  return normalize(_center_crop(_eval_resized(image, config), config.data.image_size), config)


def eval_views(image, config) -> jax.Array:
  """float32 [V, S, S, C], V = eval.crops: the 4 corner crops and the centre crop, then (for
  10) their mirror images. View CENTER_VIEW is `eval_image`."""
  crops = jnp.stack(_five_crops(_eval_resized(image, config), config.data.image_size))
  if config.eval.crops == 10:
    crops = jnp.concatenate([crops, crops[:, :, ::-1]])
  return normalize(crops, config)


def eval_input(image, config) -> jax.Array:
  """What evaluation feeds the model for one image: `eval_image`, or its 5 or 10 views."""
  return eval_image(image, config) if config.eval.crops == 1 else eval_views(image, config)
