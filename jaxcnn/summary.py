"""Layer-by-layer summary of a model: output shapes, parameters, MACs, receptive fields.

  python -m jaxcnn.summary --config configs/FAMILY.py[:PRESET] [--json] [--config.KEY=VALUE]
  python -m jaxcnn.summary --table      # the README's model table, from every config preset

The numbers come from the model's own forward pass (evaluation mode, batch 1), traced to a
jaxpr and read op by op, so they cannot drift from the code:
- MACs count multiply-accumulates of convolutions (output elements x in-channels per group x
  kernel area) and dense layers (output elements x contracted size), as REFERENCE.md defines.
- The receptive field r and effective stride j of every activation follow each op: a
  convolution or pooling window k (dilated) with stride s gives r + (k - 1) j and j s; an op
  that merges activations (add, concatenate) takes the largest; anything else keeps them.
  Layers after global pooling report the field of the pooled features.
"""

import dataclasses
import glob
import json
import math
import os

import jax
import jax.numpy as jnp
from absl import flags
from jax.extend import core as jax_core

from jaxcnn import cli
from jaxcnn import config as config_lib
from jaxcnn.data.datasets import dataset_spec
from jaxcnn.models import create_model
from jaxcnn.pretrained import ARCHS


@dataclasses.dataclass(frozen=True)
class Field:
  size: int  # receptive field, in input pixels, along one spatial axis
  stride: int  # distance in input pixels between neighbouring outputs


@dataclasses.dataclass
class Layer:
  path: str
  output_shape: tuple[int, ...]
  params: int = 0
  macs: int = 0
  receptive_field: int = 1
  stride: int = 1


_POOLS = {'reduce_window_max': 'max_pool', 'reduce_window_sum': 'avg_pool',
          'reduce_window': 'pool'}


def _pool_kind(eqn) -> str | None:
  """The row name of a pooling op: a reduce-window with a window over the map, or a jitted
  function named like one (layers.avg_pool, which sums strided slices)."""
  name = eqn.primitive.name
  if name in _POOLS:
    return _POOLS[name] if eqn.params['window_dimensions'][1] > 1 else None
  if name in ('pjit', 'jit') and eqn.params.get('name') in _POOLS.values():
    return eqn.params['name']
  return None


def _conv(eqn, field: Field):
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  out = eqn.outvars[0].aval
  _, rhs_spec, _ = eqn.params['dimension_numbers']
  kernel = [rhs.shape[d] for d in rhs_spec[2:]]
  macs = math.prod(out.shape) * rhs.shape[rhs_spec[1]] * math.prod(kernel)
  dilation = eqn.params['rhs_dilation'][0]
  span = dilation * (kernel[0] - 1) + 1
  stride = eqn.params['window_strides'][0]
  return macs, Field(field.size + (span - 1) * field.stride, field.stride * stride)


def _window(eqn, field: Field) -> Field:
  window, strides = eqn.params['window_dimensions'], eqn.params['window_strides']
  return Field(field.size + (window[1] - 1) * field.stride, field.stride * strides[1])


# Primitives that call a sub-jaxpr on their operands (jit, custom derivatives, remat); other
# ops with a jaxpr parameter (a generic reduce_window's reducer) are single ops.
_CALLS = ('pjit', 'jit', 'closed_call', 'core_call', 'custom_jvp_call', 'custom_vjp_call',
          'custom_vjp_call_jaxpr', 'remat', 'checkpoint')


def called_jaxprs(eqn):
  """The sub-jaxprs that a call-like eqn (jit, custom derivative, remat) runs."""
  if eqn.primitive.name not in _CALLS:
    return
  for value in eqn.params.values():
    if isinstance(value, jax_core.ClosedJaxpr):
      yield value.jaxpr
    elif isinstance(value, jax_core.Jaxpr):
      yield value


