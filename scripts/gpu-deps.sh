#!/usr/bin/env bash
# gpu-deps.sh: on a development machine with apt and a network (Debian 12 here), downloads the .deb
# packages of the libraries the engine build links (OpenBLAS, cJSON, PCRE2, OpenSSL) and of pkgconf
# into .gpu-deps/ (ignored by git). scripts/gpu-check.sh unpacks them on a GPU machine that lacks
# these libraries and reaches no network; carry the folder with the run (the device tool: carry [".gpu-deps"]).
# About 18 MB. The binaries need glibc 2.36 or later (Ubuntu 24.04's 2.39 is fine).
set -euo pipefail
cd "$(dirname "$0")/.."
# pkgconf: GPU images often have no pkg-config, which CMake's FindPkgConfig needs
pkgs=(libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0 libcjson1 libcjson-dev
      libpcre2-8-0 libpcre2-dev libssl3 libssl-dev pkgconf pkgconf-bin libpkgconf3)
mkdir -p .gpu-deps
cd .gpu-deps
rm -f ./*.deb
apt-get download "${pkgs[@]}"
echo "gpu-deps: $(ls ./*.deb | wc -l) packages, $(du -sh . | cut -f1) in .gpu-deps/"
