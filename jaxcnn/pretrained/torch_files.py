"""torchvision's weight files read with torch: the one module of jaxcnn that imports torch.

torch and torchvision are the optional `convert` extra (`pip install 'jaxcnn[convert]'`);
training, restoring and every other tool run without them.
"""

import contextlib
import os
import sys
from collections.abc import Mapping

import numpy as np

from jaxcnn.errors import UserError
from jaxcnn.pretrained import Arch

WEIGHTS = 'IMAGENET1K_V1'  # the torchvision weights that the README's accuracies are of


def _torch():
  try:
    import torch
    import torchvision  # noqa: F401  (the weights' registry, and torch's custom ops)
  except ImportError as e:
    raise UserError(f"converting torchvision's weights needs torch and torchvision ({e}): "
                    "pip install 'jaxcnn[convert]'") from None
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
  if not os.path.isfile(path):
    raise UserError(f'--weights {path}: no such file')
  torch = _torch()
  try:
    state_dict = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # noqa: BLE001  (pickle, zip and torch's own errors)
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise UserError(f'--weights {path}: torch cannot read it ({reason})') from None
  return as_numpy(state_dict, path)


def weights_url(arch: Arch) -> str:
  _torch()
  from torchvision.models import get_model_weights
  return get_model_weights(arch.name)[WEIGHTS].url


def published_state_dict(arch: Arch) -> dict[str, np.ndarray]:
  """torchvision's IMAGENET1K_V1 state_dict of `arch`: from torch's cache ($TORCH_HOME), or
  downloaded into it (hash checked)."""
  torch = _torch()
  url = weights_url(arch)
  try:
    # torch reports the download and its progress on stderr: they go to stdout, so that
    # stderr holds errors alone.
    with contextlib.redirect_stderr(sys.stdout):
      state_dict = torch.hub.load_state_dict_from_url(url, map_location='cpu', progress=True,
                                                      check_hash=True, weights_only=True)
  except (OSError, RuntimeError) as e:  # no network (URLError), a full disk, a bad hash
    reason = getattr(e, 'reason', None) or getattr(e, 'strerror', None) or e
    raise UserError(f'cannot download {url} ({reason}); fetch that file by hand on a machine '
                    'with internet and pass it as --weights FILE') from None
  return as_numpy(state_dict, url)
