"""torchvision state_dict files read with torch: the one module of jaxcnn that imports torch.

torch is the optional `convert` extra (`pip install -e '.[convert]'`); training, restoring and
every other tool run without it, and so does everything of jaxcnn.convert up to reading the
file (the checks of its arguments, the download).
"""

from collections.abc import Mapping

import numpy as np

from jaxcnn.errors import UserError


def _torch():
  try:
    import torch
  except ImportError as e:
    raise UserError(f"reading torchvision's weight files needs torch ({e}): "
                    "pip install -e '.[convert]'") from None
  return torch


def as_numpy(state_dict, source: str) -> dict[str, np.ndarray]:
  """A state_dict's tensors as float32 numpy arrays, in its order."""
  torch = _torch()
  if not isinstance(state_dict, Mapping) or not all(
      isinstance(value, torch.Tensor) for value in state_dict.values()):
    raise UserError(f'{source} holds a {type(state_dict).__name__}, not a state_dict (a dict '
                    "of tensors, as torch.save(model.state_dict(), FILE) writes)")
  return {key: value.detach().cpu().float().numpy() for key, value in state_dict.items()}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  torch = _torch()
  try:
    state_dict = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # noqa: BLE001  (pickle, zip and torch's own errors)
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise UserError(f'{path}: torch cannot read it ({reason})') from None
  return as_numpy(state_dict, path)