def _walk(jaxpr, fields: dict, prefix: str, visit) -> None:
  """Propagates receptive fields through `jaxpr`, calling visit(eqn, path, out_field, macs)."""
  for eqn in jaxpr.eqns:
    path = '/'.join(p for p in (prefix, str(eqn.source_info.name_stack)) if p)
    inputs = [fields.get(v) for v in eqn.invars if isinstance(v, jax_core.Var)]
    known = [f for f in inputs if f is not None]
    subs = list(called_jaxprs(eqn))
    if subs:
      for sub in subs:
        sub_fields = {inner: fields.get(outer) if isinstance(outer, jax_core.Var) else None
                      for inner, outer in zip(sub.invars, eqn.invars)}
        _walk(sub, sub_fields, path, visit)
        for outer, inner in zip(eqn.outvars, sub.outvars):
          fields[outer] = sub_fields.get(inner) if isinstance(inner, jax_core.Var) else None
      if _pool_kind(eqn) and fields.get(eqn.outvars[0]):
        visit(eqn, path, fields[eqn.outvars[0]], 0)
      continue
    if not known:
      continue
    name, macs = eqn.primitive.name, 0
    if name == 'conv_general_dilated':
      macs, field = _conv(eqn, inputs[0])
    elif name == 'dot_general':
      (contracting, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval
      macs = math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs.shape[d] for d in contracting)
      field = max(known, key=lambda f: f.size)
    elif _pool_kind(eqn) and len(eqn.params['window_dimensions']) >= 4:
      field = _window(eqn, known[0])
    elif name == 'slice' and eqn.params.get('strides') and eqn.invars[0].aval.ndim >= 4:
      # From row `start` on: reaches start x stride further into the input (so the sum of a
      # pooling window's slices, layers.avg_pool, spans the window).
      start = eqn.params['start_indices'][1]
      field = Field(known[0].size + start * known[0].stride,
                    known[0].stride * eqn.params['strides'][1])
    else:
      field = Field(max(f.size for f in known), max(f.stride for f in known))
    for v in eqn.outvars:
      fields[v] = field
    visit(eqn, path, field, macs)


def _param_counts(params) -> dict[str, int]:
  """Parameters of each module path (the path of the module that owns them directly)."""
  counts = {}
  for key_path, leaf in jax.tree_util.tree_leaves_with_path(params):
    path = '/'.join(k.key for k in key_path[:-1])
    counts[path] = counts.get(path, 0) + leaf.size
  return counts


