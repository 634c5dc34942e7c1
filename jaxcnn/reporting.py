"""What a run reports: WORKDIR/metrics.jsonl, TensorBoard events and the console.

Only process 0 writes. Each record is one JSON object per line with `step`, `split`
("train" or "eval") and the split's metrics.
"""

import json
import os

import jax
from tensorboardX import SummaryWriter
from tqdm import tqdm


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def format_record(record: dict) -> str:
  parts = [f"{record['split']:5s} step {record['step']:>6d}", f"loss {record['loss']:.4f}",
           f"top-1 {100 * record['top1']:.2f}%", f"top-5 {100 * record['top5']:.2f}%"]
  if 'images_per_sec' in record:
    parts += [f"{record['images_per_sec']:.0f} img/s", f"lr {record['learning_rate']:.3g}"]
  if record.get('skipped_steps'):
    parts.append(f"{record['skipped_steps']} non-finite steps skipped")
  if 'num_examples' in record:
    parts.append(f"{record['num_examples']} examples")
  return ' | '.join(parts)


class Reporter:

  def __init__(self, workdir: str, total_steps: int, start_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.progress = tqdm(total=total_steps, initial=start_step, unit='step', dynamic_ncols=True,
                         disable=None if self.enabled else True)
    self.tensorboard = None
    if self.enabled:
      # A resumed run recomputes the steps after its checkpoint; drop their old records.
      kept = [r for r in read_metrics(workdir) if r['step'] <= start_step]
      with open(self.path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in kept)
      self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def print(self, message: str) -> None:
    if self.enabled:
      self.progress.write(message)

  def advance(self, steps: int = 1) -> None:
    self.progress.update(steps)

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    for key, value in record.items():
      if key not in ('step', 'split'):
        self.tensorboard.add_scalar(f"{record['split']}/{key}", value, record['step'])
    self.tensorboard.flush()
    if record['split'] == 'train':
      self.progress.set_postfix(loss=f"{record['loss']:.4f}",
                                img_s=f"{record['images_per_sec']:.0f}", refresh=False)
    self.print(format_record(record))

  def close(self) -> None:
    self.progress.close()
    if self.tensorboard:
      self.tensorboard.close()
