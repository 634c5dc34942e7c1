"""Per-image preprocessing for evaluation and prediction, and the pieces training shares.

`eval_image(image, config)` turns one decoded uint8 HxWxC image into the model's input as the
eval pipeline feeds it; `eval_views` gives the views of multi-crop testing (the four corner
crops and the centre crop, then for 10 crops the same five mirrored), whose view 4 is
`eval_image`.
Pixels are scaled to [0, 1] before anything else, so every statistic is of pixel / 255.
"""

from jaxcnn.data.tensorflow import tf

from jaxcnn.data.recipes import CENTER_VIEW, normalization


def normalize(image: tf.Tensor, config) -> tf.Tensor:
  """Per-channel (image - mean) / std; `data.mean` and `data.std` override the dataset's."""
  mean, std = normalization(config)
  return (image - mean) / std


def to_float(image) -> tf.Tensor:
  return tf.cast(tf.convert_to_tensor(image), tf.float32) / 255.0


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """The whole image to size x size (the aspect ratio is not kept)."""
  return tf.image.resize(image, (size, size), antialias=True)


def resize_shorter(image: tf.Tensor, size: int) -> tf.Tensor:
  """The shorter side to `size`, keeping the aspect ratio."""
  height, width = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
  scale = size / tf.minimum(height, width)
  new_size = tf.maximum(tf.cast(tf.round([height * scale, width * scale]), tf.int32), size)
  return tf.image.resize(image, new_size, antialias=True)


def _eval_resized(image, config) -> tf.Tensor:
  """The image the eval crops are cut from: shorter side to `data.resize_size` when set, else
  the whole image at `data.image_size` (then the single crop is the image itself)."""
  image = to_float(image)
  if config.data.resize_size:
    return resize_shorter(image, config.data.resize_size)
  return resize(image, config.data.image_size)


def _crop(image: tf.Tensor, top, left, size: int) -> tf.Tensor:
  return tf.image.crop_to_bounding_box(image, top, left, size, size)


def _center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  return _crop(image, (height - size) // 2, (width - size) // 2, size)


def _five_crops(image: tf.Tensor, size: int) -> list[tf.Tensor]:
  """Top-left, top-right, bottom-left, bottom-right and centre size x size crops."""
  bottom, right = tf.shape(image)[0] - size, tf.shape(image)[1] - size
  return [_crop(image, 0, 0, size), _crop(image, 0, right, size),
          _crop(image, bottom, 0, size), _crop(image, bottom, right, size),
          _center_crop(image, size)]


@tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for AutoGraph to rewrite
def eval_image(image, config) -> tf.Tensor:
  """float32 [S, S, C], S = data.image_size: the centre crop of the resized image, normalized."""
  return normalize(_center_crop(_eval_resized(image, config), config.data.image_size), config)


@tf.autograph.experimental.do_not_convert
def eval_views(image, config) -> tf.Tensor:
  """float32 [V, S, S, C], V = eval.crops: the 4 corner crops and the centre crop, then (for
  10) their mirror images. View CENTER_VIEW is `eval_image`."""
  crops = tf.stack(_five_crops(_eval_resized(image, config), config.data.image_size))
  if config.eval.crops == 10:
    crops = tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)
  return normalize(crops, config)


def eval_input(image, config) -> tf.Tensor:
  """What evaluation feeds the model for one image: `eval_image`, or its 5 or 10 views."""
  return eval_image(image, config) if config.eval.crops == 1 else eval_views(image, config)
