#!/usr/bin/env python3
"""A model of kiln's data-parallel step time on P machines, from measurements.

For each model it measures, on this host:
  - the compute of one step at the local batches b = B, B/2, B/4 (`kiln
    profile --entry train_step`, every core of this machine), fitted by
    least squares to t(b) = a + c*b with a, c >= 0, so a machine of a
    P-machine job computes t(B/P) (smaller batches than measured keep the
    fixed part a: a model of the machine, not a promise);
  - the gradient buckets (`kiln compile --stats --distributed`);
  - the 1- and 2-rank data-parallel step on this machine (`mpirun -np 1|2
    kiln profile --distributed`): compute, waiting and communication.
Then it prints the modelled step time for P = 1..64 at 10 and 100 Gb/s:
  T(P) = t(B/P) + sum over buckets k of [2(P-1)/P * bytes_k / bandwidth + 2(P-1) * latency]
         + 2(P-1) * latency (the per-step loss exchange)
The terms add: an upper bound, since kiln sends each gradient bucket while
the backward pass computes the rest (kiln profile --distributed shows what is
left exposed on this host).

Usage: tools/bench/dist_scaling.py [--kiln build/tools/kiln] [--models cnn,mlp,...]
       [--latency-us 5] [--steps 20] [--out FILE.md]
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {  # name: (graph, spec) relative to the repository
    "mlp": ("graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json"),
    "cnn": ("graphs/cnn_mnist.json", "graphs/experiments/e4a_cnn.json"),
    "lenet5": ("graphs/zoo/lenet5.json", "tools/bench/dist/lenet5.json"),
    "resnet20": ("graphs/zoo/resnet20.json", "tools/bench/dist/resnet20.json"),
    "mobilenet_small": ("graphs/zoo/mobilenet_small.json", "tools/bench/dist/mobilenet_small.json"),
}
MPIRUN = ["timeout", "600", "mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
RANKS = [1, 2, 4, 8, 16, 32, 64]


def run(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def step_ms(kiln, graph, spec, batch, steps):
    """Mean ms of one train_step at this batch on every core (kiln profile's total line)."""
    out = run([kiln, "profile", graph, "--train", spec, "--batch", str(batch), "--steps", str(steps)])
    m = re.search(r"total\D*?([\d.]+) ms", out) or re.search(r"([\d.]+) ms per step", out)
    if not m:
        sys.exit(f"no step time in kiln profile's output:\n{out}")
    return float(m.group(1))


def buckets(kiln, graph, spec):
    out = run([kiln, "compile", graph, "--train", spec, "--distributed", "--stats"])
    sizes = [int(x) * 4 for x in re.findall(r"bucket \d+: (\d+) floats", out)]
    if not sizes:
        sys.exit(f"no buckets in kiln compile's output:\n{out}")
    return sizes


def measured(kiln, graph, spec, ranks, steps):
    """[(compute, wait, communicate, step)] mean ms per rank from kiln profile --distributed."""
    out = run(MPIRUN + ["-np", str(ranks), kiln, "profile", graph, "--train", spec, "--distributed", "--steps", str(steps)])
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+) /\s+[\d.]+\s+([\d.]+) /\s+[\d.]+\s+([\d.]+) /\s+[\d.]+\s+([\d.]+) /", out, re.M)
    if len(rows) != ranks:
        sys.exit(f"kiln profile --distributed printed {len(rows)} ranks, not {ranks}:\n{out}")
    return [tuple(float(x) for x in r[1:]) for r in rows]


def fit_nonnegative(points):
    """Least squares t = a + c*b over (b, t) points with a, c >= 0."""
    n = len(points)
    mb = sum(b for b, _ in points) / n
    mt = sum(t for _, t in points) / n
    var = sum((b - mb) ** 2 for b, _ in points)
    c = max(0.0, sum((b - mb) * (t - mt) for b, t in points) / var) if var else 0.0
    a = mt - c * mb
    if a < 0:  # no fixed part: the line through the origin
        a, c = 0.0, sum(b * t for b, t in points) / sum(b * b for b, _ in points)
    return a, c


def model_ms(a, c, batch, sizes, p, gbps, latency_s):
    compute = a + c * batch / p
    comm = 0.0
    if p > 1:
        bandwidth = gbps * 1e9 / 8
        comm = sum(2 * (p - 1) / p * s / bandwidth + 2 * (p - 1) * latency_s for s in sizes) + 2 * (p - 1) * latency_s
    return compute, comm * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build/tools/kiln"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--latency-us", type=float, default=5.0, help="per message (default 5 us)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", help="also write the tables (markdown) here")
    args = ap.parse_args()
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    say(f"host: {cpu}, {isa}, {os.cpu_count()} cores; latency {args.latency_us:g} us per message; "
        "compute per machine t(b) = a + c*b fitted on this host (every core)")
    for name in args.models.split(","):
        graph, spec = MODELS[name]
        batch = json.load(open(os.path.join(ROOT, spec)))["batch_size"]
        points = [(b, step_ms(args.kiln, graph, spec, b, args.steps)) for b in sorted({batch, max(1, batch // 2), max(1, batch // 4)})]
        a, c = fit_nonnegative(points)
        t_full = dict(points)[batch]
        sizes = buckets(args.kiln, graph, spec)
        one = measured(args.kiln, graph, spec, 1, args.steps)
        two = measured(args.kiln, graph, spec, 2, args.steps)
        say()
        say(f"### {name} (global batch {batch}, {sum(sizes) / 1e6:.2f} MB of gradients in {len(sizes)} bucket(s))")
        say("measured on this host: train_step " + ", ".join(f"{t:.2f} ms at batch {b}" for b, t in points) +
            f" (fit: a = {a:.2f} ms + c = {c * 1e3:.2f} us a sample); data-parallel step, mean of {args.steps}:")
        for label, rows in (("1 rank x 2 threads", one), ("2 ranks x 1 thread", two)):
            worst = max(rows, key=lambda r: r[3])
            say(f"  {label}: step {worst[3]:.2f} ms (compute {worst[0]:.2f}, waiting {worst[1]:.2f}, "
                f"communicating {worst[2]:.2f}; communication {100 * worst[2] / worst[3]:.1f}% of the step)")
        say()
        say("| P | 10 Gb/s: step ms | speedup | efficiency | comm share | 100 Gb/s: step ms | speedup | efficiency | comm share |")
        say("|---|---|---|---|---|---|---|---|---|")
        base = sum(model_ms(a, c, batch, sizes, 1, 10, args.latency_us * 1e-6))  # t(B) on one machine
        for p in RANKS:
            row = f"| {p} |"
            for gbps in (10, 100):
                compute, comm = model_ms(a, c, batch, sizes, p, gbps, args.latency_us * 1e-6)
                total = compute + comm
                row += f" {total:.2f} | {base / total:.2f}x | {100 * base / total / p:.0f}% | {100 * comm / total:.0f}% |"
            say(row)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
