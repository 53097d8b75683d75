#!/usr/bin/env bash
# install-deps.sh [--bench] [--slurm]: installs what smelt needs to build and test on Debian or
# Ubuntu (apt); with --bench the Python packages the benchmarks and fixture generators compare
# against; with --slurm a Slurm controller, node daemon, clients and munge, which the Slurm tests
# start as a private single-node cluster (tests/slurm/cluster.sh; no service is enabled).
# The Dockerfile runs this same script, so the two stay consistent.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config clang git
  libsqlite3-dev sqlite3 libyaml-dev libarchive-dev zstd
  libopenmpi-dev openmpi-bin libopenblas-dev libpcre2-dev libcjson-dev libssl-dev
  libmicrohttpd-dev libcurl4-openssl-dev
  python3 python3-pip
)
bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    --slurm) PACKAGES+=(slurmctld slurmd slurm-client munge) ;;
    *) echo "usage: install-deps.sh [--bench] [--slurm]" >&2; exit 2 ;;
  esac
done
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
# Headless Chromium renders the HTML report in tests/cli/report.sh (which skips that check without
# it). Debian packages it as chromium; where no such package exists (Ubuntu ships a snap), skip.
if ! command -v chromium > /dev/null 2>&1 && ! command -v chromium-browser > /dev/null 2>&1; then
  if apt-cache show chromium > /dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
  else
    echo "no chromium package here: the report's rendering check will be skipped"
  fi
fi
if [ "$bench" = 1 ]; then
  # Reference implementations for bench/ and tools/: PyTorch (CPU) and transformers.
  python3 -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu || python3 -m pip install --quiet torch
  python3 -m pip install --quiet transformers safetensors numpy tokenizers scikit-learn gguf accelerate jinja2
fi
