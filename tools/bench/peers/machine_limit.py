#!/usr/bin/env python3
"""The machine's limit for each workload: its epoch's GEMMs at OpenBLAS's speed.

    python tools/bench/peers/machine_limit.py --threads 2 --out limit.json [--only mlp64,cnn32] [--subset N] [--test-subset N]
    python tools/bench/peers/machine_limit.py --threads 2 --gemms resnet20=gemms.json [--gemms ...] [--out limit.json]

The second form times one step of any model: the GEMMs `kiln gemms GRAPH --train SPEC --json` lists for
it (every matmul and convolution of the compiled step's graph, forward and backward, convolutions as
their im2col GEMMs per group); zoo.py uses it for the zoo's limits.

run.py runs this once per run, before the workloads, in the benchmark venv and
as a process of its own, so that OPENBLAS_NUM_THREADS / OMP_NUM_THREADS
(= --threads) are set before numpy (and its bundled OpenBLAS) loads.

The limit of a workload = Σ over the GEMMs of one epoch of (how many times the
epoch runs it) × (OpenBLAS sgemm on that shape: the system's libopenblas through
ctypes when it is installed, else numpy's matmul; float32, operands stored the
way the transposes need, so that OpenBLAS gets the transpose flags and not a
copy: one warm-up, then the fastest of 7 repeats, 5 for GEMMs over 1 GFLOP; a
repeat loops a GEMM for >= 20 ms and divides). Everything that is not a GEMM (bias, ReLU, pooling, im2col, the
loss, the optimizer update, Python) counts as free, so this is a lower bound
on any framework's epoch that computes these products with OpenBLAS-class
GEMMs. FLOPs = 2·M·K·N. A GEMM over 4 GFLOP with a dimension above 8192 (only
the full-batch MLP: 50,000 train / 10,000 test rows) is timed with that
dimension cut to 8192 and its time scaled linearly by it ("timed_at" in the
output says so).

An epoch (as common.py defines it for kiln and every peer): ceil(train / B)
train steps, the last one on the remainder rows, then the evaluation (forward
only) of the validation set (cnn32, transfer32) and the test set, each in
batches of B (kiln evaluates in batches of the program's max batch = the train
batch; at full batch B = the train set, so the test set is one batch). Set
sizes follow data.py: MLP 50,000 train / 10,000 test (CIFAR-10); CNN 52,500
train / 7,500 validation / 10,000 test (MNIST after kiln's validation split);
--subset / --test-subset as data.py applies them.

GEMMs, C[M,N] = op(A)[M,K] · op(B)[K,N], for a batch of b rows:

MLP 3072 -> 1024 (ReLU) -> 10 (graphs/mlp_cifar10.json):
  train step  fc1        x[b,3072] · w1[3072,1024]      M=b     K=3072  N=1024
              fc2        h[b,1024] · w2[1024,10]        M=b     K=1024  N=10
              fc2 dW     h^T · dz                       M=1024  K=b     N=10    A^T
              fc2 dX     dz · w2^T                      M=b     K=10    N=1024  B^T
              fc1 dW     x^T · dH                       M=3072  K=b     N=1024  A^T
              (no dX for the input layer)
  eval        fc1, fc2
CNN (graphs/cnn_mnist.json: 3 x [conv 3x3 valid, ReLU, maxpool 2], 32/64/64
filters, 28x28x1 -> 26 -> 13 -> 11 -> 5 -> 3 -> 1, flatten 64, dense 10), each
conv as its im2col GEMM col[b*H*W, 9*Cin] · w[9*Cin, Cout]:
  train step  conv1      M=b*26*26  K=9    N=32
              conv2      M=b*11*11  K=288  N=64
              conv3      M=b*3*3    K=576  N=64
              dense      M=b        K=64   N=10
              dense dW   M=64       K=b    N=10    A^T   (flat^T · dz)
              dense dX   M=b        K=10   N=64    B^T   (dz · w^T)
              conv3 dW   M=576      K=b*9  N=64    A^T   (col^T · dy)
              conv3 dX   M=b*9      K=64   N=576   B^T   (dy · w^T, the col gradient)
              conv2 dW   M=288      K=b*121 N=64   A^T
              conv2 dX   M=b*121    K=64   N=288   B^T
              conv1 dW   M=9        K=b*676 N=32   A^T
              (no dX for conv1: its input needs no gradient)
  eval        conv1, conv2, conv3, dense
Transfer (graphs/cnn_mnist_transfer.json: the CNN base frozen, head Dense(1)):
  train step  conv1, conv2, conv3 (forward only), head M=b K=64 N=1,
              head dW M=64 K=b N=1 A^T (no gradient flows into the frozen base)
  eval        conv1, conv2, conv3, head

This file needs numpy only to time (main); the shape lists and FLOP counts
are plain Python (the self-test checks them without numpy).
"""
import argparse
import json
import os
import statistics
import sys
import time

