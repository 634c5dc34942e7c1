"""The sweep tool: variants from SWEEPS, one run each, the results table and plots, skipping."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import CONFIGS, cli_env, load_config
from jaxcnn import sweep
from jaxcnn.errors import UserError
from jaxcnn.reporting import read_metrics
from jaxcnn.rundir import CHECKPOINTS, write_run_config

# A config file whose SWEEPS has two LeNet variants.
TWO_VARIANTS = f"""
from jaxcnn.config import load_module as load_config_module
_LENET = load_config_module({str(CONFIGS / 'lenet.py')!r})
PRESETS = _LENET.PRESETS
get_config = _LENET.get_config
SWEEPS = {{'activation': {{'model.activation': ['relu', 'tanh']}}}}
"""


def run_sweep_cli(cwd, *args):
  return subprocess.run([sys.executable, '-m', 'jaxcnn.sweep', *args], cwd=cwd, env=cli_env(),
                        capture_output=True, text=True, timeout=300)


def test_expand_grid_and_list():
  assert sweep.expand({'a.x': [1, 2], 'a.y': [True, False], 'a.z': (3, 4)}) == [
      {'a.x': 1, 'a.y': True, 'a.z': (3, 4)}, {'a.x': 1, 'a.y': False, 'a.z': (3, 4)},
      {'a.x': 2, 'a.y': True, 'a.z': (3, 4)}, {'a.x': 2, 'a.y': False, 'a.z': (3, 4)}]
  assert sweep.expand([{'m.a': True}, {'m.a': False, 'm.b': [0.5, 0.0]}]) == [
      {'m.a': True}, {'m.a': False, 'm.b': 0.5}, {'m.a': False, 'm.b': 0.0}]
  assert sweep.variant_name({'model.depth': 56, 'train.aux_loss_weights': ()}) == (
      'depth-56_aux_loss_weights-none')


@pytest.fixture
def lenet_config():
  return load_config('lenet')


@pytest.mark.parametrize('overrides, message', [
    ({'model.activaton': 'relu'}, 'activaton'),
    ({'train.batch_size': 'big'}, 'batch_size'),
    ({'train.num_steps': 3}, 'set by the sweep itself'),
])
def test_bad_variants_are_user_errors(lenet_config, overrides, message):
  with pytest.raises(UserError, match=message):
    sweep.check_variants(lenet_config, [overrides], {'train.num_steps'})


def test_two_variant_sweep_then_rerun_skips(tmp_path, digits_dir):
  (tmp_path / 'two.py').write_text(TWO_VARIANTS)
  args = ['--config', 'two.py', '--sweep', 'activation', '--workdir', 'sweep', '--parallel', '2',
          f'--config.data.data_dir={digits_dir}', '--config.train.num_steps=4',
          '--config.train.log_every_steps=2', '--config.eval.every_steps=2',
          '--config.checkpoint.every_steps=4']
  first = run_sweep_cli(tmp_path, *args)
  assert first.returncode == 0, first.stderr
  out = tmp_path / 'sweep'
  with open(out / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['variant'] for r in rows] == ['activation-relu', 'activation-tanh']
  for row in rows:
    records = read_metrics(out / row['variant'])
    evals = [r for r in records if r['split'] == 'eval']
    train = [r for r in records if r['split'] == 'train']
    assert [r['step'] for r in evals] == [2, 4] and [r['step'] for r in train] == [2, 4]
    assert row['status'] == 'ok' and row['steps'] == '4'
    assert float(row['test_top1']) == evals[-1]['top1']
    assert float(row['train_loss']) == train[-1]['loss']
    assert row['overrides'] == f"model.activation={row['variant'].split('-')[1]}"
  table = (out / 'results.md').read_text().splitlines()
  assert len(table) == 4 and table[2].startswith('| activation-relu | model.activation=relu | ok | 4 |')
  import matplotlib.image
  for name in ('train_loss', 'train_error', 'test_loss', 'test_error'):
    image = matplotlib.image.imread(out / f'{name}.png')
    assert image.shape[:2] == (320, 480) and image.std() > 0.05

  results = {p: (out / p).read_bytes() for p in ('results.csv', 'results.md', 'test_error.png')}
  mtimes = {p: os.stat(p).st_mtime_ns for p in out.glob('*/metrics.jsonl')}
  second = run_sweep_cli(tmp_path, *args)
  assert second.returncode == 0, second.stderr
  assert second.stdout.count('finished earlier, skipped') == 2 and 'training' not in second.stdout
  assert {p: os.stat(p).st_mtime_ns for p in out.glob('*/metrics.jsonl')} == mtimes
  assert {p: (out / p).read_bytes() for p in results} == results


def test_failed_variants_are_reported_and_do_not_stop_the_others(tmp_path):
  (tmp_path / 'two.py').write_text(TWO_VARIANTS)
  (tmp_path / 'empty').mkdir()
  result = run_sweep_cli(tmp_path, '--config', 'two.py', '--sweep', 'activation', '--workdir', 'w',
                         '--config.data.name=mnist', f'--config.data.data_dir={tmp_path / "empty"}')
  assert result.returncode == 1
  with open(tmp_path / 'w' / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2
  for row in rows:
    assert row['status'].startswith("failed: error: dataset 'mnist' is not prepared"), row
    assert row['steps'] == ''
  assert '0 of 2 variants ok' in result.stdout


def test_unknown_sweep_names_the_known_ones(tmp_path):
  (tmp_path / 'two.py').write_text(TWO_VARIANTS)
  with pytest.raises(UserError, match="two.py has no sweep 'nope'; its SWEEPS are: activation$"):
    sweep.load_sweep(f"{tmp_path / 'two.py'}:default", 'nope')


def test_a_damaged_config_json_or_sweep_json_is_one_line(tmp_path):
  torn = '{"seed": 0, "model": {"na'
  (tmp_path / 'config.json').write_text(torn)
  with pytest.raises(UserError, match=r'config.json is damaged \(Unterminated string .*\); put '
                                      'back a copy'):
    sweep.total_steps(str(tmp_path), [{'step': 44, 'epoch': 1.0, 'split': 'train'}])
  (tmp_path / 'sweep.json').write_text(torn)
  with pytest.raises(UserError, match=rf'^{tmp_path}/sweep.json is damaged \(Unterminated string '
                                      r'.*\); delete it, and the sweep runs \(or resumes\) that '
                                      'variant again$'):
    sweep.read_marker(str(tmp_path))


def fake_training(lenet_config, calls):
  """Stands in for run_variant: writes the finished run of 20 steps that seed S of activation
  A would give if its metrics were these known numbers, and counts the calls."""
  def run_variant(command, workdir):
    calls.append(workdir)
    options = dict(a.removeprefix('--config.').split('=') for a in command if '=' in a)
    seed, tanh = int(options['seed']), options['model.activation'] == 'tanh'
    train = [(10, 0.5 + 0.1 * seed - 0.1 * tanh), (20, 0.9 + 0.02 * seed - 0.4 * tanh)]
    records = [{'split': 'train', 'step': step, 'epoch': step / 10, 'loss': 1 - top1,
                'top1': top1, 'top5': 1.0} for step, top1 in train]
    records.append({'split': 'eval', 'step': 20, 'loss': 0.5, 'top1': 0.8 + 0.04 * seed,
                    'top5': 1.0, 'num_examples': 360})
    os.makedirs(os.path.join(workdir, CHECKPOINTS, '20'))
    config = lenet_config.copy_and_resolve_references()
    config.train.num_steps = 20
    write_run_config(workdir, config)
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in records)
    marker = {'command': command, 'status': 'ok', 'wall_s': 10.0 * (seed + 1)}
    sweep.write_marker(workdir, marker)
    return marker
  return run_variant


def test_seeds_give_each_variant_mean_and_spread_and_a_rerun_trains_nothing(
    tmp_path, lenet_config, monkeypatch):
  (tmp_path / 'two.py').write_text(TWO_VARIANTS)
  calls = []
  monkeypatch.setattr(sweep, 'run_variant', fake_training(lenet_config, calls))
  out = tmp_path / 'sweep'
  def run():
    return sweep.run_sweep(lenet_config, str(tmp_path / 'two.py'), 'activation', str(out), [],
                           1, str(out), 0.45, seeds=3)

  rows = run()
  assert [os.path.basename(c) for c in calls] == [
      f'activation-{a}_seed-{s}' for a in ('relu', 'tanh') for s in range(3)]
  assert [r['status'] for r in rows] == ['ok'] * 6
  with open(out / 'results.csv') as f:
    relu, tanh = csv.DictReader(f)
  number = lambda row, key: pytest.approx(float(row[key]), abs=1e-9)
  assert (relu['variant'], relu['seeds'], relu['status'], relu['steps']) == (
      'activation-relu', '3', 'ok', '20')
  assert number(relu, 'train_top1') == 0.92 and number(relu, 'train_top1_std') == 0.02
  assert number(relu, 'test_top1') == 0.84 and number(relu, 'test_top1_std') == 0.04
  assert number(relu, 'wall_s') == 20 and number(relu, 'wall_s_std') == 10
  # Train error 0.5, 0.4 and 0.3 at step 10: seed 0 reaches 0.45 at step 20, the others at 10.
  assert number(relu, 'steps_to_train_error_0.45') == 40 / 3
  assert number(relu, 'steps_to_train_error_0.45_std') == pytest.approx(5.7735, abs=1e-4)
  # tanh: only seed 2 reaches it (error 0.4 at step 10); seeds 0 and 1 end at 0.5 and 0.48.
  assert tanh['steps_to_train_error_0.45'] == '10.0' and tanh['steps_to_train_error_0.45_std'] == ''
  assert tanh['steps_to_train_error_0.45_seeds'] == '1'
  table = (out / 'results.md').read_text().splitlines()
  assert table[0] == ('| variant | overrides | seeds | status | steps | train_loss | train_top1 | '
                      'test_top1 | test_top5 | steps_to_train_error_0.45 | wall_s |')
  assert table[2] == ('| activation-relu | model.activation=relu | 3 | ok | 20 | '
                      '0.0800 ± 0.0200 | 92.00% ± 2.00% | 84.00% ± 4.00% | 100.00% ± 0.00% | '
                      '13 ± 6 | 20.0 ± 10.0 |')
  assert '| 10 (1 of 3 seeds) |' in table[3]
  with open(out / 'runs.csv') as f:
    runs = list(csv.DictReader(f))
  assert [r['variant'] for r in runs] == [os.path.basename(c) for c in calls]
  assert [float(r['test_top1']) for r in runs[:3]] == pytest.approx([0.8, 0.84, 0.88])
  for name in ('train_loss', 'train_error', 'test_loss', 'test_error'):
    assert (out / f'{name}.png').exists()

  results = {p: (out / p).read_bytes() for p in ('results.csv', 'results.md', 'runs.csv',
                                                  'train_error.png')}
  assert run() == rows and len(calls) == 6  # every run finished: none trains again
  assert {p: (out / p).read_bytes() for p in results} == results


def test_a_variant_band_is_its_seeds_mean_lowest_and_highest():
  runs = [[{'step': 10, 'top1': 0.5}, {'step': 20, 'top1': 0.9}],
          [{'step': 10, 'top1': 0.7}, {'step': 20, 'top1': 0.8}, {'step': 30, 'top1': 0.9}]]
  steps, mean, low, high = sweep._band(runs, 'top1', loss=False)
  assert steps == [10, 20]  # the steps every seed logged
  assert mean == pytest.approx([0.4, 0.15]) and low == pytest.approx([0.3, 0.1])
  assert high == pytest.approx([0.5, 0.2])


def test_bad_seeds_are_user_errors(lenet_config):
  with pytest.raises(UserError, match='^--seeds=0: give at least 1$'):
    sweep.with_seeds([{}], 0)
  with pytest.raises(UserError, match='^this sweep sets seed itself; drop --seeds$'):
    sweep.with_seeds([{'seed': 0}, {'seed': 1}], 3)
  assert sweep.with_seeds([{'a.b': 1}], 1) == [{'a.b': 1}]
  with pytest.raises(UserError, match='--config.seed is set by the sweep itself'):
    sweep.check_variants(lenet_config, sweep.with_seeds([{}], 2), {'seed'})
