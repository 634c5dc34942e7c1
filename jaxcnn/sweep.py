"""Ablation sweeps: every variant of a sweep trains as its own run, then one table and plots.

  python -m jaxcnn.sweep --config configs/NAME.py[:PRESET] --sweep SWEEP [--workdir DIR]
      [--seeds N] [--parallel N] [--results_dir DIR] [--target_train_error E]
      [--config.KEY=VALUE ...] [--launcher=local|slurm|submitit_local] [--wait] [--nodes N] ...

Sweeps are defined in the config file's `SWEEPS` dict: name -> a dict of overrides
{'section.key': value}, or a list of such dicts. A list value is a grid axis: each dict
expands to the product of its list values (tuples are plain values). For example
{'model.depth': [20, 56], 'model.shortcuts': [False, True]} is four variants.

Each variant runs `python -m jaxcnn.main` in a subprocess in DIR/<variant> (so a crash stays
in its variant), with the `--config.KEY=VALUE` options given here and then the variant's
overrides. A finished variant is skipped when the sweep is rerun, without starting JAX: its
DIR/<variant>/sweep.json holds the same command, and its last eval and checkpoint are at the
run's last step. The others start, or resume where their run stopped. With
--launcher=slurm or submitit_local each variant is instead one submitit job
(jaxcnn/launch.py, which takes the jobs' resources) that runs the same command; a rerun
does not submit a variant again while its job is queued or running. Then DIR (or
--results_dir) gets results.csv and results.md, one row per variant, and one PNG per metric
(train loss and error, test loss and error against the step) overlaying the variants' curves.

With --seeds N every variant trains N times, with seeds 0 to N-1 (DIR/<variant>_seed-<S>):
results.csv and results.md then give each variant's mean and sample standard deviation over
its seeds, runs.csv and runs.md one row per run, and the plots each variant's mean curve in a
band from the lowest to the highest seed's.
"""

import concurrent.futures
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

from absl import flags

from jaxcnn import cli, launch
from jaxcnn import config as config_lib
from jaxcnn.checkpoint import saved_steps
from jaxcnn.errors import UserError, reason
from jaxcnn.reporting import read_metrics
from jaxcnn.rundir import CONFIG_FILE, RunLock, read_run_config, write_atomically

MARKER = 'sweep.json'
# The metrics plotted, one PNG each: (file name, title, split, key). Top-1 is drawn as error;
# a test plot also draws any other view of the metric (e.g. center_top1 of 10-crop runs).
PLOTS = (('train_loss', 'train loss', 'train', 'loss'),
         ('train_error', 'train top-1 error', 'train', 'top1'),
         ('test_loss', 'test loss', 'eval', 'loss'),
         ('test_error', 'test top-1 error', 'eval', 'top1'))


def expand(sweep) -> list[dict]:
  """The variants of a sweep definition: each dict's grid product, in order."""
  variants = []
  for grid in sweep if isinstance(sweep, list) else [sweep]:
    axes = [value if isinstance(value, list) else [value] for value in grid.values()]
    variants += [dict(zip(grid, values)) for values in itertools.product(*axes)]
  return variants


def with_seeds(variants: list[dict], seeds: int) -> list[dict]:
  """Each variant once per seed 0..SEEDS-1 (with seeds > 1); the variants as they are otherwise."""
  if seeds < 1:
    raise UserError(f'--seeds={seeds}: give at least 1')
  if seeds == 1:
    return variants
  if any('seed' in overrides for overrides in variants):
    raise UserError('this sweep sets seed itself; drop --seeds')
  return [{**overrides, 'seed': seed} for overrides in variants for seed in range(seeds)]


def _format_value(value) -> str:
  if isinstance(value, tuple):
    return 'x'.join(map(_format_value, value)) or 'none'
  return ''.join(c for c in str(value) if c.isalnum() or c in '.+-')


def variant_name(overrides: dict) -> str:
  """A short directory name: `key-value` for each override's last key part, joined by '_'."""
  return '_'.join(f"{key.split('.')[-1]}-{_format_value(value)}"
                  for key, value in overrides.items()) or 'base'


def format_overrides(overrides: dict) -> str:
  return ' '.join(f'{key}={value}' for key, value in overrides.items())


