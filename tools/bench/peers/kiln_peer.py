"""kiln itself: runs the real `kiln train` CLI on the experiment specs.

The spec is copied into a temporary folder with absolute paths (graph, data,
init_from). Epoch times are wall-clock, read the way the other peers are
timed: the harness timestamps each line kiln prints, and epoch k lasts from
the previous line ("compiled in ..." for epoch 1) to kiln's "Epoch : k" line,
which kiln prints after the epoch's training pass and its validation and
test evaluation. (That interval also holds kiln's per-epoch checkpoint write;
kiln's own train-step-only seconds from metrics.json are kept as
"step_seconds".) Compile time is kiln's own "compiled in" figure.
Needs no numpy: this file also runs under the system Python.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SPECS = {  # workload: (graph, spec, batch override)
    "mlp64": ("graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json"),
    "mlpfull": ("graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_full.json"),
    "cnn32": ("graphs/cnn_mnist.json", "graphs/experiments/e4a_cnn.json"),
    "transfer32": ("graphs/cnn_mnist_transfer.json", "graphs/experiments/e4c_transfer.json"),
}


def kiln_binary():
    b = os.environ.get("KILN_BIN") or os.path.join(REPO, os.environ.get("KILN_BUILD_DIR", "build"), "tools", "kiln")
    return os.path.abspath(b)


def kiln_version(binary):
    try:
        h = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return h + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True, choices=sorted(SPECS))
    p.add_argument("--mode", default="jit")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--base", default="", help="kiln checkpoint for init_from (transfer)")
    p.add_argument("--keep", default="", help="copy final.ckpt here (the CNN run gives the transfer base)")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    graph, spec_path = (os.path.join(REPO, s) for s in SPECS[a.workload])
    with open(spec_path) as f:
        spec = json.load(f)
    spec_dir = os.path.dirname(spec_path)
    spec["graph"] = graph
    spec["data"]["dir"] = os.path.abspath(os.path.join(spec_dir, spec["data"]["dir"]))
    if "init_from" in spec:
        if not a.base:
            raise SystemExit("transfer needs --base (the CNN run's final.ckpt)")
        spec["init_from"] = os.path.abspath(a.base)
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    tmp_spec = os.path.join(tmp, os.path.basename(spec_path))
    with open(tmp_spec, "w") as f:
        json.dump(spec, f, indent=1)
    out_dir = os.path.join(tmp, "run")
    binary = kiln_binary()
    cmd = [binary, "train", graph, tmp_spec, "--epochs", str(a.epochs), "--threads", str(a.threads), "--out", out_dir,
           "--no-cache"]  # a cold compile: the time compared with the peers' compile
    if a.subset:
        cmd += ["--subset", str(a.subset)]
    if a.test_subset:
        cmd += ["--test-subset", str(a.test_subset)]
    print(" ".join(cmd), flush=True)

    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    stamps, log = [], []
    compiled_at, compile_s = None, None
    for line in proc.stdout:
        now = time.perf_counter()
        log.append(line.rstrip("\n"))
        m = re.search(r"compiled in ([0-9.]+) s", line)
        if m:
            compiled_at, compile_s = now, float(m.group(1))
        m = re.match(r"Epoch : (\d+) , Epoch Time : ([0-9.]+)", line)
        if m:
            stamps.append((int(m.group(1)), now, line))
            print(line.rstrip("\n"), flush=True)
    rc = proc.wait()
    if rc != 0 or compiled_at is None or len(stamps) != a.epochs:
        sys.stderr.write("\n".join(log[-30:]) + "\n")
        raise SystemExit("kiln train failed (exit %d)" % rc)

    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    epochs, prev = [], compiled_at
    for (k, now, _), m in zip(stamps, metrics):
        e = {"epoch": k, "seconds": now - prev, "step_seconds": m.get("step_seconds", m["seconds"]),
             "test_loss": m.get("test_loss"), "test_acc": m.get("test_acc")}
        if m.get("val_acc") is not None:
            e["val_loss"], e["val_acc"] = m["val_loss"], m["val_acc"]
        epochs.append(e)
        prev = now
    sizes = re.search(r"(\d+) train, (\d+) validation, (\d+) test", "\n".join(log))
    if a.keep:
        os.replace(os.path.join(out_dir, "final.ckpt"), a.keep)
    result = {"framework": "kiln", "mode": "jit", "version": kiln_version(binary), "workload": a.workload,
              "train_size": int(sizes.group(1)) if sizes else None, "threads": a.threads,
              "compile_seconds": compile_s, "startup_seconds": compiled_at - t_start,
              "epochs": epochs, "command": " ".join(cmd)}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
