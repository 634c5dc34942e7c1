"""Runs in a subprocess with 8 CPU devices (the XLA flag must precede importing jax).

  python tests/export_worker.py

Exports the jit-compiled train and eval steps of every model family for cuda and tpu with
jax.export, on this machine without either, and prints one JSON object: per case and step
what the exported module holds. The CPU-sized cases are traced as a tuned CPU run traces
them, with a CPU formulation (jaxcnn/models/formulations.py) for every convolution that
has one, so their modules show whether CPU-only code reaches a GPU or TPU; two of them are
lowered for CPU too, where that code must appear.
"""

import eight_cpu_devices  # noqa: F401  (first: before jax)

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402

import jax  # noqa: E402
from jax import export  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from jaxcnn import config as config_lib  # noqa: E402
from jaxcnn import train, tuning  # noqa: E402
from jaxcnn.data.synthetic import SyntheticData  # noqa: E402
from jaxcnn.models import conv  # noqa: E402
from jaxcnn.models.formulations import DIRECTIONS, FORMULATIONS  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
PLATFORMS = ('cuda', 'tpu')
# One case per registered model, and the batch-norm variants: (config, overrides), at the
# configs' own input sizes (lowering costs the same at any size) and the smallest depths.
CASES = {
    'lenet5': ('lenet.py', {}),
    'lenet5_bn': ('lenet.py:bn', {}),
    'alexnet_towers_10crop': ('alexnet.py', {'mesh.data': 4, 'mesh.model': 2, 'eval.crops': 10}),
    'vgg': ('vgg.py:vgg11', {}),
    'vgg_bn': ('vgg.py:vgg11_bn', {}),
    'nin': ('nin.py', {}),
    'googlenet': ('googlenet.py', {}),
    'googlenet_bn': ('googlenet.py:torchvision', {}),
    'inception_v3': ('inception_v3.py', {}),
    'resnet_bfloat16': ('resnet.py:resnet50', {'train.compute_dtype': 'bfloat16'}),
    'cifar_resnet': ('resnet.py:cifar_resnet20', {}),
    'densenet': ('densenet.py:densenet121', {}),
    'cifar_densenet': ('densenet.py:cifar_densenet_bc100', {'model.depth': 10}),
}
CPU_TUNED = ('lenet5', 'lenet5_bn', 'cifar_resnet', 'cifar_densenet')  # the CPU-sized ones
LOWERED_FOR_CPU = ('lenet5', 'cifar_resnet')
# oneDNN's custom calls, and the name scopes of every formulation but XLA's (models/conv.py).
CPU_ONLY = re.compile(r'@Jaxcnn\w+|\b(?:' + '|'.join(set(FORMULATIONS) - {'xla'})
                      + r')_conv_[a-z_]+')


def cpu_choices(geometries) -> dict:
  """For each direction of each geometry, the first formulation other than XLA's that
  offers it (XLA's where none does)."""
  return {geometry: tuple(next((name for name, formulation in FORMULATIONS.items()
                                if name != 'xla' and formulation.offers(direction, geometry)),
                               'xla') for direction in DIRECTIONS)
          for geometry in geometries}


def abstract_batch(batch: dict, mesh) -> dict:
  sharding = NamedSharding(mesh, P('data'))
  return {key: jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
          for key, value in batch.items()}


def split_over_model(shardings) -> int:
  """How many of `shardings` split an array over the mesh's model axis."""
  return sum(sharding is not None and 'model' in jax.tree.leaves(tuple(sharding.spec))
             for sharding in shardings)


def export_case(name: str) -> dict:
  file, overrides = CASES[name]
  config = config_lib.load(os.path.join(CONFIGS, file))
  config.train.batch_size = config.eval.batch_size = 8
  config.mesh.data = 1
  config.train.conv_tuning = False  # CPU_TUNED cases get every CPU formulation instead
  config = config_lib.override(config, overrides)
  run = train.setup(config, data=SyntheticData(config, 0, 1, like=config.data.name),
                    abstract=True)
  state_shardings = jax.tree.leaves(run.shardings)
  result = {'model': config.model.name,
            'params_split_over_model': split_over_model(jax.tree.leaves(run.shardings.params))}
  for split, step, batches in (('train', run.train_step, run.data.train_batches()),
                               ('eval', run.eval_step, run.data.eval_batches())):
    batch = abstract_batch(next(batches), run.mesh)
    if name in CPU_TUNED:
      choices = cpu_choices(tuning.geometries((step, run.state, batch)))
      step = train.jit_steps(config, run.mesh, run.shardings, choices)[split == 'eval']
    with conv.recording() as geometries:  # export traces the step once
      exported = export.export(step, platforms=PLATFORMS)(run.state, batch)
    text = exported.mlir_module()
    result[split] = {
        'platforms': list(exported.platforms), 'devices': exported.nr_devices,
        'image_shape': list(exported.in_avals[len(state_shardings)].shape),
        'exported_state_split_over_model': split_over_model(
            exported.in_shardings_jax(run.mesh)[:len(state_shardings)]),
        'convolutions': text.count('stablehlo.convolution'),
        'convolutions_traced': sum(sum(counts.values()) for counts in geometries.values()),
        'convolution_dtypes': sorted(set(re.findall(
            r'stablehlo\.convolution.*-> tensor<[\dx]*x(\w+)>', text))),
        'cpu_only': sorted(set(CPU_ONLY.findall(text)))}
    if name in LOWERED_FOR_CPU:
      text = step.lower(run.state, batch).as_text(debug_info=True)
      result[split]['cpu_only_on_cpu'] = sorted(set(CPU_ONLY.findall(text)))
  return result


def main():
  print(json.dumps({name: export_case(name) for name in CASES}))


if __name__ == '__main__':
  main()
