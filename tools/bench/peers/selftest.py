#!/usr/bin/env python3
"""A seconds-long check of the peer harness that needs neither the venv nor numpy
(ctest: bench_peers_selftest): kiln's random permutation reproduced bit for
bit, and the report's table from made-up results, a missing peer included."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import run  # noqa: E402

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL: " + what)


# std::mt19937_64(1) and kiln::data::seeded_permutation, from the C++ standard library.
r = data.MT19937_64(1)
v = [r() for _ in range(700)]
check(v[0] == 2469588189546311528 and v[1] == 2516265689700432462 and v[699] == 15810005204186743963,
      "mt19937_64 stream")
check(list(data.seeded_permutation(12, 1)) == [5, 3, 10, 4, 6, 2, 7, 11, 9, 0, 1, 8], "seeded_permutation(12, 1)")
p = data.seeded_permutation(60000, 1)
check((p[0], p[7499], p[59999]) == (6108, 19885, 11528), "seeded_permutation(60000, 1)")


def row(framework, mode, secs, compile_s=None, acc=0.5):
    res = {"epochs": [{"epoch": i + 1, "seconds": s, "test_acc": acc} for i, s in enumerate(secs)]}
    if compile_s is not None:
        res["compile_seconds"] = compile_s
    return {"workload": "cnn32", "framework": framework, "mode": mode, "peak_rss_mib": 100.0,
            "summary": run.summarize(res)}


rows = [row("kiln", "jit", [3.0, 2.0, 2.2, 1.8], compile_s=1.5), row("PyTorch", "eager", [9.0, 4.0, 4.4, 4.2]),
        row("TensorFlow", "xla", [20.0, 5.0, 5.0, 5.0]),
        {"workload": "cnn32", "framework": "JAX", "mode": "jit", "reason": "exit 1: ModuleNotFoundError: jax"}]
s = rows[1]["summary"]
check(s["median_s"] == 4.2 and abs(s["compile_s"] - 4.8) < 1e-9 and s["timed_epochs"] == 3, "summarize: %s" % s)
t = run.table(rows, ["cnn32"])
check("| JAX | jit | missing: exit 1: ModuleNotFoundError: jax |" in t, "missing row:\n" + t)
check("| kiln | jit | 1.50 | 3.00 | 2.000 (1.80–2.20, 3) | 100 | 0.5000 | 1.00 |" in t, "kiln row:\n" + t)
check("kiln / best peer (PyTorch eager): **0.48×** (target ≤ 0.5×: met)" in t, "summary line:\n" + t)
check("kiln compile 1.50 s vs XLA's (TF xla / JAX jit, fastest) 15.00 s: below" in t, "compile line:\n" + t)

print("bench_peers_selftest: %d passed, %d failed" % (9 - failures, failures))
sys.exit(1 if failures else 0)
