#!/usr/bin/env bash
# Builds kiln and its tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (g++, into build-asan/) and runs every ctest entry under them.
#   tools/sanitize.sh                 install packages, build, prepare data, run all tests
#   tools/sanitize.sh -L e2e          extra arguments go to ctest
# JIT-compiled kernels are not instrumented (LLVM writes them); everything
# around them is: the compiler, the runtime, the trainer, the data loaders.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_BUILD_DIR=${KILN_BUILD_DIR:-build-asan}
KILN_CMAKE_ARGS="-DKILN_SANITIZE=ON ${KILN_CMAKE_ARGS:-}" tools/setup.sh

if [ -d ../shared/data ]; then "$KILN_BUILD_DIR/tools/kiln" data prepare --from ../shared/data
else "$KILN_BUILD_DIR/tools/kiln" data prepare; fi

# Any report fails the test that caused it (abort, non-zero exit).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$KILN_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" --timeout 1800 "$@"
