#!/usr/bin/env bash
# The zoo's training runs as CI checks them (ctest labels "zoo"):
#   zoo_test.sh KILN threads  every zoo spec, 20 steps on a subset, with 1 and
#                             with 2 threads: the printed losses must be the same bits
#   zoo_test.sh KILN quick    kiln reproduce --zoo --quick: every model trains,
#                             the report has a row each, char_gpt generates text
# Run from the repository root (the specs read data/ and /usr/share/datasets).
set -euo pipefail
kiln=$1
mode=$2
root=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-zoo-$mode.XXXXXX")
trap 'rm -rf "$work"' EXIT

case "$mode" in
  threads)
    for spec in "$root"/graphs/zoo/train/*.json; do
      model=$(basename "$spec" .json)
      for t in 1 2; do
        "$kiln" train "$spec" --steps 20 --subset 640 --test-subset 64 --threads "$t" --out "$work/$model-$t" \
          > "$work/$model-$t.log" 2>&1 || { cat "$work/$model-$t.log"; exit 1; }
      done
      # steps.csv: step,loss,lr with every loss printed to 9 significant digits
      if ! cmp -s "$work/$model-1/steps.csv" "$work/$model-2/steps.csv"; then
        echo "FAIL $model: the losses of 1 and 2 threads differ:"
        diff "$work/$model-1/steps.csv" "$work/$model-2/steps.csv" | head -10
        exit 1
      fi
      steps=$(($(wc -l < "$work/$model-1/steps.csv") - 1))
      [ "$steps" -eq 20 ] || { echo "FAIL $model: $steps steps logged, want 20"; exit 1; }
      echo "ok $model: 20 identical losses on 1 and 2 threads (last: $(tail -1 "$work/$model-1/steps.csv"))"
    done
    ;;
  quick)
    "$kiln" reproduce --zoo --quick --out "$work/zoo" --threads 2
    for model in $(cd "$root/graphs/zoo/train" && ls *.json | sed 's/\.json$//'); do
      grep -q "^| $model |" "$work/zoo/REPORT.md" || { echo "FAIL: no report row for $model"; exit 1; }
      [ -s "$work/zoo/runs/$model/curves.png" ] || { echo "FAIL: no curves for $model"; exit 1; }
    done
    chars=$(wc -c < "$work/zoo/runs/char_gpt/generated.txt")
    [ "$chars" -ge 300 ] || { echo "FAIL: char_gpt generated $chars bytes, want the prompt + 300"; exit 1; }
    echo "ok: every zoo model trained, report and curves written, char_gpt generated $chars bytes"
    ;;
  *) echo "usage: zoo_test.sh KILN threads|quick" >&2; exit 2 ;;
esac
