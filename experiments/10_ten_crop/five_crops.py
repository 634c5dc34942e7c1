"""Claim 10, the mirror images apart: each seed's final LeNet evaluated with 5 crops (the four
corners and the centre, no mirror images), beside the centre crop and the 10 crops.

  python experiments/10_ten_crop/five_crops.py > experiments/10_ten_crop/five_crops.txt

Run after the sweep in README.md: it restores the checkpoint of every variant in runs/ and
evaluates it on the whole test set with eval.crops=5 (one pass gives the 5-crop and the
centre-crop metrics); the 10-crop figures come from the runs' own final evaluation.
"""

import os

from jaxcnn.checkpoint import read_run_config
from jaxcnn.reporting import read_metrics
from jaxcnn.train import evaluate_checkpoint

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'runs')


def main() -> None:
  print('| variant | centre crop top-1 | 5 crops top-1 | 10 crops top-1 |')
  print('|---|---:|---:|---:|')
  for name in sorted(os.listdir(RUNS)):
    workdir = os.path.join(RUNS, name)
    ten = [r for r in read_metrics(workdir) if r['split'] == 'eval'][-1]
    config = read_run_config(workdir)
    config.eval.crops = 5
    five = evaluate_checkpoint(config, workdir)
    assert five['center_top1'] == ten['center_top1']  # the same network and centre view
    print(f"| {name} | {100 * five['center_top1']:.2f}% | {100 * five['top1']:.2f}% | "
          f"{100 * ten['top1']:.2f}% |")


if __name__ == '__main__':
  main()
