"""torchvision's published weight files, downloaded with the standard library (no torch).

A file goes where torch.hub puts it ($TORCH_HOME/hub/checkpoints, by default
~/.cache/torch/hub/checkpoints), so that torchvision and jaxcnn share one copy, and is
checked as torch.hub checks it: the file name ends in the first hex digits of its SHA-256.
Offline, the download fails at once (no retries), before anything is written, with the URL
to fetch by hand.
"""

import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request

from tqdm import tqdm

from jaxcnn.errors import UserError

TIMEOUT_S = 30  # per network read: a stalled connection fails instead of hanging
_CHUNK = 1 << 20
_HASH_PREFIX = re.compile(r'-([a-f0-9]*)\.')  # torch.hub's: 'resnet18-f37072fd.pth'
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError)


def cache_dir() -> str:
  torch_home = os.environ.get('TORCH_HOME') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.expanduser(os.path.join('~', '.cache')), 'torch')
  return os.path.join(torch_home, 'hub', 'checkpoints')


def cached_file(url: str) -> str:
  """The local path of `url`'s file: the cached copy, or one downloaded into the cache
  (under a temporary name, renamed once complete and checked)."""
  path = os.path.join(cache_dir(), os.path.basename(url))
  if os.path.isfile(path):
    return path
  print(f'Downloading: "{url}" to {path}', flush=True)
  try:
    response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
  except _NETWORK_ERRORS as e:
    raise _download_error(url, e) from None
  with response:
    os.makedirs(cache_dir(), exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=cache_dir(), suffix='.partial')
    try:
      digest = _save(response, os.fdopen(descriptor, 'wb'), url)
      expected = _HASH_PREFIX.search(os.path.basename(url))
      if expected and not digest.startswith(expected.group(1)):
        raise UserError(f'the download of {url} is damaged (its SHA-256 does not start with '
                        f'{expected.group(1)}); run again, or {_BY_HAND}')
      os.replace(partial, path)
    except OSError as e:  # writing the cache: a full disk, no permission
      raise UserError(f'cannot write {path} ({e.strerror or e}); set TORCH_HOME to a writable '
                      'directory with room for the file') from None
    finally:
      if os.path.exists(partial):
        os.remove(partial)
  return path


_BY_HAND = 'fetch that file by hand on a machine with internet and pass it as --weights FILE'


def _download_error(url: str, error: Exception) -> UserError:
  return UserError(f"cannot download {url} ({getattr(error, 'reason', None) or error}); "
                   f'{_BY_HAND}')


def _save(response, out, url: str) -> str:
  """Copies the response into `out` (closed at the end) with a progress bar on stdout;
  returns the SHA-256 of what was copied."""
  digest = hashlib.sha256()
  size = int(response.headers.get('Content-Length') or 0) or None
  with out, tqdm(total=size, unit='B', unit_scale=True, file=sys.stdout) as progress:
    while True:
      try:
        chunk = response.read(_CHUNK)
      except _NETWORK_ERRORS as e:  # the connection broke off mid-file
        raise _download_error(url, e) from None
      if not chunk:
        return digest.hexdigest()
      out.write(chunk)
      digest.update(chunk)
      progress.update(len(chunk))
