#!/usr/bin/env python3
"""A seconds-long check of the peer harness that needs neither the venv nor numpy
(ctest: bench_peers_selftest): kiln's random permutation reproduced bit for
bit, the report's table from made-up results (a missing peer, an estimated
compile time, the machine-limit line), the issue's verdict rule, and the
machine limit's GEMM list and FLOP counts."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import machine_limit as ml  # noqa: E402
import run  # noqa: E402

failures = 0
checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
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
check("kiln / best peer (PyTorch eager): **0.48×**; target: kiln ≤ 0.5 × best peer = 2.100 s (no machine limit); "
      "kiln 2.000 s: met" in t, "summary line:\n" + t)
check("| TensorFlow | xla | 15.00~ |" in t, "estimated compile marked ~:\n" + t)
check("kiln compile 1.50 s vs XLA's (TF xla / JAX jit, fastest: TensorFlow xla, estimated) 15.00 s: below" in t,
      "compile line:\n" + t)

# a measured peer compile, and the machine limit: 1.25 x 1.8 s = 2.25 s > 0.5 x 4.2 s, so the limit's bound applies
res = {"epochs": [{"epoch": 1, "seconds": 5.1}, {"epoch": 2, "seconds": 5.0}], "compile_seconds": 3.25,
       "compile_measured": True}
rows[2]["summary"] = run.summarize(res)
limits = {"cnn32": {"limit_s": 1.8, "gflop": 94.5, "gflops_per_s": 52.5, "threads": 2, "note": ""}}
t = run.table(rows, ["cnn32"], limits)
check("| TensorFlow | xla | 3.25 |" in t, "measured compile:\n" + t)
check("machine limit: 1.800 s per epoch (94.5 GFLOP of GEMMs at OpenBLAS's measured 52.5 GF/s, 2 threads); "
      "kiln / limit: **1.11×**" in t, "limit line:\n" + t)
check("target: kiln ≤ max(0.5 × best peer = 2.100 s, 1.25 × machine limit = 2.250 s) = 2.250 s, the machine-limit "
      "bound; kiln 2.000 s: met" in t, "verdict with the limit:\n" + t)
check("fastest: TensorFlow xla, measured) 3.25 s: below" in t, "measured compile line:\n" + t)
check("caution" not in t, "no caution when kiln is slower than the limit:\n" + t)
limits["cnn32"]["limit_s"] = 2.5  # measured once: kiln (2.0 s) faster than its GEMMs alone
t = run.table(rows, ["cnn32"], limits)
check("**caution**: kiln's epoch is shorter than the machine limit" in t and "kiln 2.000 s: not judged by the limit (see the caution; against 0.5 × best peer alone: met)" in t,
      "suspect limit:\n" + t)
limits["cnn32"]["measured_s"] = [2.5, 2.9]  # measured twice, 16% apart: still suspect
t = run.table(rows, ["cnn32"], limits)
check("**caution**" in t and "not judged by the limit" in t, "disagreeing limit measurements:\n" + t)
limits["cnn32"]["measured_s"] = [2.5, 2.6]  # measured twice, 4% apart: a steady limit that kiln beats
t = run.table(rows, ["cnn32"], limits)
check("**caution**" not in t and "whose two measurements agree (within 10%)" in t and
      "1.25 × machine limit = 3.125 s) = 3.125 s, the machine-limit bound; kiln 2.000 s: met" in t,
      "steady limit beaten by kiln:\n" + t)
check(run.steady_limit({"measured_s": [8.834, 8.807]}) and not run.steady_limit({"measured_s": [6.9, 9.7]}) and
      not run.steady_limit({"limit_s": 9.7}) and not run.steady_limit(None), "steady_limit")
t = run.table(rows, ["cnn32"], {"cnn32": {"error": "exit 1: no numpy"}})
check("machine limit: missing (exit 1: no numpy)" in t, "missing limit:\n" + t)

# A warm-up estimate within its own noise (common.warm_up: first round minus the later rounds' median, their
# spread the noise) is shown with it and not compared; the comparison falls to the resolved figures (JAX's).
noisy = {"epochs": [{"epoch": 1, "seconds": 5.1}, {"epoch": 2, "seconds": 5.0}], "compile_seconds": 0.3,
         "compile_measured": True, "compile_noise_seconds": 0.45}
rows[2]["summary"] = run.summarize(noisy)
rows[3] = {"workload": "cnn32", "framework": "JAX", "mode": "jit", "peak_rss_mib": 100.0,
           "summary": run.summarize(dict(noisy, compile_seconds=2.0, compile_noise_seconds=None))}
t = run.table(rows, ["cnn32"])
check("| TensorFlow | xla | 0.30 (±0.45) |" in t, "noisy compile shown with its noise:\n" + t)
check("TensorFlow xla's compile estimate, 0.30 s, is within its own noise (the later warm-up rounds spread over "
      "0.45 s): not compared" in t and "fastest: JAX jit, measured) 2.00 s: below" in t, "noisy compile line:\n" + t)
rows[2]["summary"] = run.summarize(dict(noisy, compile_noise_seconds=0.2))  # resolved: 0.30 s > 0.20 s of noise
t = run.table(rows, ["cnn32"])
check("| TensorFlow | xla | 0.30 |" in t and "fastest: TensorFlow xla, measured) 0.30 s: not below" in t,
      "resolved small compile:\n" + t)

# the verdict rule
check(run.verdict("mlp64", 5.0, 12.0, 3.0) == (6.0, "0.5 × best peer", True), "verdict: peer bound")
check(run.verdict("mlp64", 5.0, 8.0, 4.5) == (5.625, "1.25 × machine limit", True), "verdict: limit bound")
check(run.verdict("cnn32", 6.0, 8.0, 4.5) == (5.625, "1.25 × machine limit", False), "verdict: limit bound, not met")
check(run.verdict("cnn32", 4.1, 8.0, None) == (4.0, "0.5 × best peer", False), "verdict: no limit")
check(run.verdict("mlpfull", 5.0, 5.0, 1.0) == (5.0, "1.0 × best peer", True), "verdict: full batch")
check(run.verdict("mlpfull", 5.1, 5.0, 10.0)[2] is False, "verdict: full batch ignores the limit")

# the machine limit's GEMMs and FLOPs
step = ml.step_gemms("mlp", 64)
check(sum(ml.flops(m, k, n) for _, m, k, n, _, _ in step) == 2 * 64 * 3072 * 1024 * 2 + 3 * 2 * 64 * 1024 * 10,
      "MLP batch-64 step FLOPs")
check(("fc1 dW", 3072, 64, 1024, True, False) in step and ("fc2 dX", 64, 10, 1024, False, True) in step
      and len(step) == 5, "MLP step GEMMs: %s" % step)
check(ml.batches(50000, 64) == {64: 781, 16: 1} and ml.batches(10000, 10000) == {10000: 1}, "batches")
mlp = ml.epoch_gemms("mlp64")
check(sum(g["count"] for g in mlp if g["phase"] == "train" and g["name"] == "fc1") == 782, "mlp64: 782 steps")
# per train row: fc1 and fc1 dW (no dX into the input), fc2, fc2 dW, fc2 dX; per test row: fc1, fc2
check(ml.epoch_flops("mlp64") == 2 * 3072 * 1024 * (2 * 50000 + 10000) + 2 * 1024 * 10 * (3 * 50000 + 10000),
      "mlp64 epoch FLOPs")
check(ml.epoch_flops("mlpfull") == ml.epoch_flops("mlp64"), "mlpfull does the same products")
check(ml.timed_shape(50000, 3072, 1024) == (8192, 3072, 1024, 50000 / 8192) and
      ml.timed_shape(3072, 50000, 1024)[:3] == (3072, 8192, 1024) and ml.timed_shape(32 * 676, 9, 32)[3] == 1.0,
      "cut shapes")
cnn = ml.step_gemms("cnn", 32)
conv_fwd = 2 * 32 * (26 * 26 * 9 * 32 + 11 * 11 * 288 * 64 + 3 * 3 * 576 * 64)
check(sum(ml.flops(m, k, n) for _, m, k, n, _, _ in cnn) == 3 * conv_fwd - 2 * 32 * 26 * 26 * 9 * 32
      + 3 * 2 * 32 * 64 * 10, "CNN step FLOPs (3x forward, less conv1's dX)")
check(("conv2 dX", 32 * 121, 64, 288, False, True) in cnn and ("conv1 dW", 9, 32 * 676, 32, True, False) in cnn
      and not any(n == "conv1 dX" for n, *_ in cnn), "CNN step GEMMs: %s" % cnn)
tr = ml.step_gemms("transfer", 32)
check(sum(ml.flops(m, k, n) for _, m, k, n, _, _ in tr) == conv_fwd + 2 * 2 * 32 * 64, "transfer step FLOPs")
check(ml.set_sizes("cnn32") == (52500, 7500, 10000) and ml.set_sizes("transfer32", 1000, 200) == (1000, 200, 200)
      and ml.set_sizes("mlpfull", 60000) == (50000, 0, 10000), "set sizes")
ev = {(g["rows"], g["count"]) for g in ml.epoch_gemms("cnn32") if g["phase"] == "eval"}
check(ev == {(32, 234 + 312), (12, 1), (16, 1)}, "cnn32 eval batches: %s" % ev)

# The machine limit counts the faster of the measurements before and after the workloads.
fl = run.faster_limits({"mlp64": {"limit_s": 9.7, "note": ""}, "cnn32": {"error": "x"}, "mlpfull": {"limit_s": 5.0}},
                       {"mlp64": {"limit_s": 6.9}, "cnn32": {"limit_s": 11.0}, "mlpfull": {"error": "y"}})
check(fl["mlp64"]["limit_s"] == 6.9 and "before 9.700 s, after 6.900 s" in fl["mlp64"]["note"] and
      fl["mlp64"]["measured_s"] == [9.7, 6.9], "faster limit: %s" % fl["mlp64"])
check(fl["cnn32"]["measured_s"] == [11.0], "one measurement: %s" % fl["cnn32"])
check(fl["cnn32"]["limit_s"] == 11.0 and fl["mlpfull"]["limit_s"] == 5.0, "a missing measurement: the other counts")

print("bench_peers_selftest: %d checks, %d failed" % (checks, failures))
sys.exit(1 if failures else 0)
