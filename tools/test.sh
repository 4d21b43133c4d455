#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs kiln's tests.
# CI runs exactly this (through .ci/run). ctest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

tools/setup.sh
BUILD_DIR=${KILN_BUILD_DIR:-build}

if [ -x tools/fuzz.sh ]; then
  echo "== fuzzing the graph frontend"
  tools/fuzz.sh
fi

echo "== setup and build took $(( $(date +%s) - start )) s"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" --timeout 900
