#!/usr/bin/env python3
"""PyTorch -> ONNX -> kiln, for the zoo's architectures.

For each model (PyTorch versions of graphs/zoo: lenet5, resnet20,
mobilenet_small, char_gpt; random weights, inference mode):
  1. export to ONNX (opset 17, dynamic batch: the first dimension symbolic),
  2. kiln import it,
  3. run a batch through kiln's JIT (kiln run --jit) and compare with PyTorch:
     max |kiln - torch| <= 1e-4 (after a softmax, so the logits' scale does not hide errors).
With --gradcheck: kiln gradcheck on the imported resnet20 and char_gpt, made
trainable by kiln import --loss (the f64 interpreter against autodiff).
With --train: the exported lenet5 imported trainable (kiln import --loss
--nhwc-input) is trained by kiln train for one epoch on MNIST from its
PyTorch weights, next to the kiln-authored graphs/zoo/lenet5.json with the
same spec; their test accuracies must agree within 1 point.

Needs torch and onnx (the bench venv: tools/bench/peers/requirements.txt, or
any venv with torch 2.5 and onnx); not run by CI (no torch there).

  python3 tools/bench/onnx_roundtrip.py [--kiln build/tools/kiln] [--out DIR] [--only lenet5] [--train]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LeNet5(nn.Module):  # graphs/zoo/lenet5.json
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.f5, self.f6, self.f7 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        x = x.flatten(1)
        return self.f7(torch.tanh(self.f6(torch.tanh(self.f5(x)))))


class Block(nn.Module):  # ResNet basic block, option A shortcut (subsample, zero channels)
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(y + s)


class ResNet20(nn.Module):  # graphs/zoo/resnet20.json
    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3)))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expand, stride):
        super().__init__()
        mid = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6()]
        layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetSmall(nn.Module):  # graphs/zoo/mobilenet_small.json (its shape)
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.body = nn.Sequential(InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 4, 2), InvertedResidual(24, 24, 4, 1),
                                  InvertedResidual(24, 32, 4, 2), InvertedResidual(32, 32, 4, 1), InvertedResidual(32, 64, 4, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.body(self.stem(x)).mean((2, 3)))


class CausalSelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape  # exported as Shape/Gather: the batch is the symbolic dimension
        q, k, v = self.qkv(x).split(d, dim=2)
        h = self.heads
        q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (d // h) ** 0.5
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, t, d))


class CharGPT(nn.Module):  # graphs/zoo/char_gpt.json (2 blocks, context 32 here)
    def __init__(self, d=64, heads=4, blocks=2, context=32):
        super().__init__()
        self.tok, self.pos = nn.Embedding(256, d), nn.Parameter(torch.randn(context, d) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(blocks):
            self.blocks.append(nn.ModuleDict({"ln1": nn.LayerNorm(d), "attn": CausalSelfAttention(d, heads), "ln2": nn.LayerNorm(d),
                                              "up": nn.Linear(d, 4 * d), "down": nn.Linear(4 * d, d)}))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, 256)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos
        for blk in self.blocks:
            x = x + blk["attn"](blk["ln1"](x))
            x = x + blk["down"](F.gelu(blk["up"](blk["ln2"](x))))
        return self.head(self.ln(x))


MODELS = {
    "lenet5": (LeNet5, lambda n: torch.rand(n, 1, 28, 28)),
    "resnet20": (ResNet20, lambda n: torch.rand(n, 3, 32, 32)),
    "mobilenet_small": (MobileNetSmall, lambda n: torch.rand(n, 3, 32, 32)),
    "char_gpt": (CharGPT, lambda n: torch.randint(0, 256, (n, 32))),
}


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def roundtrip(name, kiln, out):
    torch.manual_seed(0)
    cls, example = MODELS[name]
    model = cls().eval()
    for m in model.modules():  # non-trivial running statistics, so batch norm is really checked
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    x = example(8)
    path = os.path.join(out, name + ".onnx")
    torch.onnx.export(model, (x,), path, opset_version=17, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    run([kiln, "import", path, "-o", out])
    xin = os.path.join(out, name + "_x.npy")
    np.save(xin, x.numpy().astype(np.int32) if x.dtype == torch.int64 else x.numpy())
    got_dir = os.path.join(out, name + "_kiln")
    t0 = time.time()
    run([kiln, "run", os.path.join(out, name + ".json"), "--jit", "--params", os.path.join(out, name + ".params"),
         "--input", "x=" + xin, "-o", got_dir])
    seconds = time.time() - t0
    got = np.load(os.path.join(got_dir, "logits.npy"))
    with torch.no_grad():
        want = model(x).numpy()
    err = float(np.abs(got - want).max())
    prob_err = float(np.abs(torch.softmax(torch.from_numpy(got), -1).numpy() - torch.softmax(torch.from_numpy(want), -1).numpy()).max())
    ok = prob_err <= 1e-4
    print(f"{name:16s} logits {list(want.shape)}  max|kiln - torch| {err:.2e} (probabilities {prob_err:.2e})  "
          f"{'ok' if ok else 'MISMATCH'}  (import + compile + run {seconds:.1f} s)")
    return ok


def train_lenet5(kiln, out, epochs):
    torch.manual_seed(0)
    path = os.path.join(out, "lenet5_train.onnx")
    torch.onnx.export(LeNet5().eval(), (torch.rand(4, 1, 28, 28),), path, opset_version=17, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    run([kiln, "import", path, "-o", out, "--loss", "sparse_softmax_cross_entropy", "--nhwc-input"])
    results = {}
    for label, graph, init in (("imported", os.path.join(out, "lenet5_train.json"), os.path.join(out, "lenet5_train.ckpt")),
                               ("kiln-authored", os.path.join(ROOT, "graphs/zoo/lenet5.json"), None)):
        spec = {"format": "kiln.train/1", "name": "lenet5_" + label.replace("-", "_"), "graph": graph,
                "data": {"set": "mnist", "dir": os.path.join(ROOT, "data/mnist")},
                "preprocessing": {"images": "scale255", "labels": "sparse"}, "batch_size": 32, "epochs": epochs,
                "optimizer": {"kind": "adam", "lr": 0.001}, "seed": 1, "metrics": ["loss", "accuracy"]}
        if init:
            spec["init_from"] = init
        spec_path = os.path.join(out, spec["name"] + ".json")
        with open(spec_path, "w") as f:
            json.dump(spec, f, indent=1)
        run_dir = os.path.join(out, "runs", spec["name"])
        run([kiln, "train", graph, spec_path, "--out", run_dir])
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        results[label] = metrics
    a, b = results["imported"][-1]["test_acc"], results["kiln-authored"][-1]["test_acc"]  # metrics.json: one row an epoch
    ok = abs(a - b) <= 0.01
    print(f"lenet5 trained {epochs} epoch(s) on MNIST: imported from PyTorch {a:.4f}, kiln-authored {b:.4f}: "
          f"{'within 1 point' if ok else 'MORE THAN 1 POINT APART'}")
    return ok


class FlatLogits(nn.Module):  # [N, T, 256] -> [N*T, 256] for a per-character loss (static batch)
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, t):
        return self.inner(t).reshape(-1, 256)


def gradcheck(kiln, out):
    """kiln gradcheck on imported ResNet-style and transformer-style twins, made
    trainable by kiln import --loss (batch norm kept as BatchNormalization nodes)."""
    ok = True
    torch.manual_seed(0)
    for name, model, x, kw, extra in (
            ("resnet20", ResNet20().eval(), torch.rand(2, 3, 32, 32), {"dynamic_axes": {"x": {0: "N"}, "logits": {0: "N"}}}, ["--nhwc-input"]),
            ("char_gpt", FlatLogits(CharGPT()).eval(), torch.randint(0, 256, (2, 32)), {}, [])):
        path = os.path.join(out, name + "_gc.onnx")
        torch.onnx.export(model, (x,), path, opset_version=17, input_names=["x"], output_names=["logits"],
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE, **kw)
        run([kiln, "import", path, "-o", out, "--loss", "sparse_softmax_cross_entropy"] + extra)
        t0 = time.time()
        r = subprocess.run([kiln, "gradcheck", os.path.join(out, name + "_gc.json"), "--samples", "2", "--batch", "2"],
                           capture_output=True, text=True)
        passed = r.returncode == 0 and r.stdout.rstrip().endswith("PASS")
        print(f"{name:16s} kiln gradcheck of the imported model: {'PASS' if passed else 'FAIL'} ({time.time() - t0:.0f} s)")
        if not passed:
            print(r.stdout[-2000:], r.stderr[-2000:])
        ok = ok and passed
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build/tools/kiln"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build/onnx-roundtrip"))
    ap.add_argument("--only", action="append", choices=sorted(MODELS))
    ap.add_argument("--train", action="store_true", help="also train the imported lenet5 next to the kiln-authored one")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--gradcheck", action="store_true", help="also kiln gradcheck imported ResNet-style and transformer-style twins")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}; kiln {a.kiln}")
    ok = all([roundtrip(m, a.kiln, a.out) for m in (a.only or MODELS)])
    if a.train:
        ok = train_lenet5(a.kiln, a.out, a.epochs) and ok
    if a.gradcheck:
        ok = gradcheck(a.kiln, a.out) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
