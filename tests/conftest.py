"""Shared fixtures: config loading, one prepared `digits` data_dir per session, the CLI runner.

Nothing here downloads anything or writes outside pytest's temporary directories: the
digits dataset is built offline from scikit-learn's copy into a session temp dir,
TFDS_DATA_DIR points at a throwaway dir so that even a test that forgot to pass
config.data.data_dir could not touch ~/tensorflow_datasets, and JAXCNN_CACHE_DIR (oneDNN's
build, convolution tuning) at one that the session's processes share.
"""

import atexit
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'

# TFDS reads TFDS_DATA_DIR once, when it is imported: set it before any test imports it.
_FALLBACK_TFDS_DIR = tempfile.mkdtemp(prefix='jaxcnn-tests-tfds-')
atexit.register(shutil.rmtree, _FALLBACK_TFDS_DIR, True)
os.environ['TFDS_DATA_DIR'] = _FALLBACK_TFDS_DIR
if 'JAXCNN_CACHE_DIR' not in os.environ:
  _JAXCNN_CACHE = tempfile.mkdtemp(prefix='jaxcnn-tests-cache-')
  atexit.register(shutil.rmtree, _JAXCNN_CACHE, True)
  os.environ['JAXCNN_CACHE_DIR'] = _JAXCNN_CACHE
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def pytest_configure(config):
  """torchvision (tests/test_convert_torchvision.py) loads triton, whose LLVM crashes the
  process (a segmentation fault) where TensorFlow's was loaded first; loaded first, before any
  test module is collected, both work. Not in xdist's controller, which runs no test (its 5 s
  came before the workers started), nor in the scripts that import this file."""
  if os.environ.get('PYTEST_XDIST_WORKER') or not config.getoption('numprocesses', None):
    try:
      import torchvision.models  # noqa: F401
    except ImportError:
      pass