# workload: (model, batch or 0 for full batch); as common.WORKLOADS
WORKLOADS = {"mlp64": ("mlp", 64), "mlpfull": ("mlp", 0), "cnn32": ("cnn", 32), "transfer32": ("transfer", 32)}
# (train, validation, test) of the full data sets, as data.load gives them
SET_SIZES = {"mlp": (50000, 0, 10000), "cnn": (52500, 7500, 10000), "transfer": (52500, 7500, 10000)}
CUT_DIM = 8192          # a big GEMM is timed with its largest dimension cut to this ...
CUT_FLOPS = 4e9         # ... when it is over this many FLOPs
CONVS = [("conv1", 26, 9, 32), ("conv2", 11, 288, 64), ("conv3", 3, 576, 64)]  # name, output H=W, K=9*Cin, N


def set_sizes(workload, subset=0, test_subset=0):
    """(train, validation, test) rows, as data.load applies --subset / --test-subset."""
    tr, va, te = SET_SIZES[WORKLOADS[workload][0]]
    cut = lambda n, k: n if not k or k >= n else k  # noqa: E731  (data.subset_random)
    return cut(tr, subset), cut(va, test_subset), cut(te, test_subset)


def step_gemms(model, b):
    """The GEMMs of one train step on b rows: [(name, M, K, N, transA, transB)]."""
    if model == "mlp":
        return [("fc1", b, 3072, 1024, False, False), ("fc2", b, 1024, 10, False, False),
                ("fc2 dW", 1024, b, 10, True, False), ("fc2 dX", b, 10, 1024, False, True),
                ("fc1 dW", 3072, b, 1024, True, False)]
    fwd = [(name, b * hw * hw, k, n, False, False) for name, hw, k, n in CONVS]
    if model == "transfer":
        return fwd + [("head", b, 64, 1, False, False), ("head dW", 64, b, 1, True, False)]
    out = fwd + [("dense", b, 64, 10, False, False), ("dense dW", 64, b, 10, True, False),
                 ("dense dX", b, 10, 64, False, True)]
    for name, hw, k, n in reversed(CONVS):
        out.append((name + " dW", k, b * hw * hw, n, True, False))
        if name != "conv1":
            out.append((name + " dX", b * hw * hw, n, k, False, True))
    return out


def eval_gemms(model, b):
    """The GEMMs of one evaluation (forward) on b rows."""
    if model == "mlp":
        return step_gemms(model, b)[:2]
    fwd = [(name, b * hw * hw, k, n, False, False) for name, hw, k, n in CONVS]
    return fwd + [("dense" if model == "cnn" else "head", b, 64, 10 if model == "cnn" else 1, False, False)]


def batches(n, b):
    """{rows: count} of the batches of an n-row pass in batches of b (the last one partial)."""
    out = {}
    if n >= b:
        out[b] = n // b
    if n % b:
        out[n % b] = 1
    return out


def flops(m, k, n):
    return 2 * m * k * n


def epoch_gemms(workload, subset=0, test_subset=0):
    """Every GEMM of one epoch: [{phase, name, rows, M, K, N, ta, tb, count, flops}] (flops: per call)."""
    model, batch = WORKLOADS[workload]
    tr, va, te = set_sizes(workload, subset, test_subset)
    b = batch or tr
    out = []
    for rows, count in batches(tr, b).items():
        for name, m, k, n, ta, tb in step_gemms(model, rows):
            out.append({"phase": "train", "name": name, "rows": rows, "M": m, "K": k, "N": n, "ta": ta, "tb": tb,
                        "count": count, "flops": flops(m, k, n)})
    ev = {}
    for size in (va, te):
        if size:
            for rows, count in batches(size, b).items():
                ev[rows] = ev.get(rows, 0) + count
    for rows, count in sorted(ev.items(), reverse=True):
        for name, m, k, n, ta, tb in eval_gemms(model, rows):
            out.append({"phase": "eval", "name": name, "rows": rows, "M": m, "K": k, "N": n, "ta": ta, "tb": tb,
                        "count": count, "flops": flops(m, k, n)})
    return out


