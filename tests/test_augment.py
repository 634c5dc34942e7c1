"""Train augmentations and eval crops on single images, each test run on both twins (tf.data's
augment.py / preprocess.py and the in-memory path's jax_augment.py / jax_preprocess.py):
shapes, ranges, seeds, crop offsets and flips in distribution, PCA lighting, 10-crop views,
the identity cases alike on both; and the multi-crop eval step."""

import types

import numpy as np
import pytest

from conftest import load_config

tf = pytest.importorskip('tensorflow')

import jax  # noqa: E402

from jaxcnn.data import augment, jax_augment, jax_preprocess, preprocess  # noqa: E402
from jaxcnn.data.datasets import IMAGENET_EIGVAL, IMAGENET_EIGVEC  # noqa: E402
from jaxcnn.data.in_memory import example_key  # noqa: E402
from jaxcnn.data.recipes import CENTER_VIEW, OPS, check_dataset, statistics  # noqa: E402

pytestmark = pytest.mark.usefixtures('unoptimized')  # XLA's optimizations off (conftest)

TWINS = ('tf.data', 'jax')
# The eval preprocessing of each twin.
PREPROCESS = {'tf.data': preprocess, 'jax': jax_preprocess}


def config_for(augment_ops=('resize',), image_size=32, resize_size=0, channels=3, **data):
  """A config whose normalization is the identity, so outputs are pixel / 255."""
  config = load_config('lenet')
  config.data.name = 'imagenet2012' if channels == 3 else 'digits'
  config.data.data_dir = '/nonexistent'  # no stored statistics: the built-in ones
  config.data.image_size, config.data.resize_size = image_size, resize_size
  config.data.augment = augment_ops
  config.data.mean, config.data.std = (0.0,) * channels, (1.0,) * channels
  for key, value in data.items():
    config.data[key] = value
  return config


