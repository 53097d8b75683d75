#!/usr/bin/env bash
# quickstart.sh: installs the dependencies, builds smelt, and runs recipes/quickstart.yaml
# into ./smelt-store, then prints the run's report. Run it again: every stage is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
build/smelt run recipes/quickstart.yaml
build/smelt report latest
