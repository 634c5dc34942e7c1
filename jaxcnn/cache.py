"""Where jaxcnn keeps what it builds and measures once per machine: $JAXCNN_CACHE_DIR, else
$XDG_CACHE_HOME/jaxcnn, else ~/.cache/jaxcnn. Deleting it costs a rebuild and a re-measure."""

import os
import pathlib


def cache_dir() -> pathlib.Path:
  default = pathlib.Path(os.environ.get('XDG_CACHE_HOME', '~/.cache')).expanduser() / 'jaxcnn'
  path = pathlib.Path(os.environ.get('JAXCNN_CACHE_DIR', default)).expanduser()
  path.mkdir(parents=True, exist_ok=True)
  return path
