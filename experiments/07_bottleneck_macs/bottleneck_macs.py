"""Claim 7 (GoogLeNet, section 4): 1x1 reductions cut the cost of 5x5 convs and of a whole
inception module.

  python experiments/07_bottleneck_macs/bottleneck_macs.py > experiments/07_bottleneck_macs/output.txt

Each configuration is a small Flax module (the reduced inception module is jaxcnn's own
GoogLeNet `Inception`); jaxcnn.summary traces it and counts multiply-accumulates per layer.
Every line prints the term H x W x C_out x k x k x C_in next to the counter's figure; the plot
goes to bottleneck_macs.png next to this file.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib

from jaxcnn.models.googlenet import Inception
from jaxcnn.summary import summarize


class Convs(nn.Module):
  """Convs in sequence, each (name, kernel, channels), SAME padding."""
  layers: tuple[tuple[str, int, int], ...]

  @nn.compact
  def __call__(self, x, train=False):
    for name, k, features in self.layers:
      x = nn.relu(nn.Conv(features, (k, k), padding='SAME', name=name)(x))
    return x


class NaiveInception(nn.Module):
  """Figure 2(a) of the paper: 1x1, 3x3 and 5x5 convs and 3x3 max pooling side by side."""
  widths: tuple[int, int, int]  # 1x1, 3x3, 5x5 output channels

  @nn.compact
  def __call__(self, x, train=False):
    branches = [nn.relu(nn.Conv(w, (k, k), padding='SAME', name=f'branch_{k}x{k}')(x))
                for w, k in zip(self.widths, (1, 3, 5))]
    pool = nn.max_pool(x, (3, 3), strides=(1, 1), padding='SAME')
    return jnp.concatenate([*branches, pool], axis=-1)


class ReducedInception(nn.Module):
  """Figure 2(b): GoogLeNet's module, 1x1 reductions before the 3x3 and 5x5 and after the pool."""
  widths: tuple[int, ...]  # (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)

  @nn.compact
  def __call__(self, x, train=False):
    return Inception(self.widths, 'paper', name='inception')(x, train)


def kernel_shapes(model: nn.Module, input_shape) -> dict[str, tuple[int, ...]]:
  """Module path -> kernel shape (kh, kw, C_in, C_out) of every conv."""
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape))['params']
  return {'/'.join(k.key for k in path[:-1]): leaf.shape
          for path, leaf in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == 'kernel'}


def report(title: str, model: nn.Module, input_shape: tuple[int, ...], source: str) -> dict:
  """Prints each layer's term H x W x C_out x kh x kw x C_in beside the counter's MACs."""
  summary = summarize(model, input_shape)
  kernels = kernel_shapes(model, input_shape)
  print(f"{title}, input {'x'.join(map(str, input_shape[1:]))}:")
  for layer in summary['layers']:
    _, h, w, c_out = layer['output_shape']
    if layer['path'] not in kernels:
      print(f"  {layer['path']}: {h}x{w}x{c_out}, {layer['macs']:,} multiplies")
      continue
    kh, kw, c_in, _ = kernels[layer['path']]
    print(f"  {layer['path']}: {h} x {w} x {c_out} x {kh} x {kw} x {c_in} = {layer['macs']:,}")
  terms = ' + '.join(f"{r['macs'] / 1e6:.2f}M" for r in summary['layers'] if r['macs'])
  print(f"  sum: {terms} = {summary['macs']:,} ({summary['macs'] / 1e6:.1f}M); "
        f"the source says {source}\n")
  return summary


def plot(summaries: dict[str, dict], path: str) -> None:
  """One stacked bar per configuration, a segment per conv layer."""
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  figure, axes = plt.subplots(figsize=(8, 4), dpi=80)
  for i, (name, summary) in enumerate(summaries.items()):
    bottom = 0.0
    for layer in summary['layers']:
      if layer['macs']:
        axes.bar(i, layer['macs'] / 1e6, bottom=bottom, color=f'C{len(axes.patches) % 10}',
                 edgecolor='white')
        bottom += layer['macs'] / 1e6
    axes.annotate(f'{bottom:.1f}M', (i, bottom), ha='center', va='bottom')
  axes.set_xticks(range(len(summaries)), list(summaries), fontsize='small')
  axes.set(ylabel='million multiply-accumulates', title='MACs per configuration (a segment per conv)')
  figure.tight_layout()
  figure.savefig(path, metadata={'Software': None})


if __name__ == '__main__':
  summaries = {
      '5x5 to 48\non 14x14x480': report(
          '5x5 conv to 48 channels', Convs((('conv_5x5', 5, 48),)), (1, 14, 14, 480), '112.9M'),
      '1x1 to 16, 5x5 to 48\non 14x14x480': report(
          '1x1 conv to 16 channels, then 5x5 conv to 48',
          Convs((('reduce_1x1', 1, 16), ('conv_5x5', 5, 48))), (1, 14, 14, 480),
          '1.5M + 3.8M = 5.3M'),
      'naive inception\non 28x28x256': report(
          'naive inception module (1x1/128, 3x3/192, 5x5/96, 3x3 max pool)',
          NaiveInception((128, 192, 96)), (1, 28, 28, 256), '854M'),
      'inception with 1x1 reductions\non 28x28x256': report(
          'inception module with 1x1 reductions to 64 (before the 3x3 and 5x5, after the pool)',
          ReducedInception((128, 64, 192, 64, 96, 64)), (1, 28, 28, 256), '358M'),
  }
  plot(summaries, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bottleneck_macs.png'))
