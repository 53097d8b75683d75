#!/usr/bin/env bash
# llmcompressor_setup.sh [VENV]: installs llmcompressor (PyPI) for tools/llmcompressor_compare.py into a
# virtual environment (default ./.venv-llmcompressor) that sees the system's packages. llmcompressor pins
# torch and transformers below the versions smelt's other tools use (and a CUDA torch); installing it with
# --no-deps next to its small pure-Python dependencies keeps the system's CPU torch and transformers.
set -euo pipefail
venv=${1:-.venv-llmcompressor}
python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --quiet --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0
"$venv/bin/pip" install --quiet loguru datasets
"$venv/bin/python" -c "import llmcompressor; print('llmcompressor', llmcompressor.__version__, 'in', '$venv')"