def check_variants(config, variants: list[dict], fixed_keys: set[str]) -> None:
  """Every override names an existing key with a value of its type, and names are distinct."""
  for overrides in variants:
    swept_and_fixed = sorted(set(overrides) & fixed_keys)
    if swept_and_fixed:
      raise UserError(f'--config.{swept_and_fixed[0]} is set by the sweep itself; drop that option')
    try:
      config_lib.override(config.copy_and_resolve_references(), overrides)
    except (KeyError, TypeError, ValueError) as e:  # no such key, or a value of the wrong type
      raise UserError(f"sweep variant {format_overrides(overrides)}: {e.args[0]}; fix the config "
                      "file's SWEEPS entry") from None
  names = [variant_name(v) for v in variants]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise UserError(f"two sweep variants share the name '{repeated[0]}'; make their overrides differ")


def read_marker(workdir: str) -> dict:
  path = os.path.join(workdir, MARKER)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise UserError(f'{path} is damaged ({reason(e)}); delete it, and the sweep runs (or '
                    'resumes) that variant again') from None


def write_marker(workdir: str, marker: dict) -> None:
  write_atomically(os.path.join(workdir, MARKER), json.dumps(marker, indent=2))


def total_steps(workdir: str, train_records: list[dict]) -> int | None:
  """The step a run ends at: its config.json's length of training, with the steps per epoch
  that its train records give (step / epoch), as the run itself counted them."""
  if not train_records or not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return None
  first = train_records[0]
  return config_lib.total_steps(read_run_config(workdir), round(first['step'] / first['epoch']))


def run_finished(workdir: str) -> bool:
  """The run reached its last step: its final eval and checkpoint are at that step."""
  records = read_metrics(workdir)
  evals = [r for r in records if r['split'] == 'eval']
  last = total_steps(workdir, [r for r in records if r['split'] == 'train'])
  return bool(evals) and last is not None and evals[-1]['step'] == last == (
      max(saved_steps(workdir), default=None))


def is_finished(workdir: str, command: list[str]) -> bool:
  return read_marker(workdir).get('command') == command and run_finished(workdir)


def check_command(workdir: str, command: list[str]) -> dict:
  """WORKDIR's marker, if it is one of this command's (or there is none)."""
  previous = read_marker(workdir)
  if previous and previous['command'] != command:
    raise UserError(f'{workdir} holds a run of another command ({" ".join(previous["command"])}); '
                    'pass another --workdir or delete that directory')
  return previous


def run_variant(command: list[str], workdir: str, task_args: list[str] = (),
                call=subprocess.call) -> dict:
  """Runs (or resumes) one variant; returns its marker, also written to WORKDIR/sweep.json.
  TASK_ARGS follow the command (a job's distributed options); CALL runs it."""
  previous = check_command(workdir, command)
  os.makedirs(workdir, exist_ok=True)
  env = {'TF_CPP_MIN_LOG_LEVEL': '2', **os.environ}
  start = time.perf_counter()
  with open(os.path.join(workdir, 'sweep.log'), 'w') as log:
    returncode = call([sys.executable, *command, *task_args], stdout=log,
                      stderr=subprocess.STDOUT, env=env)
  with open(os.path.join(workdir, 'sweep.log')) as log:
    output = log.read()
  if returncode:
    status = f'failed: {launch.closing_line(output)}'
  else:  # a signal (SIGTERM, Ctrl-C) stops a run early with a checkpoint and exit status 0
    status = 'ok' if run_finished(workdir) else f'stopped: {launch.closing_line(output)}'
  marker = {'command': command, 'status': status,  # a resumed run adds the earlier attempts' time
            'wall_s': previous.get('wall_s', 0.0) + time.perf_counter() - start}
  write_marker(workdir, marker)
  return marker


class VariantJob(launch.TrainingJob):
  """A variant as a submitit job: its first task runs it as run_variant does (sweep.log,
  sweep.json), the others their share of a multi-process run."""

  def __init__(self, command: list[str], workdir: str, port: int | None):
    super().__init__(command[2:], port)  # command is ['-m', 'jaxcnn.main', *ARGS]
    self.command, self.workdir = command, workdir

  def train(self, task_args: list[str], rank: int):
    if rank:
      return super().train(task_args, rank)
    return run_variant(self.command, self.workdir, task_args, call=self.call)


def steps_to_error(train_records: list[dict], target: float) -> int | None:
  return next((r['step'] for r in train_records if 1 - r['top1'] <= target), None)


