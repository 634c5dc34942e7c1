"""`python -m jaxcnn.main` on a disk that fills up while the checkpoint of one step is saved.

  python tests/full_disk_worker.py STEP [jaxcnn.main arguments...]

Every file that orbax writes itself into the checkpoint of STEP fails as on a full disk
(ENOSPC), in orbax's own background threads, as the file writes of a real full disk do; the
rest of the run (other checkpoints, metrics, TensorBoard) writes as usual. A stand-in for a
small filesystem that CI can always run.
"""

import errno
import os
import sys

from etils import epath

from jaxcnn import cli, main

FULL_STEP = int(sys.argv.pop(1))
write_text = epath.Path.write_text


def write_text_on_a_full_disk(path, *args, **kwargs):
  if f'{os.sep}{FULL_STEP}.orbax-checkpoint-tmp' in os.fspath(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
  return write_text(path, *args, **kwargs)


if __name__ == '__main__':
  epath.Path.write_text = write_text_on_a_full_disk
  cli.run(main.main, main.define_flags)
