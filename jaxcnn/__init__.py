"""jaxcnn: the classic convolutional networks in JAX/Flax, trained as the papers did.

`jaxcnn.restore(workdir)` loads a trained run (jaxcnn/restored.py); it is imported on first
use, so that `import jaxcnn` stays cheap.
"""


def __getattr__(name: str):
  if name == 'restore':
    from jaxcnn.restored import restore
    return restore
  raise AttributeError(f"module 'jaxcnn' has no attribute '{name}'")
