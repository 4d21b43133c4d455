#!/usr/bin/env bash
# Fuzzes kiln's parsers with AFL++ (ASan + UBSan) and fails on any finding.
#
#   tools/fuzz.sh                          what CI runs: the graph frontend and the
#                                          ONNX importer for KILN_FUZZ_EXECS executions,
#                                          then a short round of every other target
#   tools/fuzz.sh --all [--execs N]        every target, N executions each
#   tools/fuzz.sh --target NAME [--execs N]   one target (repeat --target for more)
#   tools/fuzz.sh --list                   the targets
#
#   KILN_FUZZ_EXECS=N          executions per full round (default 100000; --execs wins)
#   KILN_FUZZ_SECONDS=S        a full round also stops after S seconds, and then
#                              fails for running short (default 600, a safety net)
#   KILN_FUZZ_SHORT_EXECS=N    executions of a short round (default 30000), which
#   KILN_FUZZ_SHORT_SECONDS=S  stops after S seconds without failing (default 15)
#
# Targets (tests/fuzz/fuzz_<name>.cpp), the parser each feeds and its seeds:
#   graph        graph JSON frontend     graphs/*.json, tests/fixtures/bad_graphs/*
#   train_spec   training spec           graphs/experiments/*.json, tests/fuzz/seeds/train_spec/*
#   update_rule  update rule             graphs/optimizers/*.json, tests/fuzz/seeds/update_rule/*
#   checkpoint   checkpoint reader       written by build-fuzz/tests/fuzz/fuzz_make_seeds
#   npy          .npy reader               (the product's own encoders, at fuzz time)
#   idx          IDX reader, plain and gzip
#   cifar        CIFAR-10 batch reader
#   image_tree   image-tree importer (tar(.gz) of class folders of JPEG/PNG)
#   tar_extract  tar member extraction
#   onnx         ONNX importer           model.onnx of 60 ONNX backend tests (libonnx-testdata)
# Exit 1 when afl-fuzz saved a crash or a hang (over AFL_HANG_TMOUT ms, 10000 by default): the inputs are printed, with
# the command that replays one (build-fuzz/tests/fuzz/fuzz_<name> FILE).
#
# Every target is built by one configure of build-fuzz/, sharing two
# instrumented static libraries (tests/fuzz/CMakeLists.txt). The compiler is
# afl-clang-fast++ (Debian's afl++ is built against clang 14): afl-g++-fast's
# GCC plugin does not load with Debian 12's g++ 12.2.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(graph onnx train_spec update_rule checkpoint npy idx cifar image_tree tar_extract)
FULL_IN_CI=(graph onnx)  # the parsers of files users bring: a full round in CI
EXECS=${KILN_FUZZ_EXECS:-100000}
SECONDS_CAP=${KILN_FUZZ_SECONDS:-600}
SHORT_EXECS=${KILN_FUZZ_SHORT_EXECS:-30000}
SHORT_SECONDS=${KILN_FUZZ_SHORT_SECONDS:-15}
BUILD=build-fuzz
FUZZ_BIN=$BUILD/tests/fuzz

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

mode=ci
selected=()
while (($#)); do
  case $1 in
    --all) mode=all ;;
    --target) [ $# -ge 2 ] || { echo "fuzz: --target needs a name"; exit 2; }
              mode=target; selected+=("$2"); shift ;;
    --execs) [ $# -ge 2 ] || { echo "fuzz: --execs needs a number"; exit 2; }
             EXECS=$2; shift ;;
    --list) printf '%s\n' "${ALL_TARGETS[@]}"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fuzz: unknown argument '$1'"; usage; exit 2 ;;
  esac
  shift