def result_row(name: str, overrides: dict, workdir: str, target: float | None,
               status: str | None = None) -> dict:
  """The variant's row; STATUS, if given, instead of its marker's (a job in flight)."""
  records = read_metrics(workdir)
  train = [r for r in records if r['split'] == 'train']
  evals = [r for r in records if r['split'] == 'eval']
  marker = read_marker(workdir)
  row = {'variant': name, 'overrides': format_overrides(overrides),
         'status': status or marker.get('status', 'not run'),
         'steps': evals[-1]['step'] if evals else None,
         'train_loss': train[-1]['loss'] if train else None,
         'train_top1': train[-1]['top1'] if train else None}
  # Every eval metric the run reports (top1, top5, and e.g. center_top1 with 10-crop testing).
  for key, value in (evals[-1] if evals else {}).items():
    if key not in ('step', 'split', 'loss', 'num_examples'):
      row[f'test_{key}'] = value
  if target is not None:
    row[f'steps_to_train_error_{target:g}'] = steps_to_error(train, target)
  row['wall_s'] = round(marker['wall_s'], 1) if 'wall_s' in marker else None
  return row


# The columns a variant's seeds are averaged over (the others describe the variant or its runs).
DESCRIPTIVE = ('variant', 'overrides', 'seeds', 'status', 'steps')
SPREAD = '_std'  # a column's spread over seeds: the sample standard deviation
REACHED = '_seeds'  # for steps_to_*: how many seeds reached the target


def aggregate(name: str, overrides: dict, runs: list[dict]) -> dict:
  """A variant's row from its seeds' rows: the mean and sample standard deviation of every
  metric over the seeds that have it; a status naming the first seed that is not ok."""
  not_ok = [r for r in runs if r['status'] != 'ok']
  row = {'variant': name, 'overrides': format_overrides(overrides), 'seeds': len(runs),
         'status': f"{not_ok[0]['variant']}: {not_ok[0]['status']}" if not_ok else 'ok',
         'steps': runs[0]['steps'] if len({r['steps'] for r in runs}) == 1 else None}
  for key in dict.fromkeys(k for r in runs for k in r if k not in DESCRIPTIVE):
    values = [r[key] for r in runs if r.get(key) is not None]
    row[key] = statistics.fmean(values) if values else None
    row[key + SPREAD] = statistics.stdev(values) if len(values) > 1 else None
    if key.startswith('steps_to_'):
      row[key + REACHED] = len(values)
  return row


def _cell(key: str, value) -> str:
  if value is None:
    return '-'
  if 'top' in key:
    return f'{100 * value:.2f}%'
  if key == 'train_loss':
    return f'{value:.4f}'
  if isinstance(value, float) and (key.startswith('steps_to_') or key == 'wall_s'):
    return f'{value:.1f}' if key == 'wall_s' else f'{value:.0f}'
  return str(value)


def _spread_cell(key: str, row: dict) -> str:
  """KEY's cell; with seeds, 'mean ± std' (and for steps_to_*, how many seeds reached it)."""
  cell = _cell(key, row.get(key))
  if row.get(key + SPREAD) is not None:
    cell += f" ± {_cell(key, row[key + SPREAD])}"
  if key + REACHED in row and row[key + REACHED] != row['seeds']:
    cell += f" ({row[key + REACHED]} of {row['seeds']} seeds)"
  return cell


