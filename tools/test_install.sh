#!/usr/bin/env bash
# Installs a built kiln into a temporary prefix, then configures, builds and
# runs tests/install/consumer against it (find_package(kiln), kiln::compiler):
# it must print the CNN's parameter count, 56394.
#   tools/test_install.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=$(realpath "${1:-build}")
[ -f "$BUILD_DIR/CMakeCache.txt" ] || { echo "test_install: $BUILD_DIR is not a configured build"; exit 2; }
generator=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt")
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs a step quietly; on failure shows what it printed.
step() { "$@" > "$work/step.log" 2>&1 || { echo "test_install: failed: $*"; cat "$work/step.log"; exit 1; }; }
step cmake --install "$BUILD_DIR" --prefix "$work/prefix"
step cmake -S tests/install/consumer -B "$work/consumer" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix"
step cmake --build "$work/consumer"
got=$("$work/consumer/kiln_consumer" graphs/cnn_mnist.json)
if [ "$got" != "56394" ]; then
  echo "test_install: the consumer printed '$got', expected 56394"
  exit 1
fi
echo "test_install: installed kiln found by find_package, linked and ran: cnn_mnist has $got params"