def summarize(model, input_shape) -> dict:
  """Per-layer rows and totals for `model` applied to one image of `input_shape` (NHWC)."""
  x = jnp.zeros(input_shape, jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
  jaxpr = closed.jaxpr
  image = jaxpr.invars[-1]
  param_counts = _param_counts(variables['params'])
  modules = {'/'.join(path.split('/')[:i + 1]) for path in param_counts
             for i in range(path.count('/') + 1)}
  layers: dict[str, Layer] = {}

  def module_path(name_stack: str) -> str:
    """The module path in the variables of a name stack, without the root module and the
    scopes of anything but submodules (method names such as a block's `residual`, jit)."""
    path = ''
    for part in name_stack.split('/')[1:]:
      candidate = f'{path}/{part}' if path else part
      if candidate in modules:
        path = candidate
    return path

  def visit(eqn, path, field, macs):
    module = module_path(path)
    name = eqn.primitive.name
    if _pool_kind(eqn) and eqn.invars[0].aval.ndim == 4:
      row = f'{module}/{_pool_kind(eqn)}' if module else _pool_kind(eqn)
      row = f'{row}_{sum(r.startswith(row) for r in layers)}' if row in layers else row
    elif name == 'reduce_sum' and eqn.invars[0].aval.ndim == 4 and {1, 2} <= set(eqn.params['axes']):
      row = f'{module}/global_avg_pool' if module else 'global_avg_pool'
    elif module in param_counts:
      row = module
    else:
      return
    layer = layers.setdefault(row, Layer(row, (), params=param_counts.get(row, 0)))
    layer.output_shape = tuple(eqn.outvars[0].aval.shape)
    layer.macs += macs
    layer.receptive_field, layer.stride = field.size, field.stride

  _walk(jaxpr, {image: Field(1, 1)}, '', visit)
  rows = list(layers.values())
  spatial = [r for r in rows if len(r.output_shape) == 4]
  return {
      'model': type(model).__name__,
      'input_shape': list(input_shape),
      # What a registered model declares; None for any other module.
      'min_input_size': model.min_input_size() if hasattr(model, 'min_input_size') else None,
      'params': sum(param_counts.values()),
      'batch_stats': sum(leaf.size for leaf in jax.tree.leaves(variables.get('batch_stats', {}))),
      'macs': sum(r.macs for r in rows),
      'receptive_field': spatial[-1].receptive_field if spatial else 1,
      'stride': spatial[-1].stride if spatial else 1,
      'layers': [dataclasses.asdict(r) for r in rows],
  }


def summarize_config(config) -> dict:
  spec = dataset_spec(config.data.name)
  model = create_model(config.model, spec.num_classes)
  size = config.data.image_size
  return summarize(model, (1, size, size, spec.channels))


def format_table(summary: dict) -> str:
  header = ('layer', 'output shape', 'params', 'MACs', 'RF', 'stride')
  rows = [(r['path'], 'x'.join(map(str, r['output_shape'][1:])), f"{r['params']:,}",
           f"{r['macs']:,}", str(r['receptive_field']), str(r['stride']))
          for r in summary['layers']]
  widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
  line = lambda row: '  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths)))
  shape = 'x'.join(map(str, summary['input_shape'][1:]))
  stats = summary['batch_stats']
  totals = (f"{summary['model']} at {shape}: {summary['params']:,} trainable parameters"
            f"{f' (and {stats:,} batch-norm statistics)' if stats else ''}, "
            f"{summary['macs'] / 1e9:.3f} GMACs, final receptive field "
            f"{summary['receptive_field']} px with effective stride {summary['stride']}"
            + (f"; smallest input {smallest}x{smallest}" if (smallest := summary['min_input_size'])
               else ''))
  return '\n'.join([line(header), *map(line, rows), '', totals])


# torchvision's published single-crop ImageNet accuracy for the same layout, from the
# registry of the weights that jaxcnn.convert converts.
REFERENCE_ACCURACY = {arch.config: arch.accuracy for arch in ARCHS.values()}


def _gmacs(macs: int) -> str:
  gmacs = macs / 1e9
  return f'{gmacs:.3f}' if gmacs >= 0.01 else f'{gmacs:.2g}'


def model_table(config_dir: str) -> str:
  """The README's model table: every preset of every config file in `config_dir`."""
  lines = ['| config | model | dataset | input | smallest input | params | GMACs | '
           'torchvision top-1 / top-5 |', '|---|---|---|---|---:|---:|---:|---|']
  for path in sorted(glob.glob(os.path.join(config_dir, '*.py'))):
    module = config_lib.load_module(path)
    for preset in module.PRESETS:
      config = module.get_config(preset)
      summary = summarize_config(config)
      key = f'{os.path.basename(path)}:{preset}'
      size = config.data.image_size
      smallest = summary['min_input_size']
      lines.append(f"| `{key}` | {config.model.name} | {config.data.name} | {size}x{size} | "
                   f"{smallest}x{smallest} | {summary['params']:,} | {_gmacs(summary['macs'])} | "
                   f"{REFERENCE_ACCURACY.get(key, '-')} |")
  return '\n'.join(lines)


def define_flags() -> None:
  cli.define_config_flag(required=False)
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of the table.')
  flags.DEFINE_bool('table', False, "Print the README's model table for every config preset.")


def main(arguments: list[str]) -> None:
  del arguments  # cli.run refuses any
  options = flags.FLAGS
  if options.table:
    print(model_table(config_lib.CONFIGS_DIR))
    return
  if options.config is None:
    cli.fail('pass --config configs/FAMILY.py[:PRESET] (or --table)')
  summary = summarize_config(options.config)
  print(json.dumps(summary) if options.json else format_table(summary))


if __name__ == '__main__':
  cli.run(main, define_flags)
