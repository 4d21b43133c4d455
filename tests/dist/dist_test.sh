#!/usr/bin/env bash
# Data-parallel training over MPI, end to end (ctest runs each mode; README
# "Data-parallel training"). Usage: dist_test.sh KILN MODE [N]
#   bitwise N   mpirun -np N ... --distributed: every rank's params equal after
#               every epoch (kiln compares the ranks' digests itself), equal
#               to the single-process reference of N ranks (--simulate-ranks N),
#               a rerun gives the same bits, and with dropout (no batch norm)
#               every step's loss matches one plain process within 1e-5;
#               with synchronized batch norm within 1e-3 (float sums' order).
#   kill        SIGKILL one rank mid-epoch: mpirun exits non-zero within 30 s
#               naming the rank; the last checkpoint resumes on 2 ranks.
#   stop        SIGSTOP one rank: the others give up within 30 s naming it.
#   mismatch    ranks started with different specs: refused at start-up.
set -uo pipefail
KILN=$1 MODE=$2 N=${3:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-dist-XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
MPIRUN=(timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe --bind-to none)
# Under tools/sanitize.sh: Open MPI's own allocations (its plugins are
# unloaded before LeakSanitizer looks) are not kiln's leaks; every other
# sanitizer check stays on in the ranks, and leak checks in the runs without MPI.
if [ -n "${ASAN_OPTIONS:-}" ]; then MPIRUN=(env "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0" "${MPIRUN[@]}"); fi
export OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*"; exit 1; }

digests() { grep -o 'params digest after epoch [0-9]*: [0-9a-f]*' "$1"; }

# The rows of steps.csv (step,loss) of two runs agree within a relative tolerance.
losses_match() {
  python3 - "$1" "$2" "$3" <<'PY'
import csv, sys
a = list(csv.DictReader(open(sys.argv[1]))); b = list(csv.DictReader(open(sys.argv[2]))); tol = float(sys.argv[3])
assert len(a) == len(b) and len(a) >= 20, f"{len(a)} vs {len(b)} steps"
worst = max(abs(float(x["loss"]) - float(y["loss"])) / abs(float(x["loss"])) for x, y in zip(a, b))
print(f"{len(a)} steps: largest relative loss difference {worst:.2e} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
}

case "$MODE" in
bitwise)
  # Batch norm (per-shard statistics, running statistics averaged) and dropout:
  # 330 samples = 10 full batches and one of 10 per epoch, split unevenly.
  for graph in tests/fixtures/bn_dropout_cnn.json tests/dist/dropout_mlp.json; do
    name=$(basename "$graph" .json)
    args=("$graph" tests/dist/mnist_small.json --subset 330 --test-subset 100 --print-params-digest)
    "${MPIRUN[@]}" -np "$N" "$KILN" train "${args[@]}" --distributed --out "$WORK/$name-mpi" >"$WORK/mpi.log" 2>&1 ||
      { cat "$WORK/mpi.log"; fail "$name: mpirun -np $N failed"; }
    # The rerun reduces after the backward pass instead of during it: the same bits.
    "${MPIRUN[@]}" -np "$N" "$KILN" train "${args[@]}" --distributed --no-overlap --out "$WORK/$name-again" >"$WORK/again.log" 2>&1 ||
      { cat "$WORK/again.log"; fail "$name: the rerun failed"; }
    "$KILN" train "${args[@]}" --simulate-ranks "$N" --out "$WORK/$name-ref" >"$WORK/ref.log" 2>&1 ||
      { cat "$WORK/ref.log"; fail "$name: --simulate-ranks $N failed"; }
    [ "$(digests "$WORK/mpi.log" | wc -l)" -eq 2 ] || { cat "$WORK/mpi.log"; fail "$name: no digest per epoch"; }
    diff <(digests "$WORK/mpi.log") <(digests "$WORK/ref.log") ||
      fail "$name: $N ranks differ from the single-process reference of $N ranks"
    diff <(digests "$WORK/mpi.log") <(digests "$WORK/again.log") || fail "$name: a rerun (--no-overlap) gave other bits"
    echo "$name: $N ranks = the single-process reference, bit for bit, after every epoch; a rerun (--no-overlap) repeats the bits"
  done
  "$KILN" train tests/dist/dropout_mlp.json tests/dist/mnist_small.json --subset 330 --test-subset 100 \
    --out "$WORK/plain" >"$WORK/plain.log" 2>&1 || { cat "$WORK/plain.log"; fail "the plain run failed"; }
  losses_match "$WORK/plain/steps.csv" "$WORK/dropout_mlp-mpi/steps.csv" 1e-5 ||
    fail "$N ranks' losses differ from one process's with the same global batch"
  # Synchronized batch norm: the global batch's statistics, as one process
  # computes them (up to the float sums' order over 25,088 values a channel,
  # about 1e-5, which Adam carries on); reruns repeat the bits.
  args=(tests/dist/sync_bn_cnn.json tests/dist/mnist_small.json --subset 330 --test-subset 100 --print-params-digest)
  "$KILN" train "${args[@]}" --out "$WORK/sync-plain" >"$WORK/sync-plain.log" 2>&1 || { cat "$WORK/sync-plain.log"; fail "sync: the plain run failed"; }
  for run in sync-mpi sync-again; do
    extra=$([ "$run" = sync-again ] && echo --no-overlap)
    "${MPIRUN[@]}" -np "$N" "$KILN" train "${args[@]}" --distributed $extra --out "$WORK/$run" >"$WORK/$run.log" 2>&1 ||
      { cat "$WORK/$run.log"; fail "sync: mpirun -np $N failed"; }
  done
  diff <(digests "$WORK/sync-mpi.log") <(digests "$WORK/sync-again.log") || fail "sync: a rerun gave other bits"
  losses_match "$WORK/sync-plain/steps.csv" "$WORK/sync-mpi/steps.csv" 1e-3 ||
    fail "sync: $N ranks' losses with synchronized batch norm differ from one process's"
  "$KILN" train "${args[@]}" --simulate-ranks 2 --out "$WORK/sync-sim" >"$WORK/sync-sim.log" 2>&1 &&
    fail "sync: --simulate-ranks accepted synchronized batch norm"
  grep -q "cannot simulate" "$WORK/sync-sim.log" || { cat "$WORK/sync-sim.log"; fail "sync: no clear refusal"; }
  ;;
kill|stop)
  args=(graphs/cnn_mnist.json tests/dist/mnist_small.json --test-subset 200 --threads 1)
  start_ns=0
  "${MPIRUN[@]}" -np 3 "$KILN" train "${args[@]}" --subset 16000 --epochs 6 --distributed --comm-timeout 8 --out "$WORK/run" >"$WORK/run.log" 2>&1 &
  launcher=$!
  for _ in $(seq 600); do [ -f "$WORK/run/checkpoint.ckpt" ] && break; sleep 0.1; done
  [ -f "$WORK/run/checkpoint.ckpt" ] || { cat "$WORK/run.log"; fail "no checkpoint after the first epoch"; }
  victim=""
  for pid in $(pgrep -f "kiln train graphs/cnn_mnist.json"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$pid; fi
  done
  [ -n "$victim" ] || fail "rank 1's process not found"
  cp "$WORK/run/checkpoint.ckpt" "$WORK/before.ckpt"
  sleep 0.3  # mid-epoch
  signal=$([ "$MODE" = kill ] && echo KILL || echo STOP)
  kill -s "$signal" "$victim"
  t0=$(date +%s.%N)
  wait "$launcher"; rc=$?
  took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
  kill -KILL "$victim" 2>/dev/null
  echo "SIG$signal to rank 1 (pid $victim): the job ended with status $rc after $took s"
  grep -iE "rank 1|process rank 1" "$WORK/run.log" | head -3
  [ "$rc" -ne 0 ] || fail "the job exited 0"
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 30 else 1)" "$took" || fail "took $took s (limit 30)"
  grep -qiE "rank 1[^0-9]" "$WORK/run.log" || { cat "$WORK/run.log"; fail "no message names rank 1"; }
  # The last checkpoint is whole: it resumes, on another number of ranks.
  "${MPIRUN[@]}" -np 2 "$KILN" train "${args[@]}" --epochs 2 --subset 3200 --distributed \
    --resume "$WORK/run/checkpoint.ckpt" --out "$WORK/resumed" >"$WORK/resume.log" 2>&1 ||
    { cat "$WORK/resume.log"; fail "the last checkpoint does not resume"; }
  grep -q "resuming from" "$WORK/resume.log" || fail "no resume"
  echo "the last checkpoint resumed on 2 ranks: $(grep -c '^Epoch' "$WORK/resume.log") more epoch(s)"
  ;;
