"""Picks, by measurement on this machine, how each convolution of a run is computed.

As cuDNN's autotuner does for PyTorch (`torch.backends.cudnn.benchmark`): for every
convolution geometry that a run's train and eval steps trace, and for each of its three
directions (forward, input gradient, filter gradient), every formulation that offers it
(jaxcnn/models/formulations.py) is compiled and timed on random operands, and the fastest
wins. Choices are cached per (processor, jax version, geometry) in
`cache_dir()/conv_tuning.json`, with the times measured, so a machine tunes a shape once.

Tuning runs where it can pay: on CPU, with one device (a mesh of several devices keeps XLA's
convolutions, which its partitioner splits), when `train.conv_tuning` is on.
"""

import collections
import json
import os
import platform
import tempfile
import time
from collections.abc import Collection

import jax
import numpy as np

from jaxcnn.cache import cache_dir
from jaxcnn.models import conv
from jaxcnn.models.formulations import DIRECTIONS, FORMULATIONS, Geometry

CACHE_FILE = 'conv_tuning.json'
_MIN_SECONDS = 0.02  # each timing repeats a direction until it takes at least this long
_ROUNDS = 3  # the best of these many timings counts


def processor() -> str:
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
    if names:
      return names[0]
  return platform.processor() or platform.machine()


def _machine_key() -> str:
  return (f'{processor()}, {os.cpu_count()} cores; jax {jax.__version__}; formulations '
          f"{', '.join(FORMULATIONS)}")


def _read_cache() -> dict:
  path = cache_dir() / CACHE_FILE
  if not path.exists():
    return {}
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError:  # a file damaged some other way is measured afresh
    return {}


def measured() -> dict[str, dict[str, dict[str, float]]]:
  """This machine's cached timings: str(geometry) -> direction -> formulation -> ms."""
  return _read_cache().get(_machine_key(), {})


def _write_cache(measured: dict[Geometry, dict[str, dict[str, float]]]) -> None:
  """Adds this machine's new measurements to the cache file, atomically. A usable earlier
  measurement of a direction stands, so that concurrent runs end up with the same choices."""
  cache = _read_cache()
  machine = cache.setdefault(_machine_key(), {})
  for geometry, directions in measured.items():
    entry = machine.setdefault(str(geometry), {})
    for direction, times in directions.items():
      if _fastest(entry.get(direction), direction, geometry) is None:
        entry[direction] = times
  with tempfile.NamedTemporaryFile('w', dir=cache_dir(), delete=False, suffix='.tmp') as f:
    json.dump(cache, f, indent=1, sort_keys=True)
  os.replace(f.name, cache_dir() / CACHE_FILE)


def _best_seconds(fns: dict, *operands) -> dict[str, float]:
  """Best wall seconds of one call of each jit-compiled function over a few rounds, the
  functions taking turns within a round so that a change in the machine's load falls on all."""
  calls = {}
  for name, fn in fns.items():
    jax.block_until_ready(fn(*operands))  # compiles
    calls[name] = 1
    while _timed(fn, operands, calls[name]) < _MIN_SECONDS:
      calls[name] *= 2
  best = dict.fromkeys(fns, float('inf'))
  for _ in range(_ROUNDS):
    for name, fn in fns.items():
      best[name] = min(best[name], _timed(fn, operands, calls[name]) / calls[name])
  return best


def _timed(fn, operands, calls: int) -> float:
  start = time.perf_counter()
  for _ in range(calls):
    out = fn(*operands)
  jax.block_until_ready(out)
  return time.perf_counter() - start


def measure(geometry: Geometry, directions=DIRECTIONS) -> dict[str, dict[str, float]]:
  """Milliseconds of each formulation of each of `directions` of `geometry`, on random
  operands."""
  rng = np.random.default_rng(0)
  operand = lambda shape: jax.numpy.asarray(rng.standard_normal(shape), geometry.dtype)
  operands = (operand(geometry.input_shape), operand(geometry.kernel_shape),
              operand(geometry.output_shape))
  times = {}
  for direction in directions:
    fns = {name: jax.jit(lambda x, kernel, out_grad, run=getattr(formulation, direction):
                         run(x, kernel, out_grad, geometry))
           for name, formulation in FORMULATIONS.items() if formulation.offers(direction, geometry)}
    times[direction] = {name: 1000 * seconds
                        for name, seconds in _best_seconds(fns, *operands).items()}
  return times


def _fastest(times: dict[str, float] | None, direction: str, geometry: Geometry) -> str | None:
  """The fastest formulation of a direction's `times`; None if they are missing, or a
  formulation measured then no longer builds here."""
  if not times or any(not (name in FORMULATIONS and FORMULATIONS[name].offers(direction, geometry))
                      for name in times):
    return None
  return min(times, key=times.get)


def choose(needed: dict[Geometry, Collection[str]],
           report=print) -> dict[Geometry, tuple[str, str, str]]:
  """The fastest formulation of each direction that each geometry runs (XLA's for the
  others): from the cache, or measured now and cached."""
  known = measured()
  missing = {geometry: [d for d in directions
                        if _fastest(known.get(str(geometry), {}).get(d), d, geometry) is None]
             for geometry, directions in needed.items()}
  missing = {geometry: directions for geometry, directions in missing.items() if directions}
  if missing:
    report(f'conv tuning: timing {len(missing)} convolution shape(s) on this machine (once; '
           f'cached in {cache_dir() / CACHE_FILE})')
    start = time.perf_counter()
    _write_cache({geometry: measure(geometry, sorted(directions))
                  for geometry, directions in missing.items()})
    report(f'conv tuning: done in {time.perf_counter() - start:.0f} s')
    known = measured()
  return {geometry: tuple(
      _fastest(known[str(geometry)].get(d), d, geometry) if d in directions else 'xla'
      for d in DIRECTIONS) for geometry, directions in needed.items()}


def geometries(*traced) -> dict[Geometry, collections.Counter[str]]:
  """The convolution geometries of functions, each given as (fn, *abstract operands), with
  how many times they run each direction."""
  with conv.recording() as seen:
    for fn, *operands in traced:
      jax.eval_shape(fn, *operands)
  return seen
