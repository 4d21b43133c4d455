"""What every Python peer shares: arguments, initial weights, the epoch loop,
the timing rules and the result file.

An epoch (for kiln and every peer alike) = one pass over the training set in
a fresh seeded shuffle, the last partial batch kept, then the evaluation of
the validation set (CNN workloads) and the test set, in batches of the
training batch size (all at once for full batch). Its time is wall-clock from
the first batch to the last evaluation result (device work synchronized).
Data loading and preprocessing happen once, before, and are not timed.
Compiling (tracing, JIT) is timed apart, before the first epoch, for every
batch size the epochs will use (Runner.warm_up, or the peer's own
ahead-of-time compile: JAX), and reported as "compile_seconds"; the epochs
then run on what was compiled.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402

WORKLOADS = {
    # name: (model, batch or 0 for full batch, optimizer, lr)
    "mlp64": ("mlp", 64, "gd", 1e-3),
    "mlpfull": ("mlp", 0, "gd", 1e-3),
    "cnn32": ("cnn", 32, "adam", 1e-3),
    "transfer32": ("transfer", 32, "adam", 1e-3),
}
L2 = 5e-6


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    p.add_argument("--mode", required=True)
    p.add_argument("--epochs", type=int, default=4, help="including the warm-up epoch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--base", default="", help="kiln checkpoint with the CNN base (transfer)")
    p.add_argument("--out", required=True, help="result JSON")
    return p.parse_args()


# ---------------------------------------------------------------- initial weights
def he_normal(rng, shape):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])).astype(np.float32)


def glorot_uniform(rng, shape):
    recept = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * recept, shape[-1] * recept
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, shape).astype(np.float32)


CNN_LAYERS = [("conv1", 1, 32), ("conv2", 32, 64), ("conv3", 64, 64)]


def init_params(model, base_ckpt=""):
    """Numpy arrays in kiln's layouts: dense kernels [in, out], conv kernels HWIO.

    mlp: w1 b1 w2 b2 (he_normal, zeros). cnn: conv{1,2,3}/kernel|bias,
    dense/kernel|bias (glorot_uniform, zeros). transfer: the CNN base from
    kiln's checkpoint (frozen) and head/kernel|bias (glorot_uniform, zeros).
    """
    rng = np.random.default_rng(1)
    if model == "mlp":
        return {"w1": he_normal(rng, (3072, 1024)), "b1": np.zeros(1024, np.float32),
                "w2": he_normal(rng, (1024, 10)), "b2": np.zeros(10, np.float32)}
    p = {}
    for name, cin, cout in CNN_LAYERS:
        p[name + "/kernel"] = glorot_uniform(rng, (3, 3, cin, cout))
        p[name + "/bias"] = np.zeros(cout, np.float32)
    if model == "cnn":
        p["dense/kernel"] = glorot_uniform(rng, (64, 10))
        p["dense/bias"] = np.zeros(10, np.float32)
        return p
    if base_ckpt:
        ck = data.read_kiln_checkpoint(base_ckpt)
        for k in list(p):
            p[k] = ck[k].astype(np.float32)
    p["head/kernel"] = glorot_uniform(rng, (64, 1))
    p["head/bias"] = np.zeros(1, np.float32)
    return p


# ---------------------------------------------------------------- the loop
class Runner:
    """Drives epochs. The peer supplies:
      step(x, y) -> None           one optimizer step on a numpy batch
      evaluate(x, y) -> (loss_sum, correct) over one numpy batch, as Python floats
      sync() -> None               wait for queued device work (may be a no-op)
    """

    def __init__(self, args):
        self.args = args
        self.model, self.batch, self.opt, self.lr = WORKLOADS[args.workload]
        t = time.perf_counter()
        self.sets = data.load(args.workload, args.subset, args.test_subset)
        self.load_seconds = time.perf_counter() - t
        self.rng = np.random.default_rng(1)

    def eval_set(self, evaluate, xs, ys):
        n = len(xs)
        b = self.batch or n
        loss, correct = 0.0, 0.0
        for i in range(0, n, b):
            l, c = evaluate(xs[i:i + b], ys[i:i + b])
            loss += l
            correct += c
        return loss / n, correct / n

    # ------------------------------------------------------------ compile / warm-up, timed apart
    def batch_sizes(self):
        """(train, eval): the distinct batch sizes (rows) an epoch feeds the train step and the
        evaluation, in the order it first meets them (full batches, then each set's remainder)."""
        n = len(self.sets["train"][0])
        b = self.batch or n
        train = [b] + ([n % b] if n % b else [])
        ev = []
        for name in ("val", "test"):
            if self.sets[name] is not None:
                m = len(self.sets[name][0])
                for r in ([b] if m >= b else []) + ([m % b] if m % b else []):
                    if r not in ev:
                        ev.append(r)
        return train, ev

    def sample(self, name, rows):
        """The first rows of a set (the eval sizes come from the validation or the test set), laid out as
        the epochs' batches are (a shape- or stride-specializing compiler would otherwise compile again):
        train batches are gathered copies (x[permutation slice]), eval batches slices, full batch the set."""
        if name == "eval":
            for s in ("val", "test"):
                if self.sets[s] is not None and len(self.sets[s][0]) >= rows:
                    name = s
                    break
        x, y = self.sets[name]
        if name == "train" and self.batch:
            idx = np.arange(rows)
            return x[idx], y[idx]
        if name == "train":
            return x, y
        return x[:rows], y[:rows]

    def set_compile(self, seconds, how, noise=None):
        self.compile_seconds, self.compile_how, self.compile_noise = seconds, how, noise

    # Rounds of execution-only calls after the first round: their median is what the first round's
    # execution cost, their spread how far a difference of two rounds can be trusted.
    LATER_ROUNDS = 3

    def warm_up(self, step, evaluate, save, restore, sync=lambda: None):
        """Compile (trace, JIT) before the first epoch, timed apart from it: for every batch size the run
        will use (batch_sizes, in that order) one call of the train step, then of the evaluation, on the
        first rows of the data; then LATER_ROUNDS more rounds of the same calls. A first call = tracing +
        compiling + one execution, a later call = one execution, so compile seconds = Σ first − the
        median of the later rounds' Σ; the later rounds' spread (max − min) is reported as the
        estimate's noise. save() is called before and restore(saved) after, so that the timed epochs
        start from the initial parameters and optimizer state."""
        train, ev = self.batch_sizes()
        calls = [(step, self.sample("train", r)) for r in train] + [(evaluate, self.sample("eval", r)) for r in ev]
        saved = save()
        rounds = []
        for _ in range(1 + self.LATER_ROUNDS):
            secs = 0.0
            for fn, (x, y) in calls:
                t = time.perf_counter()
                fn(x, y)
                sync()
                secs += time.perf_counter() - t
            rounds.append(secs)
        restore(saved)
        sync()
        later = rounds[1:]
        self.set_compile(max(0.0, rounds[0] - statistics.median(later)),
                         "measured: first calls minus the median of %d later rounds, train batch sizes %s, eval %s "
                         "(first %.3f s, later %s s)" % (len(later), train, ev, rounds[0],
                                                         " ".join("%.3f" % r for r in later)),
                         noise=max(later) - min(later))

    def run(self, step, evaluate, sync=lambda: None, framework="", version="", extra=None):
        xtr, ytr = self.sets["train"]
        n = len(xtr)
        b = self.batch or n
        epochs = []
        first_step = None
        for e in range(self.args.epochs):
            t0 = time.perf_counter()
            order = self.rng.permutation(n) if self.batch else None
            for i in range(0, n, b):
                if order is None:
                    step(xtr, ytr)
                else:
                    idx = order[i:i + b]
                    step(xtr[idx], ytr[idx])
                if first_step is None:
                    sync()
                    first_step = time.perf_counter() - t0
            sync()
            m = {"epoch": e + 1}
            if self.sets["val"] is not None:
                m["val_loss"], m["val_acc"] = self.eval_set(evaluate, *self.sets["val"])
            m["test_loss"], m["test_acc"] = self.eval_set(evaluate, *self.sets["test"])
            m["seconds"] = time.perf_counter() - t0
            epochs.append(m)
            print("%s %s %s epoch %d: %.3f s, test acc %.4f" % (framework, self.args.mode, self.args.workload,
                                                                e + 1, m["seconds"], m["test_acc"]), flush=True)
        result = {"framework": framework, "mode": self.args.mode, "version": version,
                  "workload": self.args.workload, "train_size": n, "batch": self.batch or n,
                  "threads": self.args.threads, "first_step_seconds": first_step,
                  "load_seconds": self.load_seconds, "epochs": epochs}
        if getattr(self, "compile_seconds", None) is not None:
            result["compile_seconds"] = self.compile_seconds
            result["compile_measured"] = True
            result["compile_how"] = self.compile_how
            if self.compile_noise is not None:
                result["compile_noise_seconds"] = self.compile_noise
        result.update(extra or {})
        with open(self.args.out, "w") as f:
            json.dump(result, f, indent=1)
        return result