mismatch)
  # Ranks given different specs: refused at start-up, naming the rank.
  sed 's/"lr": 0.002/"lr": 0.003/' tests/dist/mnist_small.json >"$WORK/other_spec.json"
  sed -i "s|\"graph\": \"dropout_mlp.json\"|\"graph\": \"$ROOT/tests/dist/dropout_mlp.json\"|" "$WORK/other_spec.json"
  sed -i "s|\"dir\": \"../../data/mnist\"|\"dir\": \"$ROOT/data/mnist\"|" "$WORK/other_spec.json"
  common=(--subset 64 --test-subset 32 --distributed --out "$WORK/mismatch")
  "${MPIRUN[@]}" -np 1 "$KILN" train tests/dist/dropout_mlp.json tests/dist/mnist_small.json "${common[@]}" : \
    -np 1 "$KILN" train tests/dist/dropout_mlp.json "$WORK/other_spec.json" "${common[@]}" >"$WORK/mismatch.log" 2>&1 &&
    { cat "$WORK/mismatch.log"; fail "ranks with different specs trained"; }
  grep -q "rank 1's training spec differs from rank 0's" "$WORK/mismatch.log" || { cat "$WORK/mismatch.log"; fail "no message names rank 1's spec"; }
  grep -m1 "differs from rank 0" "$WORK/mismatch.log"
  [ ! -f "$WORK/mismatch/final.ckpt" ] || fail "a checkpoint was written"
  ;;
*) fail "unknown mode $MODE" ;;
esac
echo PASS
