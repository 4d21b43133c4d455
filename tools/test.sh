#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs kiln's tests.
# CI runs exactly this (through .ci/run). ctest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

tools/setup.sh
BUILD_DIR=${KILN_BUILD_DIR:-build}

if [ -x tools/fuzz.sh ]; then
  echo "== fuzzing the parsers"
  tools/fuzz.sh
fi

# The end-to-end tests train on real data subsets: prepare them (verified
# copies from ../shared/data in CI; downloads otherwise).
echo "== preparing data"
if [ -d ../shared/data ]; then
  "$BUILD_DIR/tools/kiln" data prepare --from ../shared/data
else
  "$BUILD_DIR/tools/kiln" data prepare
fi

echo "== setup, build, fuzz and data took $(( $(date +%s) - start )) s"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" --timeout 900