done
for n in "$EXECS" "$SECONDS_CAP" "$SHORT_EXECS" "$SHORT_SECONDS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: executions and seconds are positive integers, got '$n'"; exit 2; }
done
for name in "${selected[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $name "* ]] || { echo "fuzz: unknown target '$name' (targets: ${ALL_TARGETS[*]})"; exit 2; }
done
if [ ! -d /usr/include/onnx ]; then  # built without the importer (no libonnx-dev)
  ALL_TARGETS=("${ALL_TARGETS[@]/onnx}")
  echo "fuzz: libonnx-dev is not installed: the onnx target is skipped"
fi
case $mode in
  ci|all) targets=(${ALL_TARGETS[@]}) ;;
  target) targets=("${selected[@]}") ;;
esac

for tool in afl-clang-fast++ afl-fuzz; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found; run tools/setup.sh --deps (package afl++)"; exit 2; }
done

total_start=$(date +%s)
export AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=afl-clang-fast CXX=afl-clang-fast++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_FUZZ=ON >/dev/null
fi
build_start=$(date +%s)
cmake --build "$BUILD" --target fuzz_make_seeds "${targets[@]/#/fuzz_}"
echo "fuzz: build took $(( $(date +%s) - build_start )) s"

# The binary formats' seeds come from the product's encoders (tests/fuzz/make_seeds.cpp).
generated="$BUILD/seeds-generated"
rm -rf "$generated"
ASAN_OPTIONS=detect_leaks=0 "$FUZZ_BIN/fuzz_make_seeds" "$generated"
# The importer's seeds: every 15th model of the ONNX backend tests, named by test.
onnx_data=/usr/share/libonnx-testdata/data
mkdir -p "$generated/onnx"
if [ -d "$onnx_data" ]; then
  i=0
  for t in "$onnx_data"/node/test_* "$onnx_data"/pytorch-converted/test_* "$onnx_data"/pytorch-operator/test_*; do
    (( i++ % 15 == 0 )) && cp "$t/model.onnx" "$generated/onnx/$(basename "$t").onnx"
  done
fi

