"""Convert torchvision's pretrained ImageNet weights into a jaxcnn run.

  python -m jaxcnn.convert --arch ARCH [--weights FILE] --workdir DIR

ARCH is a torchvision model name (jaxcnn/pretrained/__init__.py lists them). Without
--weights, torchvision's IMAGENET1K_V1 weights of ARCH are downloaded (into torch's cache,
jaxcnn/pretrained/download.py); FILE is a torchvision state_dict of ARCH
(torch.save(model.state_dict(), FILE)). DIR becomes a run of ARCH's jaxcnn preset that
jaxcnn.restore, jaxcnn.predict and evaluation read, and that training starts from with
--config.init_from=DIR. Reading the file needs the `convert` extra (torch).
"""

import os

from absl import flags

from jaxcnn import cli, pretrained
from jaxcnn.errors import UserError


def define_flags() -> None:
  flags.DEFINE_string('arch', None, f"torchvision's model name: {', '.join(pretrained.ARCHS)}.")
  flags.DEFINE_string('weights', None, "A torchvision state_dict of ARCH (default: download "
                      "torchvision's IMAGENET1K_V1 weights).")
  flags.DEFINE_string('workdir', None, 'The new run directory (must not exist, or be empty).')
  flags.mark_flags_as_required(['arch', 'workdir'])


def main(arguments: list[str]) -> None:
  del arguments  # cli.run refuses any
  options = flags.FLAGS
  arch = pretrained.arch(options.arch)
  if options.weights and not os.path.isfile(options.weights):
    raise UserError(f'--weights {options.weights}: no such file')
  from jaxcnn.pretrained import conversion, download, torch_files  # after the cheap checks
  conversion.check_workdir(options.workdir)
  path = options.weights or download.cached_file(arch.url)
  variables = conversion.convert(arch, torch_files.read_state_dict(path), path)
  conversion.write_run(arch, variables, options.workdir)
  print(f"converted torchvision's {arch.name} ({path}) into {options.workdir}: configs/"
        f'{arch.config} with its normalization, checkpoint at step 0')


if __name__ == '__main__':
  cli.run(main, define_flags)