def epoch_flops(workload, subset=0, test_subset=0):
    return sum(g["count"] * g["flops"] for g in epoch_gemms(workload, subset, test_subset))


def timed_shape(m, k, n):
    """(m, k, n, scale): the shape actually timed and the factor its time is multiplied by."""
    big = max(m, k, n)
    if flops(m, k, n) <= CUT_FLOPS or big <= CUT_DIM:
        return m, k, n, 1.0
    scale = big / CUT_DIM
    if m == big:
        return CUT_DIM, k, n, scale
    if k == big:
        return m, CUT_DIM, n, scale
    return m, k, CUT_DIM, scale


# ---------------------------------------------------------------- timing (numpy)
def blas_info(np):
    """'OpenBLAS 0.3.27 ... Zen MAX_THREADS=64, 2 threads' as far as numpy and OpenBLAS say."""
    info = "numpy %s" % np.__version__
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info = "%s (%s, numpy %s)" % (blas.get("openblas configuration") or blas.get("name"), blas.get("version"),
                                      np.__version__)
    except Exception:  # noqa: BLE001
        pass
    threads = None
    try:
        import ctypes
        import glob
        libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*"))
        for lib in libs:
            so = ctypes.CDLL(lib)
            for sym in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
                        "openblas_get_num_threads"):
                if hasattr(so, sym):
                    threads = getattr(so, sym)()
                    break
    except Exception:  # noqa: BLE001
        pass
    return info, threads


def system_openblas(threads):
    """(cblas_sgemm, its config string) of the machine's own OpenBLAS (Debian's libopenblas.so.0, the
    one kiln_bench_gemm links), or (None, reason): numpy's bundled OpenBLAS is often slower at small M
    (here 78 against 111 GF/s at 64x3072x1024), and the limit should be the best BLAS at hand."""
    import ctypes
    import ctypes.util
    lib = None
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            lib = None
    if lib is None or not hasattr(lib, "cblas_sgemm"):
        return None, "no system libopenblas (apt-get install libopenblas-dev)"
    lib.openblas_set_num_threads(ctypes.c_int(threads))
    lib.openblas_get_config.restype = ctypes.c_char_p
    i, f, v = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, v, i, v, i, f, v, i]
    lib.cblas_sgemm.restype = None
    return lib.cblas_sgemm, lib.openblas_get_config().decode()


def time_call(call, fl):
    """Fastest seconds of call() over repeats of at least 20 ms (one warm-up): a limit is what the
    machine can do, so the best repeat, not the median (a shared machine's noise only adds time)."""
    call()
    t = time.perf_counter()
    call()
    once = time.perf_counter() - t
    loops = max(1, int(2e-2 / max(once, 1e-7)))
    repeats = 5 if fl > 1e9 else 7
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(loops):
            call()
        times.append((time.perf_counter() - t) / loops)
    return min(times)


def time_gemm(np, m, k, n, ta, tb, sgemm=None):
    """(seconds, which): the system OpenBLAS's cblas_sgemm when there is one, else numpy's matmul, on
    C[m,n] = op(A) op(B), float32, operands laid out for the transposes (time_gemms also times the
    transposed product and keeps the faster). Never both in one
    measurement: two OpenBLAS thread pools in one process (each spinning after its calls) slow each
    other down."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    at, bt = (a.T if ta else a), (b.T if tb else b)
    if sgemm is None:
        return time_call(lambda: np.matmul(at, bt, out=c), flops(m, k, n)), "numpy"
    args = (101, 112 if ta else 111, 112 if tb else 111, m, n, k, 1.0, a.ctypes.data, a.shape[1],
            b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, n)
    return time_call(lambda: sgemm(*args), flops(m, k, n)), "system"


def time_gemms(np, gemms, sgemm, cache):
    """(FLOPs, seconds) of a list of GEMMs ({M, K, N, ta, tb, count, flops}), each timed once per shape
    (cache: shape -> (seconds, which BLAS)); fills in each GEMM's seconds and GF/s."""
    total_f, total_s = 0, 0.0
    for g in gemms:
        m, k, n, scale = timed_shape(g["M"], g["K"], g["N"])
        key = (m, k, n, g["ta"], g["tb"])
        if key not in cache:
            # C^T = op(B)^T op(A)^T is the same product: a BLAS user may call either, and OpenBLAS is
            # often much faster one way round (an im2col GEMM with 16 columns and 100,000 rows).
            cache[key] = min(time_gemm(np, *key, sgemm=sgemm), time_gemm(np, n, k, m, not g["tb"], not g["ta"], sgemm=sgemm))
        g["seconds"] = cache[key][0] * scale
        g["blas"] = cache[key][1]
        g["gflops_per_s"] = g["flops"] / g["seconds"] / 1e9
        if scale != 1.0:
            g["timed_at"] = "%dx%dx%d, time x %.4g" % (m, k, n, scale)
        total_f += g["count"] * g["flops"]
        total_s += g["count"] * g["seconds"]
    return total_f, total_s


