"""A run's work directory: its config.json, and the rules for starting or resuming a run there.

WORKDIR/config.json is the config the run began with; checkpoints (jaxcnn/checkpoint.py) and
metrics (jaxcnn/reporting.py) live beside it. A run may resume in a workdir only with the same
config, up to the keys in RESUMABLE_CHANGES; `start_over` moves another run aside instead.
"""

import json
import os
import tempfile
import time

from ml_collections import config_dict

from jaxcnn.errors import UserError

CONFIG_FILE = 'config.json'

# What a resumed run may change: how long it trains, how it evaluates, checkpoints and
# reports, where its data lies, the devices it runs on and how it computes its convolutions.
# Anything else would make the resumed steps those of another experiment.
RESUMABLE_CHANGES = ('train.num_epochs', 'train.num_steps', 'train.log_every_steps', 'eval.',
                     'checkpoint.', 'data.data_dir', 'data.download', 'distributed.', 'mesh.',
                     'train.conv_tuning')


def write_run_config(workdir: str, config) -> None:
  with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))


def read_run_config(workdir: str) -> config_dict.ConfigDict:
  """The config a run in `workdir` was started with (tuples come back as lists)."""
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist; pass the --workdir of a training run')
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f'{path} is missing: {workdir} holds no jaxcnn run; pass the --workdir '
                    'of a training run')
  with open(path) as f:
    return config_dict.ConfigDict(json.load(f))


def _flat(tree, prefix: str = '') -> dict:
  if not isinstance(tree, dict):
    return {prefix[:-1]: tree}
  return {k: v for key, value in tree.items() for k, v in _flat(value, f'{prefix}{key}.').items()}


def resume_conflicts(saved, config) -> list[str]:
  """The keys on which `config` differs from the `saved` config of a run it would resume,
  other than those a resumed run may change, as 'key: saved -> new'. Keys the saved config
  lacks (added to jaxcnn after that run began) are not compared."""
  as_plain = lambda c: _flat(json.loads(c.to_json_best_effort()))
  old, new = as_plain(saved), as_plain(config)
  return [f'{key}: {old[key]!r} -> {new.get(key)!r}' for key in sorted(old)
          if old[key] != new.get(key) and not key.startswith(RESUMABLE_CHANGES)]


def check_writable(workdir: str) -> None:
  """Proves that `workdir`, or where it would be created, takes files; creates nothing."""
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise UserError(f'workdir {workdir} is not writable ({e.strerror or e}); pass a --workdir '
                    'you can write to') from None


def open_workdir(config, workdir: str, start_over: bool, is_first_process: bool) -> str | None:
  """Refuses a workdir it cannot write to, or whose checkpoints belong to a run of another
  config. With `start_over` such a run is moved aside to WORKDIR.replaced-TIME (by the first
  process; the caller synchronizes the others) and the new path is returned."""
  aside = None
  if os.path.isdir(os.path.join(workdir, 'checkpoints')):
    conflicts = resume_conflicts(read_run_config(workdir), config)
    if conflicts and not start_over:
      raise UserError(f'workdir {workdir} holds a run with another config ({"; ".join(conflicts)}); '
                      'pass another --workdir, or --start_over to move that run aside')
    if start_over:
      aside = f"{workdir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
      if is_first_process:
        os.rename(workdir, aside)
  check_writable(workdir)
  return aside
