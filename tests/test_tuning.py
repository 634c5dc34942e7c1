"""Convolution tuning: what a run's steps convolve, measured once per machine and cached, and
a tuned run that trains as an untuned one does, to float rounding, compiling its step once."""

import json
import logging

import jax
import numpy as np
import pytest

from jaxcnn import train, tuning
from jaxcnn.models.formulations import DIRECTIONS, FORMULATIONS
from jaxcnn.reporting import read_metrics


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCNN_CACHE_DIR', str(tmp_path / 'cache'))
  return tmp_path / 'cache' / tuning.CACHE_FILE


def lenet_needs(digits_config):
  run = train.setup(digits_config('lenet', **{'train.num_steps': 4}))  # untuned
  batch = {'image': jax.ShapeDtypeStruct((32, 32, 32, 1), np.float32),
           'label': jax.ShapeDtypeStruct((32,), np.int32)}
  return tuning.geometries((run.train_step, run.state, batch))


def test_a_train_step_convolves_two_shapes_in_every_direction(digits_config, cache):
  needs = lenet_needs(digits_config)
  assert sorted(g.kernel_shape for g in needs) == [(5, 5, 1, 6), (5, 5, 6, 16)]
  by_kernel = {g.kernel_shape: directions for g, directions in needs.items()}
  # Once each; nothing takes the gradient of the images, so the first layer has no input
  # gradient to run.
  assert by_kernel[5, 5, 1, 6] == {'forward': 1, 'kernel_grad': 1}
  assert by_kernel[5, 5, 6, 16] == dict.fromkeys(DIRECTIONS, 1)
  assert {g.input_shape[0] for g in needs} == {32}  # the train batch


def test_choices_are_measured_once_then_read_from_the_cache(digits_config, cache, monkeypatch):
  needs = lenet_needs(digits_config)
  lines = []
  choices = tuning.choose(needs, report=lines.append)
  assert len(lines) == 2 and lines[0].startswith('conv tuning: timing 2 convolution shape(s)')
  measured = json.loads(cache.read_text())[tuning._machine_key()]
  for geometry, names in choices.items():
    for direction, name in zip(DIRECTIONS, names):
      if direction not in needs[geometry]:
        assert name == 'xla' and direction not in measured[str(geometry)]
        continue
      times = measured[str(geometry)][direction]
      # Every formulation that offers the direction was timed, and the fastest won.
      assert set(times) == {n for n, f in FORMULATIONS.items() if f.offers(direction, geometry)}
      assert name == min(times, key=times.get) and all(ms > 0 for ms in times.values())

  def measure(*args):
    raise AssertionError('measured again')

  monkeypatch.setattr(tuning, 'measure', measure)
  lines.clear()
  assert tuning.choose(needs, report=lines.append) == choices
  assert lines == []


def test_a_cached_choice_that_no_longer_builds_is_measured_again(digits_config, cache):
  needs = lenet_needs(digits_config)
  first = tuning.choose(needs, report=lambda line: None)
  stale = json.loads(cache.read_text())
  geometry = next(iter(needs))
  entry = stale[tuning._machine_key()][str(geometry)]
  entry['forward'] = {'gone': 0.001, **entry['forward']}  # a formulation this jaxcnn lacks
  cache.write_text(json.dumps(stale))
  lines = []
  choices = tuning.choose(needs, report=lines.append)
  assert lines[0].startswith('conv tuning: timing 1 convolution shape(s)')
  remeasured = json.loads(cache.read_text())[tuning._machine_key()][str(geometry)]
  assert 'gone' not in remeasured['forward']
  assert choices[geometry][0] == min(remeasured['forward'], key=remeasured['forward'].get)
  # The other directions and geometries stood as cached.
  assert remeasured['kernel_grad'] == entry['kernel_grad']
  assert {g: c for g, c in choices.items() if g != geometry} == {
      g: c for g, c in first.items() if g != geometry}


def test_tuned_run_trains_as_the_untuned_one_and_compiles_its_step_once(digits_config, cache,
                                                                           tmp_path):
  overrides = {'train.num_steps': 20, 'train.log_every_steps': 5, 'eval.every_steps': 10,
               'checkpoint.every_steps': 10}
  records = {}
  compiled = []
  handler = logging.Handler()
  handler.emit = lambda record: compiled.append(record.getMessage())
  logger = logging.getLogger('jax._src.interpreters.pxla')
  logger.addHandler(handler)
  try:
    for tuned in (False, True):
      config = digits_config('lenet', **overrides, **{'train.conv_tuning': tuned})
      with jax.log_compiles():
        train.train_and_evaluate(config, str(tmp_path / str(tuned)))
      records[tuned] = read_metrics(str(tmp_path / str(tuned)))
  finally:
    logger.removeHandler(handler)
  assert sum(m.startswith('Compiling jit(train_step') for m in compiled) == 2  # once per run
  assert [r['step'] for r in records[True]] == [r['step'] for r in records[False]]
  for tuned, untuned in zip(records[True], records[False]):
    np.testing.assert_allclose(tuned['loss'], untuned['loss'], rtol=1e-4)
    if tuned['split'] == 'eval':  # the same test images right, but for a borderline one
      assert abs(tuned['top1'] - untuned['top1']) <= 1 / 360
