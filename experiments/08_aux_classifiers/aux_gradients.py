"""Claim 8 (GoogLeNet, section 5): the auxiliary classifiers put gradient into the early layers.

  python experiments/08_aux_classifiers/aux_gradients.py > experiments/08_aux_classifiers/output.txt

At initialization (the paper's GoogLeNet: no batch norm, aux heads after 4a and 4d, losses
weighted 0.3), on a batch of the offline digits at 112x112, it measures the gradient norm of
every layer's parameters under the main loss alone and under the paper's total loss, for
three random initializations; it prints their mean and sample standard deviation over the
seeds and plots the means in bands from the lowest to the highest seed (aux_gradients.png
next to this file).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from jaxcnn import data as input_data
from jaxcnn.models import create_model
from jaxcnn.models.googlenet import INCEPTION_WIDTHS
from jaxcnn.config import load_module
from jaxcnn.steps import classification_loss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = (0, 1, 2)
BATCH = 64
SIZE = 112  # the smallest multiple of 16 at which the paper's aux heads (5x5/3 pools) fit


def layer_norms(grads) -> dict[str, float]:
  """Gradient norm of each top-level module's parameters."""
  return {name: float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(tree))))
          for name, tree in grads.items()}


def main() -> None:
  config = load_module(os.path.join(REPO, 'configs', 'googlenet.py')).get_config()
  config.data.name, config.data.image_size = 'digits', SIZE
  config.data.augment, config.data.resize_size = ('resize',), 0
  config.train.batch_size = BATCH
  data = input_data.create(config)
  batch = next(data.train_batches())
  model = create_model(config.model, data.num_classes)
  weights = tuple(config.train.aux_loss_weights)

  @jax.jit
  def gradients(seed):
    params = model.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, data.channels)))['params']

    def loss(params, aux_loss_weights):
      outputs = model.apply({'params': params}, batch['image'], train=True,
                            rngs={'dropout': jax.random.key(seed)})
      return classification_loss(outputs, batch['label'], 0.0, aux_loss_weights)[0]

    return (jax.grad(loss)(params, (0.0,) * len(weights)), jax.grad(loss)(params, weights))

  runs = [tuple(map(layer_norms, gradients(seed))) for seed in SEEDS]
  backbone = ['conv1', 'conv2', 'conv3', *(f'inception{n}' for n in INCEPTION_WIDTHS), 'fc']
  # [seed, layer] arrays: the norms under each loss, and their ratio.
  main_only = np.array([[run[0][name] for name in backbone] for run in runs])
  with_aux = np.array([[run[1][name] for name in backbone] for run in runs])
  ratio = with_aux / main_only
  print(f'GoogLeNet (paper variant) at init, digits {SIZE}x{SIZE}, batch {BATCH}, aux weights '
        f'{weights}; gradient norm of each layer, mean ± sample std over seeds {SEEDS}:')
  print(f"{'layer':14s} {'main loss':>19s} {'+ aux losses':>19s} {'ratio':>15s}")
  def spread(values, i, digits):
    return f'{values[:, i].mean():.{digits}g} ± {values[:, i].std(ddof=1):.2g}'

  for i, name in enumerate(backbone):
    print(f'{name:14s} {spread(main_only, i, 4):>19s} {spread(with_aux, i, 4):>19s} '
          f'{spread(ratio, i, 3):>15s}')
  plot(backbone, main_only, with_aux,
       os.path.join(os.path.dirname(os.path.abspath(__file__)), 'aux_gradients.png'))


def plot(layers, main_only, with_aux, path) -> None:
  """Each loss's mean norm per layer, in a band from the lowest to the highest seed's."""
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  figure, axes = plt.subplots(figsize=(8, 4), dpi=80)
  for color, (norms, label) in enumerate([(main_only, 'main loss'),
                                          (with_aux, 'main + 0.3 x (aux1 + aux2)')]):
    axes.plot(layers, norms.mean(axis=0), marker='o', color=f'C{color}',
              label=f'{label}, mean of {len(norms)} seeds')
    axes.fill_between(layers, norms.min(axis=0), norms.max(axis=0), color=f'C{color}', alpha=0.2,
                      linewidth=0)
  axes.set_yscale('log')
  axes.set(ylabel='gradient norm', title='GoogLeNet at init: gradient reaching each layer')
  axes.tick_params(axis='x', labelrotation=60, labelsize='small')
  axes.grid(alpha=0.3)
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, metadata={'Software': None})


if __name__ == '__main__':
  main()