def write_tables(rows: list[dict], directory: str, stem: str = 'results') -> None:
  """STEM.csv with every column, STEM.md with one cell per metric (its spread beside it)."""
  columns = list(dict.fromkeys(key for row in rows for key in row))
  last = [c for c in columns if c.startswith(('steps_to_', 'wall_s'))]  # as in a full row
  columns = [c for c in columns if c not in last] + last
  with open(os.path.join(directory, f'{stem}.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  shown = [c for c in columns if not c.endswith((SPREAD, REACHED))]
  lines = ['| ' + ' | '.join(shown) + ' |', '|' + '---|' * len(shown)]
  lines += ['| ' + ' | '.join(_spread_cell(key, row) for key in shown) + ' |' for row in rows]
  with open(os.path.join(directory, f'{stem}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _band(runs: list[list[dict]], view: str, loss: bool) -> tuple[list, list, list, list]:
  """Steps, mean, lowest and highest of VIEW over the runs, at the steps they all logged."""
  values = [{r['step']: r[view] if loss else 1 - r[view] for r in records if view in r}
            for records in runs]
  steps = sorted(set.intersection(*(set(v) for v in values)))
  columns = [[v[step] for v in values] for step in steps]
  return (steps, [statistics.fmean(c) for c in columns], [min(c) for c in columns],
          [max(c) for c in columns])


def write_plots(curves: dict[str, list[list[dict]]], directory: str, title: str) -> None:
  """One PNG per metric in PLOTS, each overlaying every variant's curve against the step: a
  variant's runs' mean, in a band from their lowest to their highest value."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  for file_name, label, split, key in PLOTS:
    figure, axes = plt.subplots(figsize=(6, 4), dpi=80)
    for color, (name, runs) in enumerate(curves.items()):
      runs = [[r for r in records if r['split'] == split] for records in runs]
      runs = [records for records in runs if records]  # less runs that failed before a record
      if not runs:
        continue
      views = (sorted({k for r in runs[0] for k in r if k.endswith(f'_{key}')})
               if split == 'eval' else [])
      for view, style in zip([key, *views], ['-', '--', ':', '-.']):
        steps, mean, low, high = _band(runs, view, key == 'loss')
        suffix = f" ({view.removesuffix(f'_{key}')})" if view != key else ''
        seeds = f', mean of {len(runs)}' if len(runs) > 1 else ''
        axes.plot(steps, mean, style, color=f'C{color % 10}', label=name + suffix + seeds,
                  marker='.' if len(steps) < 30 else None)
        if len(runs) > 1:
          axes.fill_between(steps, low, high, color=f'C{color % 10}', alpha=0.2, linewidth=0)
    axes.set(xlabel='step', ylabel=label, title=f'{title}: {label}')
    if key == 'loss':
      axes.set_yscale('log')
    axes.grid(alpha=0.3)
    if axes.lines:  # not when every run is still queued
      axes.legend(fontsize='x-small', framealpha=0.8)
    figure.tight_layout()
    figure.savefig(os.path.join(directory, f'{file_name}.png'), metadata={'Software': None})
    plt.close(figure)


def load_sweep(config_argument: str, sweep_name: str) -> list[dict]:
  path = config_argument.partition(':')[0]
  sweeps = getattr(config_lib.load_module(path), 'SWEEPS', {})
  if sweep_name not in sweeps:
    raise UserError(f"{path} has no sweep '{sweep_name}'; its SWEEPS are: "
                    f"{', '.join(sweeps) or 'none'}")
  return expand(sweeps[sweep_name])


def run_sweep(config, config_argument: str, sweep_name: str, workdir: str, fixed: list[str],
              parallel: int, results_dir: str, target: float | None,
              resources: launch.Resources = launch.Resources('local'),
              wait: bool = True, seeds: int = 1) -> list[dict]:
  """Runs the variants (each SEEDS times) not finished yet (or submits them as jobs, and with
  `wait` waits for them), then writes the tables and plots; returns one row per run."""
  if parallel < 1:
    raise UserError(f'--parallel={parallel}: give at least 1')
  if resources.launcher != 'local':
    launch.check(resources)
  variants = load_sweep(config_argument, sweep_name)
  runs = with_seeds(variants, seeds)
  check_variants(config, runs, {a.split('=')[0][len('--config.'):] for a in fixed})
  jobs = []
  for overrides in runs:
    name = variant_name(overrides)
    command = ['-m', 'jaxcnn.main', '--config', config_argument,
               '--workdir', os.path.join(workdir, name), *fixed,
               *(f'--config.{key}={value}' for key, value in overrides.items())]
    jobs.append((name, overrides, command))

  def run(job):
    name, _, command = job
    variant_dir = os.path.join(workdir, name)
    if is_finished(variant_dir, command):
      print(f'{name}: finished earlier, skipped', flush=True)
      return
    print(f'{name}: training (log in {os.path.join(variant_dir, "sweep.log")})', flush=True)
    marker = run_variant(command, variant_dir)
    print(f"{name}: {marker['status']} after {marker['wall_s']:.0f} s", flush=True)

  with RunLock(workdir):  # one sweep at a time in a directory; each run locks its own
    if resources.launcher == 'local':
      with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(run, jobs))
      submitted = {}
    else:
      submitted = submit(jobs, workdir, resources, wait)
    os.makedirs(results_dir, exist_ok=True)
    rows = []
    for name, overrides, _ in jobs:
      job = launch.in_flight(os.path.join(workdir, name), submitted)
      rows.append(result_row(name, overrides, os.path.join(workdir, name), target,
                             f'queued or running: job {job.job_id}' if job else None))
    # Runs are in variant order, each variant's seeds together.
    by_variant = [(overrides, jobs[i * seeds:(i + 1) * seeds], rows[i * seeds:(i + 1) * seeds])
                  for i, overrides in enumerate(variants)]
    if seeds == 1:
      write_tables(rows, results_dir)
    else:
      write_tables(rows, results_dir, 'runs')
      write_tables([aggregate(variant_name(overrides), overrides, variant_rows)
                    for overrides, _, variant_rows in by_variant], results_dir)
    curves = {variant_name(overrides): [read_metrics(os.path.join(workdir, name))
                                        for name, _, _ in variant_jobs]
              for overrides, variant_jobs, _ in by_variant}
    write_plots(curves, results_dir, sweep_name)
  return rows


def submit(jobs: list, workdir: str, resources: launch.Resources, wait: bool) -> dict:
  """Submits each variant that is neither finished nor in flight as a job; with `wait` waits
  for them. Returns the jobs submitted, by id."""
  pending = []
  for name, _, command in jobs:
    variant_dir = os.path.join(workdir, name)
    if is_finished(variant_dir, command):
      print(f'{name}: finished earlier, skipped', flush=True)
    elif job := launch.in_flight(variant_dir):
      print(f'{name}: still queued or running as job {job.job_id}, not submitted again', flush=True)
    else:
      check_command(variant_dir, command)  # every variant, before any job is submitted
      pending.append((name, command, variant_dir))
  submitted = []
  for name, command, variant_dir in pending:
    os.makedirs(variant_dir, exist_ok=True)
    executor = launch.executor(resources, os.path.join(variant_dir, launch.JOBS_DIR), name)
    job = executor.submit(VariantJob(command, variant_dir, launch.coordinator_port(resources)))
    launch.record(job, variant_dir)
    submitted.append((name, command, variant_dir, job))
    print(f'{name}: submitted as job {job.job_id} (logs in {job.paths.folder})', flush=True)
  if wait:
    for name, command, variant_dir, job in submitted:
      error = job.exception()  # waits; a job that died outside the run (killed, timed out)
      if error is not None:
        marker = {**read_marker(variant_dir), 'command': command,
                  'status': f'failed: job {job.job_id}: {launch.closing_line(str(error))}'}
        write_marker(variant_dir, marker)
      print(f"{name}: {read_marker(variant_dir).get('status', 'not run')} (job {job.job_id})",
            flush=True)
  return {job.job_id: job for *_, job in submitted}


def define_flags() -> None:
  cli.define_config_flag()
  flags.DEFINE_string('sweep', None, "Name of a sweep in the config file's SWEEPS dict.")
  flags.DEFINE_string('workdir', None, 'Where the variants train (default: '
                      'runs/<NAME>-<PRESET>-<SWEEP>).')
  flags.DEFINE_integer('seeds', 1, 'Trains every variant with seeds 0 to SEEDS-1; the results '
                       'give the mean and spread over seeds.')
  flags.DEFINE_integer('parallel', 1, 'How many runs train at once.')
  flags.DEFINE_string('results_dir', None, 'Where results and plots go (default: --workdir).')
  flags.DEFINE_float('target_train_error', None,
                     'Adds a column: the first step whose logged train error is at most this.')
  launch.define_flags(('local', *launch.SUBMITIT_LAUNCHERS), default='local')
  flags.mark_flags_as_required(['sweep'])


def main(arguments: list[str]) -> int:
  del arguments  # cli.run refuses any
  options = flags.FLAGS
  config_argument = cli.config_argument()
  workdir = (options.workdir if options.workdir is not None
             else f'{cli.default_workdir(config_argument)}-{options.sweep}')
  results_dir = options.results_dir or workdir
  fixed = [a for a in sys.argv[1:] if a.startswith('--config.')]
  given = [f'--{name}' for name in launch.JOB_FLAGS if options[name].present]
  if options.launcher == 'local' and given:
    raise UserError(f'{given[0]} is for jobs; add --launcher=slurm or --launcher=submitit_local')
  if options.launcher != 'local' and options['parallel'].present:
    raise UserError('--parallel is for --launcher=local; jobs run as many at once as the '
                    'scheduler allows')
  rows = run_sweep(options.config, config_argument, options.sweep, workdir, fixed,
                   options.parallel, results_dir, options.target_train_error,
                   launch.resources_from_flags(), options.wait, options.seeds)
  ok = sum(row['status'] == 'ok' for row in rows)
  queued = sum(row['status'].startswith('queued') for row in rows)
  runs = 'variants' if options.seeds == 1 else 'runs'
  print(f"{ok} of {len(rows)} {runs} ok{f', {queued} queued or running' if queued else ''}; "
        f"results in {os.path.join(results_dir, 'results.md')}")
  return 1 if ok + queued < len(rows) else 0


if __name__ == '__main__':
  cli.run(main, define_flags)
