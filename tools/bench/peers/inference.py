#!/usr/bin/env python3
"""Inference latency: kiln against onnxruntime and PyTorch eager on torchvision models.

    python tools/bench/peers/inference.py [--models resnet18,mobilenet_v2] [--batches 1,32] [--threads 2]

Each model is built by torchvision with random weights (seeded), in eval mode, and exported to ONNX
(opset 13, the batch dimension open); kiln reads that file through `kiln import`, so all three run
the same weights. Every (model, framework) is a process of its own; within it, each batch size is
called once untimed (warm-up: kiln also computes there what depends on the weights alone, such as
batch norm folded into the convolutions; above batch 1, kiln then times the batch run whole and
in slices of each power of two, untimed, and keeps the fastest: `kiln run --slice auto`), then timed call by call on one input already in memory:
20 calls at batch 1, 5 at batch 32 (--calls), and the median is reported. What a call covers:
kiln, the compiled forward pass (`kiln run --jit --time`); onnxruntime, `session.run` (CPU provider,
all graph optimizations, `intra_op_num_threads` = --threads, sequential execution); PyTorch,
`model(x)` under `torch.inference_mode()`. Outputs are checked against onnxruntime's (the max difference
relative to the largest output; above 1e-3 the script exits 1). Target (issue 25): kiln's median <= 1.0 x onnxruntime's at every model and batch.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))
from host import cpu_model, isa, write_report  # noqa: E402

MODELS = ["resnet18", "mobilenet_v2"]


def calls_for(batch, a):
    return a.calls or (20 if batch == 1 else 5)


def export(model, folder):
    import torch
    import torchvision
    torch.manual_seed(0)
    m = getattr(torchvision.models, model)(weights=None).eval()
    path = os.path.join(folder, model + ".onnx")
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13)
    return path


def inputs(folder, batches):
    import numpy as np
    out = {}
    for b in batches:
        out[b] = os.path.join(folder, "x%d.npy" % b)
        np.save(out[b], np.random.default_rng(b).standard_normal((b, 3, 224, 224)).astype(np.float32))
    return out


def worker(a):
    """One framework on one model, every batch size: prints a JSON line per batch."""
    import numpy as np
    threads = a.threads
    if a.worker == "torch":
        import torch
        import torchvision
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        torch.manual_seed(0)
        model = getattr(torchvision.models, a.model)(weights=None).eval()
    for b in [int(s) for s in a.batches.split(",")]:
        x = np.load(os.path.join(a.folder, "x%d.npy" % b))
        n = calls_for(b, a)
        if a.worker == "onnxruntime":
            import onnxruntime as ort
            o = ort.SessionOptions()
            o.intra_op_num_threads = threads
            o.inter_op_num_threads = 1
            o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            s = ort.InferenceSession(os.path.join(a.folder, a.model + ".onnx"), o, providers=["CPUExecutionProvider"])
            call = lambda: s.run(None, {"x": x})[0]  # noqa: E731
        else:
            xt = torch.from_numpy(x)

            def call():
                with torch.inference_mode():
                    return model(xt).numpy()
        out = call()  # warm-up
        ms = []
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            ms.append((time.perf_counter() - t0) * 1e3)
        np.save(os.path.join(a.folder, "%s_%s_%d.npy" % (a.model, a.worker, b)), out)
        print(json.dumps({"batch": b, "ms": ms}), flush=True)


def run_kiln(a, model, folder, batch):
    kiln = os.path.join(REPO, os.environ.get("KILN_BUILD_DIR", "build"), "tools", "kiln")
    out_dir = os.path.join(folder, "kiln_%s_%d" % (model, batch))
    cmd = [kiln, "run", os.path.join(folder, model + ".json"), "--params", os.path.join(folder, model + ".params"),
           "--input", "x=" + os.path.join(folder, "x%d.npy" % batch), "--jit", "--time", str(calls_for(batch, a)),
           "--threads", str(a.threads), "--output", out_dir]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    if p.returncode != 0:
        raise RuntimeError("kiln run failed: " + (p.stderr or p.stdout).strip().splitlines()[-1])
    line = next(l for l in p.stdout.splitlines() if l.startswith("timed:"))
    median = float(line.split("median ")[1].split(" ms")[0])
    slices = next((l for l in p.stdout.splitlines() if l.startswith("batch slices:")), "batch slices: none (batch 1)")
    slices = slices.split(":", 1)[1].split("(")[0].strip().split(",")[0]  # "2 samples a call" or "none"
    return median, os.path.join(out_dir, "logits.npy"), slices


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=0, help="timed calls per batch (default 20 at batch 1, 5 otherwise)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per process")
    ap.add_argument("--out", default=os.path.join(REPO, "reports", "bench", "inference"), help="report path stem")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)

    import numpy as np
    folder = tempfile.mkdtemp(prefix="kiln-inference-")
    batches = [int(s) for s in a.batches.split(",")]
    inputs(folder, batches)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for model in [m for m in a.models.split(",") if m]:
        print("[%s] %s: exporting to ONNX, importing into kiln" % (time.strftime("%H:%M:%S"), model), flush=True)
        onnx_path = export(model, folder)
        subprocess.run([os.path.join(REPO, os.environ.get("KILN_BUILD_DIR", "build"), "tools", "kiln"), "import",
                        onnx_path, "-o", folder], check=True, capture_output=True)
        peer = {}
        for fw in ("onnxruntime", "torch"):
            p = subprocess.run([sys.executable, __file__, "--worker", fw, "--model", model, "--folder", folder,
                                "--batches", a.batches, "--threads", str(a.threads)] + (["--calls", str(a.calls)] if a.calls else []),
                               capture_output=True, text=True, timeout=a.timeout)
            if p.returncode != 0:
                raise SystemExit("%s on %s failed: %s" % (fw, model, p.stderr.strip()[-500:]))
            for line in p.stdout.splitlines():
                r = json.loads(line)
                peer[(fw, r["batch"])] = statistics.median(r["ms"])
        for b in batches:
            k_ms, k_out, k_slices = run_kiln(a, model, folder, b)
            ref = np.load(os.path.join(folder, "%s_onnxruntime_%d.npy" % (model, b)))
            # relative to the outputs' scale (random weights can leave logits far from 1)
            diff = float(np.abs(np.load(k_out) - ref).max() / max(float(np.abs(ref).max()), 1e-30))
            row = {"model": model, "batch": b, "calls": calls_for(b, a), "kiln_ms": k_ms,
                   "onnxruntime_ms": peer[("onnxruntime", b)], "torch_ms": peer[("torch", b)], "max_rel_diff": diff,
                   "kiln_batch_slices": k_slices}
            rows.append(row)
            print("  batch %d: kiln %.2f ms, onnxruntime %.2f ms, PyTorch eager %.2f ms (kiln/ort %.3f; max |kiln - ort| / max |ort| %.2g)" % (
                b, k_ms, row["onnxruntime_ms"], row["torch_ms"], k_ms / row["onnxruntime_ms"], diff), flush=True)
    md = ["## Inference latency (kiln vs onnxruntime vs PyTorch eager)", "",
          "- date: %s; machine: %s (%s), %d threads each" % (started, cpu_model(), isa(), a.threads),
          "- median ms per call after a warm-up call; %s; inputs random, 3x224x224, already in memory" % (
              "%d calls" % a.calls if a.calls else "20 calls at batch 1, 5 at batch 32"),
          "- target (issue 25): kiln ≤ 1.0 × onnxruntime at every model and batch", "",
          "| model | batch | kiln ms | onnxruntime ms | PyTorch eager ms | kiln / onnxruntime | met | max diff vs ort (relative) | kiln batch slices |",
          "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        ratio = r["kiln_ms"] / r["onnxruntime_ms"]
        md.append("| %s | %d | %.2f | %.2f | %.2f | **%.3f** | %s | %.2g | %s |" % (
            r["model"], r["batch"], r["kiln_ms"], r["onnxruntime_ms"], r["torch_ms"], ratio, "yes" if ratio <= 1.0 else "no",
            r["max_rel_diff"], r["kiln_batch_slices"]))
    text = "\n".join(md) + "\n"
    print("\n" + text)
    write_report(a.out, text, date=started, threads=a.threads, rows=rows)
    return 0 if all(r["max_rel_diff"] < 1e-3 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
