"""The sweep tool: variants from SWEEPS, one run each, the results table and plots, skipping."""

import csv
import os
import subprocess
import sys

import pytest

from conftest import CONFIGS, cli_env, load_config
from jaxcnn import sweep
from jaxcnn.errors import UserError
from jaxcnn.reporting import read_metrics

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
