#!/usr/bin/env bash
# install-deps.sh: installs what smelt needs to build and test on Debian or Ubuntu (apt), and
# with --bench the Python packages the benchmarks and fixture generators compare against.
# The Dockerfile runs this same script, so the two stay consistent.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config clang git
  libsqlite3-dev sqlite3 libyaml-dev libarchive-dev zstd
  libopenmpi-dev openmpi-bin libopenblas-dev libpcre2-dev libcjson-dev libssl-dev
  python3 python3-pip
)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all Debian packages present"
fi
if [ "${1:-}" = "--bench" ]; then
  # Reference implementations for bench/ and tools/: PyTorch (CPU) and transformers.
  python3 -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu || python3 -m pip install --quiet torch
  python3 -m pip install --quiet transformers safetensors numpy tokenizers scikit-learn
fi
