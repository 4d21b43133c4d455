#!/usr/bin/env bash
# Fuzzes the graph frontend with AFL++ (ASan + UBSan) and fails on any finding.
#   tools/fuzz.sh            build build-fuzz/, fuzz ~100,000 executions
#   KILN_FUZZ_EXECS=N        number of executions (default 100000)
#   KILN_FUZZ_SECONDS=S      also stop after S seconds (default 600, a safety net)
# Seeds: graphs/*.json and tests/fixtures/bad_graphs/*, dictionary tests/fuzz/graph.dict.
# Exit 1 when afl-fuzz saved a crash or a hang (the inputs are printed, and
# build-fuzz/tests/fuzz/fuzz_graph < FILE replays one).
#
# The compiler is afl-clang-fast++ (Debian's afl++ is built against clang 14):
# afl-g++-fast's GCC plugin does not load with Debian 12's g++ 12.2.
set -euo pipefail
cd "$(dirname "$0")/.."

EXECS=${KILN_FUZZ_EXECS:-100000}
SECONDS_CAP=${KILN_FUZZ_SECONDS:-600}
BUILD=build-fuzz
TARGET=$BUILD/tests/fuzz/fuzz_graph
for tool in afl-clang-fast++ afl-fuzz; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found; run tools/setup.sh --deps (package afl++)"; exit 2; }
done

export AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=afl-clang-fast CXX=afl-clang-fast++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_FUZZ=ON >/dev/null
fi
build_start=$(date +%s)
cmake --build "$BUILD" --target fuzz_graph
echo "fuzz: build took $(( $(date +%s) - build_start )) s"

seeds="$BUILD/seeds"
findings="$BUILD/findings"
rm -rf "$seeds" "$findings"
mkdir -p "$seeds"
cp graphs/*.json tests/fixtures/bad_graphs/* "$seeds"/

# The seeds must not crash before fuzzing starts.
for f in "$seeds"/*; do
  "$TARGET" < "$f" || { echo "fuzz: seed $f crashes the target"; exit 1; }
done

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
fuzz_start=$(date +%s)
ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0 afl-fuzz -i "$seeds" -o "$findings" -x tests/fuzz/graph.dict -E "$EXECS" -V "$SECONDS_CAP" -s 1 \
  -- "$TARGET" > "$BUILD/afl-fuzz.log" 2>&1 || {
  echo "fuzz: afl-fuzz failed:"; tail -30 "$BUILD/afl-fuzz.log"; exit 1; }
elapsed=$(( $(date +%s) - fuzz_start ))

stats="$findings/default/fuzzer_stats"
[ -f "$stats" ] || { echo "fuzz: no $stats"; tail -30 "$BUILD/afl-fuzz.log"; exit 1; }
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
execs=$(stat execs_done)
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
echo "fuzz: execs_done $execs in ${elapsed} s ($(stat execs_per_sec) execs/s), corpus $(stat corpus_count)," \
     "edges $(stat edges_found)/$(stat total_edges), saved_crashes $crashes, saved_hangs $hangs"

status=0
if [ "${execs:-0}" -lt "$EXECS" ]; then
  echo "fuzz: only $execs of $EXECS executions ran within ${SECONDS_CAP} s"
  status=1
fi
for kind in crashes hangs; do
  for f in "$findings/default/$kind"/id:*; do
    [ -e "$f" ] || continue
    status=1
    echo "---- $kind: $f"
    head -c 2000 "$f"; echo
    echo "---- replay:"
    "$TARGET" < "$f" 2>&1 | tail -20 || true
  done
done
exit $status