# Scratch files (tar_extract writes each input and its members) go to memory
# when /dev/shm is there: the extractor fsyncs every file it writes.
scratch_root=$BUILD
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch_root=/dev/shm
scratch=$(mktemp -d "$scratch_root/kiln-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

seed_sources() {
  case $1 in
    graph) echo graphs/*.json tests/fixtures/bad_graphs/* ;;
    train_spec) echo graphs/experiments/*.json tests/fuzz/seeds/train_spec/* ;;
    update_rule) echo graphs/optimizers/*.json tests/fuzz/seeds/update_rule/* ;;
    *) echo "$generated/$1"/* ;;
  esac
}
dictionaries() {
  case $1 in
    graph) echo "-x tests/fuzz/graph.dict" ;;
    train_spec) echo "-x tests/fuzz/train_spec.dict" ;;
    update_rule) echo "-x tests/fuzz/graph.dict -x tests/fuzz/update_rule.dict" ;;
    checkpoint|npy|idx) echo "-x tests/fuzz/$1.dict" ;;
    image_tree|tar_extract) echo "-x tests/fuzz/archive.dict" ;;
    onnx) echo "-x tests/fuzz/onnx.dict" ;;
    cifar) echo "" ;;  # no magic: records of a label byte and pixels
  esac
}

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
# A hang is an input that runs over 10 s (afl-fuzz's default is 1 s). The
# largest work a small input may ask for is bounded (the ONNX importer's values
# computed at import: about 3 s under ASan here), and a busy 2-core machine
# must not turn that into a finding; a loop that never ends is still caught.
export AFL_HANG_TMOUT=${AFL_HANG_TMOUT:-10000}
# An allocation over 2 GiB from an input under 1 MiB (afl-fuzz's largest) is a
# finding: a header trusted before it was checked. (The fork server's children
# have no RSS-watching thread, so this limit is what keeps them from the
# machine's memory.)
export ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0:max_allocation_size_mb=2048
export TMPDIR=$scratch

status=0
summary=()
# fuzz_target NAME EXECS SECONDS SHORT: one round, until EXECS executions or
# SECONDS, whichever comes first; running out of time fails a full round, not
# a short one (SHORT=1: CI's smoke round of the targets other than graph).
fuzz_target() {
  local name=$1 execs=$2 seconds=$3 short=$4
  local bin="$FUZZ_BIN/fuzz_$name" seeds="$BUILD/seeds/$name" findings="$BUILD/findings/$name"
  rm -rf "$seeds" "$findings"
  mkdir -p "$seeds" "$(dirname "$findings")"
  # shellcheck disable=SC2046 # the globs are meant to split
  cp $(seed_sources "$name") "$seeds"/

  # The seeds must not crash before fuzzing starts; say how many parse.
  local replay
  replay=$("$bin" "$seeds"/* 2>&1) || { echo "$replay" | tail -20; echo "fuzz: $name: a seed crashes the target"; status=1; return; }
  echo "fuzz: $name: $(ls "$seeds" | wc -l) seeds, $(grep -c ': accepted$' <<< "$replay") accepted"

  local start elapsed
  start=$(date +%s)
  # shellcheck disable=SC2046
  afl-fuzz -i "$seeds" -o "$findings" $(dictionaries "$name") -E "$execs" -V "$seconds" -s 1 \
    -- "$bin" > "$BUILD/afl-fuzz-$name.log" 2>&1 || {
    echo "fuzz: $name: afl-fuzz failed:"; tail -30 "$BUILD/afl-fuzz-$name.log"; status=1; return; }
  elapsed=$(( $(date +%s) - start ))

  local stats="$findings/default/fuzzer_stats"
  [ -f "$stats" ] || { echo "fuzz: $name: no $stats"; tail -30 "$BUILD/afl-fuzz-$name.log"; status=1; return; }
  stat_of() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  local done_execs crashes hangs
  done_execs=$(stat_of execs_done)
  crashes=$(stat_of saved_crashes)
  hangs=$(stat_of saved_hangs)
  echo "fuzz: $name: execs_done $done_execs in ${elapsed} s ($(stat_of execs_per_sec) execs/s), corpus $(stat_of corpus_count)," \
       "edges $(stat_of edges_found)/$(stat_of total_edges), saved_crashes $crashes, saved_hangs $hangs"
  summary+=("$(printf '%-12s %9s %6s %9s %7s %13s %8s %6s' "$name" "$done_execs" "$elapsed" "$(stat_of execs_per_sec)" \
               "$(stat_of corpus_count)" "$(stat_of edges_found)/$(stat_of total_edges)" "$crashes" "$hangs")")

  if [ "$short" = 0 ] && [ "${done_execs:-0}" -lt "$execs" ]; then
    echo "fuzz: $name: only $done_execs of $execs executions ran within ${seconds} s"
    status=1
  fi
  local kind f
  for kind in crashes hangs; do
    for f in "$findings/default/$kind"/id:*; do
      [ -e "$f" ] || continue
      status=1
      echo "---- $name $kind: $f"
      head -c 2000 "$f" | cat -v; echo
      echo "---- replay: $bin '$f'"
      ASAN_OPTIONS=${ASAN_OPTIONS/symbolize=0/symbolize=1} timeout 10 "$bin" "$f" 2>&1 | head -40 || true
    done
  done
}

for name in "${targets[@]}"; do
  if [ "$mode" = ci ] && [[ " ${FULL_IN_CI[*]} " != *" $name "* ]]; then
    fuzz_target "$name" "$SHORT_EXECS" "$SHORT_SECONDS" 1
  else
    fuzz_target "$name" "$EXECS" "$SECONDS_CAP" 0
  fi
done

echo "fuzz: target            execs      s   execs/s  corpus         edges  crashes  hangs"
for line in "${summary[@]}"; do echo "fuzz: $line"; done
echo "fuzz: took $(( $(date +%s) - total_start )) s in all"
exit $status