# XLA's CPU compile of the models' random initializers alone takes ~6 s; the same programs
# recur in several tests, in both xdist workers and in the CLI subprocesses, so one
# compilation cache serves the whole session (the first process to import this file makes
# it, its workers and subprocesses inherit it, and it goes away with the session). A cached
# executable is the one the compiler would have produced: results are unchanged.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _COMPILATION_CACHE = tempfile.mkdtemp(prefix='jaxcnn-tests-xla-cache-')
  atexit.register(shutil.rmtree, _COMPILATION_CACHE, True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _COMPILATION_CACHE
# Every program, not only those that took over a second to compile: a CLI subprocess's
# dozens of small ones take it 2 s more to start (LeNet: 4.9 s instead of 3.0 s).
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')


def load_config_module(name: str):
  """configs/NAME.py imported from its path, as ml_collections' --config flag does."""
  from jaxcnn.config import load_module
  return load_module(str(CONFIGS / f'{name}.py'))


def load_config(name: str, preset: str | None = None):
  """configs/NAME.py:PRESET, with XLA's convolutions: in-process tests check numbers that
  must not depend on this machine's timings (tests/test_tuning.py tunes on purpose)."""
  config = load_config_module(name).get_config(preset)
  config.train.conv_tuning = False
  return config


def param_count(tree) -> int:
  """Number of parameters in a tree of arrays or shapes (e.g. from jax.eval_shape)."""
  import jax
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def preset_model(name: str, preset: str, num_classes: int | None = None):
  """(model, config) of configs/NAME.py:PRESET, for the dataset's classes unless given."""
  from jaxcnn.data.datasets import DATASETS
  from jaxcnn.models import create_model
  config = load_config(name, preset)
  return create_model(config.model, num_classes or DATASETS[config.data.name].num_classes), config


def traced_input_problem(model, size: int, channels: int) -> str | None:
  """None if `model` traces in training (auxiliary heads included) on size x size inputs with
  no empty activation or parameter, else what goes wrong: the check, independent of the
  model's own arithmetic, that its declared `min_input_size()` is right."""
  import jax
  import jax.numpy as jnp

  from jaxcnn.summary import called_jaxprs

  def shapes(jaxpr):
    for eqn in jaxpr.eqns:
      yield from (v.aval.shape for v in eqn.outvars)
      for sub in called_jaxprs(eqn):
        yield from shapes(sub)

  x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
  try:
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(
        v, x, train=True, rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats']))(
            variables, x).jaxpr
  except Exception as e:  # noqa: BLE001  (a layer's shape error, of whatever kind)
    return str(e).splitlines()[0]
  all_shapes = [leaf.shape for leaf in jax.tree.leaves(variables)] + list(shapes(jaxpr))
  return 'an activation is empty' if any(0 in shape for shape in all_shapes) else None


def assert_smallest_input(model, smallest: int, channels: int = 3) -> None:
  """`model` declares `smallest` as its smallest input, and its traced layers agree: at that
  size nothing is empty, and one pixel less empties a map (or fails)."""
  assert model.min_input_size() == smallest
  assert traced_input_problem(model, smallest, channels) is None
  assert smallest == 1 or traced_input_problem(model, smallest - 1, channels) is not None


@pytest.fixture(scope='session')
def once_per_session(tmp_path_factory, worker_id):
  """`once_per_session(name, make)`: make(directory)'s JSON result, computed by the first
  xdist worker that asks and read back by the others, so that a costly subprocess (the
  8-device runs) runs once per test session, not once per worker."""
  base = tmp_path_factory.getbasetemp()
  shared = base if worker_id == 'master' else base.parent  # parent: this session's, all workers'

  def get(name: str, make):
    result = shared / f'{name}.json'
    with open(shared / f'{name}.lock', 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here for the first
      if not result.exists():
        directory = shared / name
        directory.mkdir()
        result.write_text(json.dumps(make(directory)))
    return json.loads(result.read_text())

  return get


# What the `unoptimized` fixture below does, for the processes a test starts
# (cli_env(**UNOPTIMIZED)): every process whose results a test compares gets it, since what
# they compute differs from the optimized programs' by float rounding.
UNOPTIMIZED = {'JAX_DISABLE_MOST_OPTIMIZATIONS': '1'}


@pytest.fixture(scope='module')
def unoptimized():
  """XLA's optimizations off for a module's tests (pytest.mark.usefixtures('unoptimized')):
  their small programs take longer to optimize than to run, and what they compute changes by
  float rounding only (so such a module compares its runs with each other, or within a
  tolerance). The module's own compilations, not the cache's: the option is part of its key."""
  import jax
  previous = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory) -> str:
  """A TFDS data_dir with `digits` prepared as `python -m jaxcnn.data.prepare digits` prepares
  it, arrays included (offline, about a second), shared by the session."""
  from jaxcnn.data.arrays import write_cache
  data_dir = tmp_path_factory.mktemp('tfds')
  write_cache('digits', str(data_dir))
  return str(data_dir)


@pytest.fixture
def digits_config(digits_dir):
  """`digits_config(name, preset, **overrides)`: a config reading the session's digits dir.

  Overrides are 'section.key' -> value, e.g. digits_config('lenet', **{'train.batch_size': 64}).
  """

  def make(name: str = 'lenet', preset: str | None = None, **overrides):
    from jaxcnn.config import override
    config = load_config(name, preset)
    config.data.data_dir = digits_dir
    return override(config, overrides)

  return make


def run_notebook(workdir: str, monkeypatch) -> tuple[list, str]:
  """Executes experiments/notebooks/restore_checkpoint.ipynb against `workdir`, as the CLIs
  run (cli_env); returns its code cells and the text they printed."""
  import nbclient
  import nbformat
  notebook_path = REPO / 'experiments' / 'notebooks' / 'restore_checkpoint.ipynb'
  monkeypatch.setenv('JAXCNN_WORKDIR', workdir)
  for name, value in cli_env().items():
    monkeypatch.setenv(name, value)
  notebook = nbformat.read(notebook_path, as_version=4)
  nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                          resources={'metadata': {'path': str(notebook_path.parent)}}).execute()
  code = [cell for cell in notebook.cells if cell.cell_type == 'code']
  return code, ''.join(output.get('text', '') for cell in code for output in cell.outputs)