def random_image(height, width, channels=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


def augmented(twin, config, image, seeds):
  """train_image of `image` under each (seed, epoch, index) in `seeds`, by the twin named
  `twin` as its input path runs it, as one numpy array."""
  if twin == 'jax':
    seeds = np.asarray(seeds, np.int32)
    keys = jax.vmap(example_key)(seeds[:, 0], seeds[:, 1], seeds[:, 2])
    return np.asarray(jax.jit(jax.vmap(lambda key: jax_augment.train_image(image, key, config)))(
        keys))
  ds = tf.data.Dataset.from_tensor_slices(np.asarray(seeds, np.int64))
  ds = ds.map(lambda s: augment.train_image(image, augment.example_seed(s[0], s[1], s[2]), config))
  return np.stack(list(ds.as_numpy_iterator()))


def test_every_op_is_implemented():
  """recipes.OPS is the one table of ops; each is the function of its name in both twins."""
  import inspect
  for op in OPS:
    assert list(inspect.signature(getattr(augment, op)).parameters) == ['image', 'seed', 'config']
    assert list(inspect.signature(getattr(jax_augment, op)).parameters) == [
        'image', 'key', 'config']


@pytest.mark.parametrize('ops, low, high', [
    (('resize',), 0.0, 1.0),
    (('resize_shorter', 'random_crop'), 0.0, 1.0),
    (('pad', 'random_crop'), 0.0, 1.0),
    (('random_resized_crop',), 0.0, 1.0),
    (('resize', 'flip'), 0.0, 1.0),
    # ImageNet's largest lighting shift at 4 std of alpha: 4 * 0.1 * 0.2175 * 0.584 < 0.06
    (('resize', 'pca_lighting'), -0.06, 1.06),
])
@pytest.mark.parametrize('twin', TWINS)
def test_each_op_gives_image_size_float32_in_range(ops, low, high, twin):
  config = config_for(ops, resize_size=40)
  image = random_image(45, 60)
  out = augmented(twin, config, image, [(0, 0, i) for i in range(8)])
  assert out.shape == (8, 32, 32, 3)
  assert out.dtype == np.float32
  assert low <= out.min() and out.max() <= high
  assert out.std() > 0.1  # still the random pixels (std 0.29 before resizing), not a blank


@pytest.mark.parametrize('twin', TWINS)
def test_normalization_uses_the_dataset_statistics(twin):
  config = config_for()
  config.data.mean, config.data.std = (), ()
  out = augmented(twin, config, np.full((32, 32, 3), 255, np.uint8), [(0, 0, 0)])[0]
  mean, std = np.asarray(statistics(config).mean), np.asarray(statistics(config).std)
  np.testing.assert_allclose(out[0, 0], (1 - mean) / std, rtol=1e-6)


def all_crops_and_flips(image, size):
  """Every size x size crop of `image` (float) and its mirror image."""
  height, width = image.shape[:2]
  crops = [image[top:top + size, left:left + size]
           for top in range(height - size + 1) for left in range(width - size + 1)]
  return crops + [crop[:, ::-1] for crop in crops]


@pytest.mark.parametrize('twin', TWINS)
def test_crops_and_flips_follow_the_seed(twin):
  config = config_for(('random_crop', 'flip'), image_size=24)
  image = random_image(30, 30)
  candidates = all_crops_and_flips(image.astype(np.float32) / 255, 24)  # 49 crops x 2
  seeds = [(0, 0, index) for index in range(40)]
  first, again = augmented(twin, config, image, seeds), augmented(twin, config, image, seeds)
  np.testing.assert_array_equal(first, again)  # the same seeds: the same crops and flips
  chosen = [next(i for i, c in enumerate(candidates) if np.array_equal(c, out)) for out in first]
  assert len(set(chosen)) >= 20  # each example its own crop
  assert 5 <= sum(i >= 49 for i in chosen) <= 35  # about half of them flipped
  # Another run seed, or the same example in another epoch, is augmented otherwise.
  for other in ([(1, 0, index) for index in range(40)], [(0, 1, index) for index in range(40)]):
    assert sum(np.array_equal(a, b) for a, b in zip(augmented(twin, config, image, other), first)) < 8


@pytest.mark.parametrize('twin', TWINS)
def test_pad_adds_black_borders_that_random_crops_take_in(twin):
  config = config_for(('pad', 'random_crop'), pad=4)
  image = np.full((32, 32, 3), 200, np.uint8)
  out = augmented(twin, config, image, [(0, 0, i) for i in range(20)])
  assert out.shape == (20, 32, 32, 3)
  black = (out == 0).all(axis=-1)
  assert black.any(axis=(1, 2)).sum() >= 15  # crops away from the centre show some padding
  assert black.sum(axis=(1, 2)).max() <= 32 * 32 - 28 * 28  # never more than 4 px each way


@pytest.mark.parametrize('twin', TWINS)
def test_random_resized_crop_covers_the_configured_area(twin):
  # Red is each pixel's column and green its row, so an output's colours give its crop box.
  rows, columns = np.mgrid[:200, :200]
  image = np.stack([columns, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
  config = config_for(('random_resized_crop',), image_size=64, crop_area=(0.08, 0.12),
                      crop_aspect=(0.75, 1.33))
  out = augmented(twin, config, image, [(0, 0, i) for i in range(20)]) * 255
  widths = out[..., 0].max(axis=(1, 2)) - out[..., 0].min(axis=(1, 2)) + 1
  heights = out[..., 1].max(axis=(1, 2)) - out[..., 1].min(axis=(1, 2)) + 1
  areas = widths * heights / 200**2
  assert 0.07 < areas.min() and areas.max() < 0.13
  assert 0.7 < (widths / heights).min() and (widths / heights).max() < 1.4
  lefts = out[..., 0].min(axis=(1, 2))
  assert lefts.max() - lefts.min() > 50  # from all over the image
  whole = augmented(twin, config_for(('random_resized_crop',), image_size=64,
                                     crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0)),
                    image, [(0, 0, 0)])[0]
  ops = PREPROCESS[twin]  # area 1, aspect 1 of a square: the whole image
  np.testing.assert_allclose(whole, np.asarray(ops.resize(ops.to_float(image), 64)), atol=1e-6)


def position_coded_image(side: int) -> np.ndarray:
  """Red is each pixel's column + 1 and green its row + 1 (0 would be padding)."""
  rows, columns = np.mgrid[:side, :side]
  return np.stack([columns + 1, rows + 1, np.zeros_like(rows)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize('twin', TWINS)
def test_crop_offsets_are_uniform_and_half_the_images_flipped(twin):
  """CIFAR's pad 4 + random 32x32 crop + flip on 2,000 examples: each of the 9 offsets a side
  about equally often, and half the crops mirrored."""
  count = 2000
  config = config_for(('pad', 'random_crop', 'flip'), pad=4)
  out = np.round(augmented(twin, config, position_coded_image(32),
                           [(0, 0, i) for i in range(count)]) * 255)
  # Pixel (16, 16) of a crop at (top, left) of the padded image is pixel (top + 12, left + 12)
  # of the image, never padding; mirrored, its columns run right to left.
  flipped = out[:, 16, 15, 0] > out[:, 16, 16, 0]
  columns = np.where(flipped[:, None], out[:, 16, ::-1, 0], out[:, 16, :, 0])
  lefts = columns[:, 16].astype(int) - 13
  tops = out[:, 16, 16, 1].astype(int) - 13
  for offsets in (lefts, tops):
    frequencies = np.bincount(offsets, minlength=9)
    assert len(frequencies) == 9  # offsets 0..8, all of them
    # Uniform: 222 expected each; a chi-square with 8 degrees of freedom is < 26 at p=0.001.
    expected = count / 9
    assert ((frequencies - expected) ** 2 / expected).sum() < 26, frequencies
  assert abs(flipped.mean() - 0.5) < 4 * 0.5 / np.sqrt(count)


@pytest.mark.parametrize('ops, data', [
    (('resize',), {}),
    (('pad', 'random_crop'), {'pad': 0}),
    (('random_crop',), {}),
    (('resize_shorter', 'random_crop'), {'resize_size': 32}),
    (('random_resized_crop',), {'crop_area': (1.0, 1.0), 'crop_aspect': (1.0, 1.0)}),
])
def test_no_op_parameters_give_the_identity_on_both_twins(ops, data):
  """Recipes that cannot change a 32x32 image (crops of its whole size, padding 0, resizes to
  its own size) give the image itself, on each twin, for any seed."""
  config = config_for(ops, **data)
  image = random_image(32, 32)
  for twin in TWINS:
    out = augmented(twin, config, image, [(0, 0, i) for i in range(4)])
    np.testing.assert_allclose(out, np.broadcast_to(image / 255, out.shape), atol=1e-6,
                               err_msg=twin)


@pytest.mark.parametrize('height, width, resize_size, crops', [
    (36, 44, 36, 10), (8, 8, 36, 1), (300, 240, 256, 10), (20, 30, 0, 1)])
def test_the_twins_evaluate_alike(height, width, resize_size, crops):
  """The same eval views to float rounding, upsampled, downsampled (antialiased) or not."""
  config = config_for(image_size=32 if resize_size != 256 else 224, resize_size=resize_size)
  config.eval.crops = crops
  image = random_image(height, width)
  twins = [np.asarray(PREPROCESS[twin].eval_input(image, config)) for twin in TWINS]
  np.testing.assert_allclose(*twins, atol=1e-4)  # under 1/39 of a grey level


def lighting_alphas(twin, config, count):
  """The weights alpha of each eigenvector in the lighting shift of a grey image."""
  image = np.full((4, 4, 3), 128, np.uint8)
  out = augmented(twin, config, image, [(3, 0, index) for index in range(count)])
  shift = out - 128 / 255
  assert np.allclose(shift, shift[:, :1, :1], atol=1e-6)  # the same shift for every pixel
  eigvec, eigval = np.asarray(IMAGENET_EIGVEC), np.asarray(IMAGENET_EIGVAL)
  coefficients = shift[:, 0, 0] @ np.linalg.inv(eigvec).T  # shift = eigvec @ (alpha * eigval)
  return coefficients / eigval


@pytest.mark.parametrize('lighting_std', [0.1, 0.3])
@pytest.mark.parametrize('twin', TWINS)
def test_pca_lighting_shifts_colours_along_eigenvectors_with_the_configured_spread(
    lighting_std, twin):
  count = 2000
  alphas = lighting_alphas(twin, config_for(('resize', 'pca_lighting'), lighting_std=lighting_std),
                           count)
  # alpha_i ~ N(0, lighting_std), independent. Bounds at 3-4 standard errors: a sample std
  # of 2000 draws is off by 1.6%, a correlation by 0.022.
  np.testing.assert_allclose(alphas.std(axis=0), lighting_std, rtol=0.06)
  np.testing.assert_allclose(alphas.mean(axis=0), 0, atol=4 * lighting_std / np.sqrt(count))
  correlations = np.corrcoef(alphas.T)[np.triu_indices(3, 1)]
  assert np.abs(correlations).max() < 0.09


def test_pca_lighting_needs_eigenvectors():
  from jaxcnn.errors import UserError
  config = config_for(('resize', 'pca_lighting'))
  config.data.name = 'cifar10'  # no built-in eigenvectors, none stored in data_dir
  with pytest.raises(UserError, match='jaxcnn.data.stats cifar10'):
    check_dataset(config, (None, None, 3))
  config.data.name = 'digits'  # one channel: the eigenvector is (1), the eigenvalue std^2
  check_dataset(config, (None, None, 1))


@pytest.mark.parametrize('twin', TWINS)
def test_eval_views_are_the_corners_centre_and_their_mirrors(twin):
  # The shorter side equals resize_size, so the resize is the identity and the crops can be
  # cut by hand from the image.
  image = random_image(36, 44)
  config = config_for(image_size=32, resize_size=36)
  config.eval.crops = 10
  ops = PREPROCESS[twin]
  views = np.asarray(ops.eval_views(image, config))
  pixels = image.astype(np.float32) / 255
  assert views.shape == (10, 32, 32, 3) and views.dtype == np.float32
  by_hand = [pixels[:32, :32], pixels[:32, 12:], pixels[4:, :32], pixels[4:, 12:],
             pixels[2:34, 6:38]]
  by_hand += [crop[:, ::-1] for crop in by_hand]
  for view, expected in zip(views, by_hand):
    np.testing.assert_allclose(view, expected, atol=1e-6)
  np.testing.assert_array_equal(views[CENTER_VIEW], np.asarray(ops.eval_image(image, config)))
  config.eval.crops = 5
  np.testing.assert_array_equal(np.asarray(ops.eval_views(image, config)), views[:5])


@pytest.mark.parametrize('twin', TWINS)
def test_eval_image_without_resize_size_is_the_whole_image(twin):
  image = random_image(20, 30)
  ops = PREPROCESS[twin]
  out = np.asarray(ops.eval_image(image, config_for(image_size=16)))
  np.testing.assert_allclose(out, np.asarray(ops.resize(ops.to_float(image), 16)), atol=1e-7)


def test_ten_crop_eval_step_averages_the_softmaxes():
  import jax
  from jaxcnn.models import create_model
  from jaxcnn.steps import eval_step
  config = load_config('lenet')
  model = create_model(config.model, 10)
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 32, 32, 1), np.float32))
  variables = jax.tree.map(lambda x: rng.normal(0, 0.3, x.shape).astype(np.float32), shapes)
  state = types.SimpleNamespace(apply_fn=model.apply, params=variables['params'],
                                batch_stats={})
  images = rng.standard_normal((6, 10, 32, 32, 1)).astype(np.float32) * 3
  logits = np.asarray(jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(variables, images))
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # [6, 10 views, 10]
  mean = probabilities.mean(axis=1)
  # Labels: the 10-crop prediction for examples 0-2, the centre view's runner-up for 3-5.
  labels = np.concatenate([mean[:3].argmax(-1), np.argsort(logits[3:, CENTER_VIEW])[:, -2]])
  mask = np.array([True] * 5 + [False])
  batch = {'image': images, 'label': labels.astype(np.int32), 'mask': mask}
  sums = jax.device_get(jax.jit(lambda batch: eval_step(state, batch))(batch))
  top1 = (mean.argmax(-1) == labels) & mask
  top5 = np.array([label in np.argsort(m)[-5:] for m, label in zip(mean, labels)]) & mask
  center_top1 = (logits[:, CENTER_VIEW].argmax(-1) == labels) & mask
  assert int(sums['num_examples']) == 5
  assert int(sums['top1']) == top1.sum() and int(sums['top5']) == top5.sum()
  assert int(sums['center_top1']) == center_top1.sum()
  loss = -np.log(mean[np.arange(6), labels])[mask].sum()
  np.testing.assert_allclose(float(sums['loss']), loss, rtol=1e-5)


@pytest.mark.parametrize('overrides, words', [
    ({'data.augment': ('resize', 'rotate')}, ["unknown op 'rotate'", 'random_resized_crop']),
    ({'data.augment': ('resize_shorter', 'flip')}, ['must end its resizing']),
    ({'data.augment': ('resize_shorter', 'random_crop'), 'data.resize_size': 0},
     ['resize_shorter', 'data.resize_size=0']),
    ({'data.resize_size': 30}, ['data.resize_size=30', 'image_size=32']),
    ({'data.crop_area': (0.5, 0.1)}, ['data.crop_area=(0.5, 0.1)']),
    ({'eval.crops': 3}, ['eval.crops=3', '10']),
    ({'eval.crops': 10, 'data.resize_size': 0}, ['eval.crops=10', 'data.resize_size=0']),
    ({'data.std': (0.2, 0.2, 0.2)}, ['data.std=(0.2, 0.2, 0.2)', '1 channel']),
])
def test_recipe_mistakes_are_one_line_errors(overrides, words):
  from jaxcnn import validate
  from jaxcnn.errors import UserError
  config = load_config('lenet')
  for key, value in overrides.items():
    section, field = key.split('.')
    config[section][field] = value
  with pytest.raises(UserError) as error:
    validate.check_config(config)
  message = str(error.value)
  assert '\n' not in message and all(word in message for word in words), message


def test_a_crop_larger_than_the_image_is_refused_before_training():
  from jaxcnn.data.recipes import crop_problem
  config = load_config('resnet', 'cifar_plain20')
  config.data.name = 'digits'
  assert crop_problem(config.data, (8, 8, 1)) is None  # resized to 32 first, then padded
  config.data.augment = ('pad', 'random_crop', 'flip')
  assert crop_problem(config.data, (32, 32, 3)) is None  # CIFAR: 40 px after padding
  assert crop_problem(config.data, (None, None, 3)) is None  # sizes vary: not known here
  assert crop_problem(config.data, (8, 8, 1)) == (
      "data.augment=('pad', 'random_crop', 'flip') crops 32x32 out of the 8x8 images of "
      'digits when they are 16 px a side; resize them first (resize or resize_shorter before '
      'random_crop)')
