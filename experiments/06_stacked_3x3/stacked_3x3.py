"""Claim 6 (VGG, section 2.3): two stacked 3x3 convolutions see 5x5, three see 7x7, and three
cost 27 C^2 weights against 49 C^2 for one 7x7 convolution.

  python experiments/06_stacked_3x3/stacked_3x3.py > experiments/06_stacked_3x3/output.txt

Builds each stack as a small Flax module (C channels in and out, no biases, as the claim
counts) and reads every number from jaxcnn.summary, which traces the module's forward pass;
draws them in stacked_3x3.png next to this file.
"""

import os

import flax.linen as nn
import matplotlib

from jaxcnn.summary import summarize

C = 64  # channels in and out of every conv
SIZE = 32  # input height and width (any size works; receptive fields do not depend on it)


class ConvStack(nn.Module):
  kernels: tuple[int, ...]

  @nn.compact
  def __call__(self, x, train=False):
    for i, k in enumerate(self.kernels):
      x = nn.relu(nn.Conv(C, (k, k), padding='SAME', use_bias=False, name=f'conv{i + 1}')(x))
    return x


def report(kernels: tuple[int, ...]) -> dict:
  """Prints the stack's layers with their weight terms; returns its summary."""
  summary = summarize(ConvStack(kernels), (1, SIZE, SIZE, C))
  name = ' + '.join(f'{k}x{k}' for k in kernels)
  print(f'{name} ({len(kernels)} conv{"s" if len(kernels) > 1 else ""}, C = {C}):')
  for layer, k in zip(summary['layers'], kernels):
    print(f"  {layer['path']}: {k} x {k} x C x C = {k} x {k} x {C} x {C} = {layer['params']:,} "
          f"weights; receptive field {layer['receptive_field']}x{layer['receptive_field']}")
  terms = ' + '.join(f'{k * k}' for k in kernels)
  print(f"  total: ({terms}) C^2 = {sum(k * k for k in kernels)} x {C * C:,} = "
        f"{summary['params']:,} weights; receptive field {summary['receptive_field']}x"
        f"{summary['receptive_field']}\n")
  return summary


def plot(summaries: dict[str, dict], path: str) -> None:
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  figure, (fields, weights) = plt.subplots(1, 2, figsize=(8, 3.5), dpi=80)
  names = list(summaries)
  for name, summary in summaries.items():
    layers = summary['layers']
    fields.plot(range(1, len(layers) + 1), [r['receptive_field'] for r in layers], marker='o',
                label=name)
  fields.set(xlabel='conv layers', ylabel='receptive field (px)', xticks=[1, 2, 3],
             title='receptive field after each layer')
  fields.legend(fontsize='small')
  bars = weights.bar(names, [s['params'] / C**2 for s in summaries.values()],
                     color=['tab:blue', 'tab:orange', 'tab:green', 'tab:red'])
  weights.bar_label(bars, fmt='%g C²')
  weights.set(ylabel='weights / C²', title=f'weights (C = {C})')
  weights.tick_params(axis='x', labelsize='small')
  figure.tight_layout()
  figure.savefig(path, metadata={'Software': None})


if __name__ == '__main__':
  summaries = {name: report(kernels) for name, kernels in
               (('2 x 3x3', (3, 3)), ('1 x 5x5', (5,)), ('3 x 3x3', (3, 3, 3)), ('1 x 7x7', (7,)))}
  three_3x3, one_7x7 = summaries['3 x 3x3']['params'], summaries['1 x 7x7']['params']
  plot(summaries, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stacked_3x3.png'))
  print(f'three 3x3 / one 7x7 = {three_3x3:,} / {one_7x7:,} = {three_3x3 / one_7x7:.4f} '
        f'(27/49 = {27 / 49:.4f}): {100 * (1 - three_3x3 / one_7x7):.1f}% fewer weights')