def cli_env(**extra: str) -> dict[str, str]:
  env = dict(os.environ, **extra)
  # The tool meets a user's environment: it must quiet TensorFlow's and XLA's logging itself.
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  env['PYTHONUNBUFFERED'] = '1'
  return env


def without_tensorflow(directory: Path) -> dict[str, str]:
  """Environment variables under which `import tensorflow` fails, as on machines without it: a
  `tensorflow` package in `directory`, first on PYTHONPATH, whose import raises ImportError."""
  package = directory / 'tensorflow'
  package.mkdir(parents=True, exist_ok=True)
  (package / '__init__.py').write_text("raise ImportError('no TensorFlow on this machine')\n")
  return {'PYTHONPATH': os.pathsep.join(filter(None, [str(directory), str(REPO),
                                                      os.environ.get('PYTHONPATH')]))}


def finish(processes, timeout=300) -> list[tuple[int, str, str]]:
  """Each process's exit status, stdout and stderr; kills them all if one outlives `timeout`."""
  try:
    outputs = [p.communicate(timeout=timeout) for p in processes]
  finally:
    for p in processes:
      p.kill()
  return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs)]


# What XLA writes when it ends a process whose collective between its CPU devices waited past
# --xla_cpu_collective_call_terminate_timeout_seconds (README, Status and notes).
STUCK_COLLECTIVE = ('to join the rendezvous', 'Termination timeout for')


def finish_retrying_a_hang(start, base: Path, timeout=420) -> tuple[Path, list]:
  """(workdir, finish(start(workdir))) with workdir base/'run'. On the 2 busy cores an XLA:CPU
  collective now and then waits forever (README, Status and notes): processes that outlive
  `timeout`, or that XLA ended as stuck, are started once more, in base/'rerun'."""
  try:
    results = finish(start(base / 'run'), timeout)
    if not any(message in err for _, _, err in results for message in STUCK_COLLECTIVE):
      return base / 'run', results
  except subprocess.TimeoutExpired:
    pass
  return base / 'rerun', finish(start(base / 'rerun'), timeout)


def max_relative_error(a, b) -> float:
  """The largest difference between two sets of named tensors (an .npz file, a dict), relative
  to each tensor's largest magnitude in the second."""
  assert sorted(a.keys()) == sorted(b.keys())
  return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k]))) for k in a.keys())


def cli_command(*args: str) -> list[str]:
  return [sys.executable, '-m', 'jaxcnn.main', *args]


@pytest.fixture
def run_cli():
  """`run_cli(cwd, *args, timeout=..., env=...)` runs `python -m jaxcnn.main ARGS` (with extra
  environment variables `env`) and returns the result."""

  def run(cwd, *args: str, timeout: float = 180, env: dict[str, str] | None = None):
    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)

  return run


# What a run leaves in its workdir, read back independently of jaxcnn's own readers.

def committed_steps(workdir) -> list[int]:
  """Steps of the finished checkpoints (orbax writes into a temporary name, then renames)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if re.fullmatch(r'\d+', name))


def records(workdir, split):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [{k: v for k, v in r.items() if k != 'images_per_sec'} for r in rows
          if r['split'] == split]


def saved_state(workdir, step=None):
  """The state saved at `step` (default: the last), read back with orbax onto this process's
  first device, whatever devices saved it."""
  import jax
  import orbax.checkpoint as ocp
  step = step or committed_steps(workdir)[-1]
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  saved = ocp.StandardCheckpointHandler().metadata(
      Path(workdir, 'checkpoints', str(step), 'state'))
  like = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                      dict(saved))
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('state',)) as m:
    state = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(like))).state
  return step, state


def leaves(tree):
  import jax
  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]
