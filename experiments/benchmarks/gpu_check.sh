#!/usr/bin/env bash
# jaxcnn on a machine with an NVIDIA GPU and no internet: devices, the quick start, the
# benchmarks and AlexNet's towers, in a few minutes, figures in one JSON file. The logic is
# gpu_check.py's (its docstring says what it runs); this only finds the repository.
#   experiments/benchmarks/gpu_check.sh [--out FILE] [--cpu-smoke]
# PYTHON picks the interpreter (default: python, e.g. an activated venv's).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"  # a clone runs without `pip install -e`
exec "${PYTHON:-python}" "$root/experiments/benchmarks/gpu_check.py" "$@"
