"""What a run reports: WORKDIR/metrics.jsonl, TensorBoard events and the console.

Only process 0 writes. Each record is one JSON object per line with `step`, `split`
("train" or "eval") and the split's metrics, appended in a single write, so a crash can tear
only the last line; readers drop such a line. A file that cannot be written (a full disk)
raises WriteError.
"""

import contextlib
import errno
import json
import os
import sys

import jax
from tqdm import tqdm

from jaxcnn import rundir
from jaxcnn.errors import UserError, warn, writing

METRICS_FILE = 'metrics.jsonl'


def _read(path: str) -> tuple[list[dict], str | None]:
  """The records of a metrics file, and its torn last line if a crash left one."""
  if not os.path.exists(path):
    return [], None
  with open(path) as f:
    lines = [line for line in f.read().split('\n') if line.strip()]
  records = []
  for number, line in enumerate(lines, 1):
    try:
      records.append(json.loads(line))
    except ValueError:
      if number == len(lines):  # a record whose write a crash interrupted
        return records, line
      raise UserError(f'{path} line {number} is not a JSON record: the file was damaged; '
                      'delete that line') from None
  return records, None


def read_metrics(workdir: str) -> list[dict]:
  """The records of a run, less a last line that a crash tore."""
  return _read(os.path.join(workdir, METRICS_FILE))[0]


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
    self.path = os.path.join(workdir, METRICS_FILE)
    self.events = os.path.join(workdir, 'tensorboard')
    self.progress = tqdm(total=total_steps, initial=start_step, unit='step', dynamic_ncols=True,
                         disable=None if self.enabled else True)
    self.metrics = self.tensorboard = None
    self.step = start_step  # of the last record
    if self.enabled:
      records, torn = _read(self.path)
      if torn:
        warn(f'dropped the torn last line of {self.path} ({torn[:40]!r}...), left by a run '
             'stopped while writing it')
      # A resumed run recomputes the steps after its checkpoint; drop their old records.
      kept = [r for r in records if r['step'] <= start_step]
      with writing(f'writing {self.path}', start_step):
        rundir.write_atomically(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
        self.metrics = open(self.path, 'ab', buffering=0)  # unbuffered: a write is one write(2)
      SummaryWriter = _tensorboardx_writer()
      with writing(f'writing {self.events}', start_step):
        self.tensorboard = SummaryWriter(self.events)

  def print(self, message: str) -> None:
    if self.enabled:
      self.progress.write(message)

  def advance(self, steps: int = 1) -> None:
    self.progress.update(steps)

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    self.step = record['step']
    with writing(f'writing {self.path}', self.step):
      line = (json.dumps(record) + '\n').encode()
      if self.metrics.write(line) != len(line):  # a full disk can cut a write short
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with writing(f'writing {self.events}', self.step):
      for key, value in record.items():
        if key not in ('step', 'split'):
          self.tensorboard.add_scalar(f"{record['split']}/{key}", value, self.step)
      self.tensorboard.flush()
    if record['split'] == 'train':
      self.progress.set_postfix(loss=f"{record['loss']:.4f}",
                                img_s=f"{record['images_per_sec']:.0f}", refresh=False)
    self.print(format_record(record))

  def __enter__(self):
    return self

  def __exit__(self, error_type, *_):
    """Closes the files. After a run that failed, a second failure would only hide the first."""
    self.progress.close()
    if not self.enabled:
      return
    self.metrics.close()
    if error_type is None:
      with writing(f'writing {self.events}', self.step):
        self.tensorboard.close()
    else:
      with contextlib.suppress(OSError):
        self.tensorboard.close()


def _tensorboardx_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch. tensorboardX imports torch where
  it is installed, only to accept its tensors, which jaxcnn never passes: 1.5-2 s and a few
  hundred MB for every run (a run refused at its start does not import it at all)."""
  if 'torch' in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules['torch'] = None  # makes `import torch` raise ImportError, which tensorboardX takes
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules['torch']
  return SummaryWriter