def blas_for(np, threads):
    """(cblas_sgemm or None, a description of the BLAS that times)."""
    info, blas_threads = blas_info(np)
    sgemm, system = system_openblas(threads)
    return sgemm, ("the system's %s (cblas_sgemm)" % system if sgemm else info + " (numpy; " + system + ")"), blas_threads


def from_kiln(listing):
    """`kiln gemms --json` (one entry point's GEMMs, convolutions as im2col GEMMs per group) as this
    file's GEMM dicts."""
    return [{"name": r["node"], "M": r["m"], "K": r["k"], "N": r["n"], "ta": r["trans_a"], "tb": r["trans_b"],
             "count": r["count"], "flops": flops(r["m"], r["k"], r["n"])} for r in listing["gemms"]]


def measure_steps(listings, threads, log=print):
    """{name: {...}}: the machine limit of one step of each `kiln gemms --json` listing ({name: listing}):
    its GEMMs at the BLAS's speed, everything else free."""
    import numpy as np
    sgemm, info, blas_threads = blas_for(np, threads)
    cache, out = {}, {}
    for name, listing in listings.items():
        gemms = from_kiln(listing)
        total_f, total_s = time_gemms(np, gemms, sgemm, cache)
        out[name] = {"entry": listing["entry"], "batch": listing["batch"], "threads": threads, "blas": info,
                     "blas_threads": blas_threads, "gflop": total_f / 1e9, "limit_s": total_s,
                     "gflops_per_s": total_f / total_s / 1e9 if total_s else 0.0, "gemms": gemms}
        log("machine limit %s: %.4f s per step (%.2f GFLOP of GEMMs at %.1f GF/s, %d threads)" % (
            name, total_s, total_f / 1e9, out[name]["gflops_per_s"], threads))
    return out


def measure(workloads, threads, subset=0, test_subset=0, log=print):
    """{workload: {...}} with each epoch's GEMMs, FLOPs, limit seconds and GF/s (numpy must see the threads already)."""
    import numpy as np
    sgemm, info, blas_threads = blas_for(np, threads)
    cache = {}
    out = {}
    for w in workloads:
        gemms = epoch_gemms(w, subset, test_subset)
        total_f, total_s = time_gemms(np, gemms, sgemm, cache)
        tr, va, te = set_sizes(w, subset, test_subset)
        scaled = sorted({g["timed_at"] for g in gemms if "timed_at" in g})
        out[w] = {"train": tr, "val": va, "test": te, "batch": WORKLOADS[w][1] or tr, "threads": threads,
                  "blas": info, "blas_threads": blas_threads, "gflop": total_f / 1e9, "limit_s": total_s,
                  "gflops_per_s": total_f / total_s / 1e9, "gemms": gemms,
                  "note": ("big GEMMs timed at a cut shape and scaled linearly: " + "; ".join(scaled)) if scaled else ""}
        log("machine limit %s: %.3f s per epoch (%.1f GFLOP of GEMMs at %.1f GF/s, %d threads%s)" % (
            w, total_s, total_f / 1e9, total_f / total_s / 1e9, threads,
            "; " + out[w]["note"] if scaled else ""))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subset", type=int, default=0)
    ap.add_argument("--test-subset", type=int, default=0)
    ap.add_argument("--gemms", action="append", default=[], metavar="NAME=FILE",
                    help="instead of the seed's workloads: one step of each `kiln gemms --json` listing")
    ap.add_argument("--out", default="", help="result JSON (default: print it)")
    a = ap.parse_args()
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # before numpy loads OpenBLAS
        os.environ[k] = str(a.threads)
    if "numpy" in sys.modules:
        raise SystemExit("numpy loaded before the thread count was set")
    if a.gemms:
        listings = {}
        for spec in a.gemms:
            name, sep, path = spec.partition("=")
            if not sep:
                raise SystemExit("--gemms wants NAME=FILE, got %r" % spec)
            with open(path) as f:
                listings[name] = json.load(f)
        res = measure_steps(listings, a.threads)
    else:
        res = measure([w for w in a.only.split(",") if w], a.threads, a.subset, a.test_subset)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    else:
        json.dump(res, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
