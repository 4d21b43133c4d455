#!/usr/bin/env python3
"""The zoo's training steps: kiln against PyTorch eager and torch.compile, a fixed number of steps each.

    python tools/bench/peers/zoo.py [--only lenet5,resnet20,mobilenet_small,char_gpt] [--peers kiln,eager,compile]
                                    [--steps N] [--threads 2] [--timeout 900]

Every run trains the zoo model with its zoo recipe (graphs/zoo/train/<model>.json; the PyTorch side is the
model's twin, tools/bench/zoo/twin.py, same architecture, initializers, data, augmentation, optimizer and
schedule) for two periods of the workload's step count: the first is the warm-up (it holds torch.compile's
compile and every framework's first-call costs), the second is timed. Image models: a seeded subset of
steps x batch training images, two epochs, the second epoch's training time (the loader and augmentation
included, the evaluation after the epoch not: kiln's metrics "seconds", the twin's epoch "seconds").
char_gpt: twice the steps, the time of the last block (kiln: its per-epoch seconds over a subset of windows
one block long; the twin: its last 100-step block, scaled to the step count). Each run is a process of its
own (peak RSS from wait4), with the same thread count and a time limit; a run that fails or times out is
reported missing with the reason.

The machine limit of a workload: its timed steps' GEMMs (`kiln gemms`: every matmul and convolution of
the compiled training step, forward and backward, convolutions as im2col GEMMs per group) at the
system OpenBLAS's measured speed, everything else free (machine_limit.py --gemms); measured before the
workloads and after them, the faster counting. Target (issue 25): kiln's time
<= max(0.5 x the best peer's, 1.25 x the machine limit).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))
from host import cpu_model, isa, write_report  # noqa: E402
from run import child_env, run_one, loadavg  # noqa: E402

# model: (batch, timed steps)
WORKLOADS = {"lenet5": (32, 300), "resnet20": (128, 30), "mobilenet_small": (128, 30), "char_gpt": (32, 100)}
PEERS = ["kiln", "eager", "compile"]
LABELS = {"kiln": ("kiln", "jit"), "eager": ("PyTorch", "eager"), "compile": ("PyTorch", "torch.compile")}


def kiln_cmd(model, steps, batch, threads, out_dir):
    kiln = os.path.join(REPO, os.environ.get("KILN_BUILD_DIR", "build"), "tools", "kiln")
    spec = os.path.join(REPO, "graphs", "zoo", "train", model + ".json")
    cmd = [kiln, "train", spec, "--threads", str(threads), "--out", out_dir, "--no-cache", "--epochs", "2"]
    # char_gpt's "epoch" is one pass over its window subset: steps x batch windows
    return cmd + ["--subset", str(steps * batch), "--test-subset", "64"]


def kiln_result(out_dir, steps):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        m = json.load(f)
    return {"seconds": m[-1]["seconds"], "step_only_seconds": m[-1].get("step_seconds"), "warmup_seconds": m[0]["seconds"]}


def machine_limits(models, steps_of, threads, env, logs, when):
    """{model: seconds of its timed steps at the machine limit}, or {} with the reason printed."""
    kiln = os.path.join(REPO, os.environ.get("KILN_BUILD_DIR", "build"), "tools", "kiln")
    print("[%s] machine limit %s the workloads (OpenBLAS on each step's GEMMs) ..." % (time.strftime("%H:%M:%S"), when),
          end=" ", flush=True)
    args = []
    for model in models:
        listing = os.path.join(logs, "gemms_%s.json" % model)
        with open(listing, "w") as f:
            rc = subprocess.call([kiln, "gemms", os.path.join(REPO, "graphs", "zoo", model + ".json"), "--train",
                                  os.path.join(REPO, "graphs", "zoo", "train", model + ".json"), "--batch",
                                  str(WORKLOADS[model][0]), "--json"], stdout=f, cwd=REPO)
        if rc != 0:
            print("missing: kiln gemms %s exit %d" % (model, rc), flush=True)
            return {}
        args += ["--gemms", "%s=%s" % (model, listing)]
    out = os.path.join(logs, "machine_limit_%s.json" % when)
    log = os.path.join(logs, "machine_limit_%s.log" % when)
    cmd = [sys.executable, os.path.join(HERE, "machine_limit.py"), "--threads", str(threads), "--out", out] + args
    rc, wall, _, reason = run_one(cmd, env, 900, log)
    try:
        if rc != 0:
            raise ValueError(reason)
        with open(out) as f:
            got = {m: r["limit_s"] * steps_of(m) for m, r in json.load(f).items()}
    except (OSError, ValueError, KeyError) as e:
        print("missing: %s (log %s)" % (e, log), flush=True)
        return {}
    print("%.0f s: %s" % (wall, ", ".join("%s %.2f s" % kv for kv in got.items())), flush=True)
    return got


def twin_cmd(model, steps, batch, threads, out_json, compile_):
    cmd = [sys.executable, os.path.join(REPO, "tools", "bench", "zoo", "twin.py"), "--model", model, "--out", out_json,
           "--threads", str(threads)]
    if model == "char_gpt":
        cmd += ["--steps", str(2 * steps), "--test-subset", "8"]
    else:
        cmd += ["--epochs", "2", "--train-subset", str(steps * batch), "--test-subset", "64"]
    return cmd + (["--compile"] if compile_ else [])


def twin_result(out_json, model, steps):
    with open(out_json) as f:
        r = json.load(f)
    if model == "char_gpt":
        blocks = r["step_blocks"]
        last = blocks[-1]
        return {"seconds": last["seconds"] * steps / last["steps"], "warmup_seconds": blocks[0]["seconds"]}
    return {"seconds": r["epochs"][-1]["seconds"], "warmup_seconds": r["epochs"][0]["seconds"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--steps", type=int, default=0, help="timed steps for every workload (default: per workload)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run")
    ap.add_argument("--out", default=os.path.join(REPO, "reports", "bench", "zoo"), help="report path stem")
    a = ap.parse_args()
    models = [m for m in a.only.split(",") if m]
    peers = [p for p in a.peers.split(",") if p]
    for m in models:
        if m not in WORKLOADS:
            raise SystemExit("unknown workload %s (known: %s)" % (m, ", ".join(WORKLOADS)))
    for p in peers:
        if p not in PEERS:
            raise SystemExit("unknown peer %s (known: %s)" % (p, ", ".join(PEERS)))
    env = child_env(a.threads)
    logs = tempfile.mkdtemp(prefix="kiln-zoo-bench-")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    steps_of = lambda m: a.steps or WORKLOADS[m][1]  # noqa: E731
    limits = [machine_limits(models, steps_of, a.threads, env, logs, "before")]
    rows = []
    for model in models:
        batch, steps = WORKLOADS[model]
        steps = a.steps or steps
        for peer in peers:
            log = os.path.join(logs, "%s_%s.log" % (model, peer))
            if peer == "kiln":
                out_dir = os.path.join(logs, "%s_kiln" % model)
                cmd = kiln_cmd(model, steps, batch, a.threads, out_dir)
            else:
                out_json = os.path.join(logs, "%s_%s.json" % (model, peer))
                cmd = twin_cmd(model, steps, batch, a.threads, out_json, peer == "compile")
            print("[%s] %s %s %s ..." % (time.strftime("%H:%M:%S"), model, *LABELS[peer]), end=" ", flush=True)
            rc, wall, rss, reason = run_one(cmd, env, a.timeout, log)
            row = {"model": model, "peer": peer, "steps": steps, "batch": batch, "wall_s": wall, "peak_rss_mib": rss,
                   "command": " ".join(cmd), "log": log}
            if rc == 0:
                try:
                    row.update(kiln_result(out_dir, steps) if peer == "kiln" else twin_result(out_json, model, steps))
                except (OSError, ValueError, KeyError, IndexError) as e:
                    reason = "no usable result (%s)" % e
            if "seconds" not in row:
                row["reason"] = reason
                print("missing: %s (log %s)" % (reason, log), flush=True)
            else:
                print("%d steps in %.2f s (%.1f ms/step), peak RSS %.0f MiB" % (
                    steps, row["seconds"], 1e3 * row["seconds"] / steps, rss), flush=True)
            rows.append(row)

    limits.append(machine_limits(models, steps_of, a.threads, env, logs, "after"))
    limit = {m: min(x[m] for x in limits if m in x) for m in models if any(m in x for x in limits)}
    md = ["## The zoo's training steps: kiln vs PyTorch (eager, torch.compile)", "",
          "- date: %s; machine: %s (%s), %d threads each; load average %s before, %s after" % (
              started.strftime("%Y-%m-%d %H:%M UTC"), cpu_model(), isa(), a.threads, load_before, loadavg()),
          "- each run: a warm-up period, then the timed steps (the loader and augmentation included, evaluation not); "
          "peak RSS of the whole process",
          "- machine limit: the timed steps' GEMMs (`kiln gemms`; convolutions as im2col GEMMs per group) at the "
          "system OpenBLAS's speed, the faster of either operand order, everything else free (machine_limit.py)",
          "- target (issue 25): kiln ≤ max(0.5 × the best peer, 1.25 × the machine limit)", "",
          "| model | steps × batch | kiln s | PyTorch eager s | torch.compile s | kiln / best peer | machine limit s "
          "| target s | met | peak RSS MiB (kiln / eager / compile) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for model in models:
        r = {x["peer"]: x for x in rows if x["model"] == model}
        cell = lambda p: "%.2f" % r[p]["seconds"] if p in r and "seconds" in r[p] else ("missing" if p in r else "—")  # noqa: E731
        rss = lambda p: "%.0f" % r[p]["peak_rss_mib"] if p in r and "seconds" in r[p] else "—"  # noqa: E731
        best = [r[p]["seconds"] for p in ("eager", "compile") if p in r and "seconds" in r[p]]
        ratio = r["kiln"]["seconds"] / min(best) if best and "kiln" in r and "seconds" in r["kiln"] else None
        batch, steps = WORKLOADS[model]
        bounds = ([0.5 * min(best)] if best else []) + ([1.25 * limit[model]] if model in limit else [])
        target = max(bounds) if bounds else None
        kiln_s = r["kiln"]["seconds"] if "kiln" in r and "seconds" in r["kiln"] else None
        for x in rows:
            if x["model"] == model:
                x.update({"machine_limit_s": limit.get(model), "target_s": target})
        md.append("| %s | %d × %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            model, a.steps or steps, batch, cell("kiln"), cell("eager"), cell("compile"),
            "**%.2f**" % ratio if ratio else "—", "%.2f" % limit[model] if model in limit else "—",
            "%.2f" % target if target else "—", ("yes" if kiln_s <= target else "no") if target and kiln_s else "—",
            " / ".join(rss(p) for p in PEERS)))
    missing = [x for x in rows if "seconds" not in x]
    for x in missing:
        md.append("\n%s %s: missing (%s)" % (x["model"], " ".join(LABELS[x["peer"]]), x["reason"]))
    text = "\n".join(md) + "\n"
    print("\n" + text)
    write_report(a.out, text, started=started.isoformat(), threads=a.threads, rows=rows)
    print("wrote %s.md and %s.json (logs in %s)" % (a.out, a.out, logs))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
