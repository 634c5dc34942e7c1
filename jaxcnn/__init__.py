"""jaxcnn: the classic convolutional networks in JAX/Flax, trained as the papers did.

`jaxcnn.restore(workdir)` loads a trained run (jaxcnn/restored.py); it is imported on first
use, so that `import jaxcnn` stays cheap.
"""

from jaxcnn import cpu_threads

# Before anything starts jax's CPU backend: importing any jaxcnn module runs this first.
cpu_threads.reserve_for_collectives()


def __getattr__(name: str):
  if name == 'restore':
    from jaxcnn.restored import restore
    return restore
  raise AttributeError(f"module 'jaxcnn' has no attribute '{name}'")
