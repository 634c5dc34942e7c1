"""Claim 10, the mirror images apart: each seed's final LeNet evaluated with 5 crops (the four
corners and the centre, no mirror images), beside the centre crop and the 10 crops.

  python experiments/10_ten_crop/five_crops.py > experiments/10_ten_crop/five_crops.txt

Run after the sweep in README.md: it restores the checkpoint of every variant in runs/ and
evaluates it on the whole test set with eval.crops=5 (one pass gives the 5-crop and the
centre-crop metrics); the 10-crop figures come from the runs' own final evaluation.
"""

import os
import statistics

from jaxcnn.reporting import read_metrics
from jaxcnn.rundir import read_run_config
from jaxcnn.train import evaluate_checkpoint

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'runs')


def main() -> None:
  print('| variant | centre crop top-1 | 5 crops top-1 | 10 crops top-1 |')
  print('|---|---:|---:|---:|')
  rows = []
  for name in sorted(n for n in os.listdir(RUNS) if os.path.isdir(os.path.join(RUNS, n))):
    workdir = os.path.join(RUNS, name)
    ten = [r for r in read_metrics(workdir) if r['split'] == 'eval'][-1]
    config = read_run_config(workdir)
    config.eval.crops = 5
    five = evaluate_checkpoint(config, workdir)
    assert five['center_top1'] == ten['center_top1']  # the same network and centre view
    rows.append([100 * five['center_top1'], 100 * five['top1'], 100 * ten['top1']])
    print(f'| {name} | ' + ' | '.join(f'{value:.2f}%' for value in rows[-1]) + ' |')
  spreads = [f'{statistics.fmean(column):.2f} ± {statistics.stdev(column):.2f}%'
             for column in zip(*rows)]
  print(f'| mean ± std of {len(rows)} | ' + ' | '.join(spreads) + ' |')


if __name__ == '__main__':
  main()
