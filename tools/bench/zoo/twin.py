#!/usr/bin/env python3
"""PyTorch twins of kiln's four zoo training runs (see README.md here).

  twin.py --model {lenet5,resnet20,mobilenet_small,char_gpt} --out FILE.json
          [--data DIR] [--seed 1] [--threads 2] [--quick] [--epochs N] [--steps N]
          [--train-subset N] [--test-subset N]

Progress goes to stderr (a line an epoch, or every 100 steps); FILE.json gets
the recipe, per-epoch / per-evaluation metrics, the per-step log and timings.
Only torch, numpy and the standard library.
"""
import argparse
import datetime
import json
import math
import os
import random
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as zdata  # noqa: E402
import models  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from host import cpu_model  # noqa: E402  (tools/bench/host.py)

IMAGE_RECIPES = {
    "lenet5": {"dataset": "fashion-mnist", "preprocessing": "x / 255, no normalization", "augmentation": "none",
               "batch_size": 32, "epochs": 10, "shuffle": "every epoch, last partial batch kept",
               "optimizer": {"kind": "adam (AdamW with weight_decay 0)", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                             "weight_decay": 0.0},
               "schedule": "constant", "loss": "mean sparse softmax cross-entropy"},
    "resnet20": {"dataset": "cifar10",
                 "preprocessing": "x / 255, per-channel normalization mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)",
                 "augmentation": "random crop 32 from the image zero-padded by 4 (pixel space) + horizontal flip p 0.5",
                 "batch_size": 128, "epochs": 30, "shuffle": "every epoch, last partial batch kept",
                 "optimizer": {"kind": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                               "weight_decay_mode": "coupled (PyTorch SGD), every param"},
                 "schedule": {"kind": "one_cycle (torch OneCycleLR), stepped every batch", "max_lr": 0.1, "pct_start": 0.3,
                              "anneal_strategy": "cos", "div_factor": 25.0, "final_div_factor": 1e4,
                              "cycle_momentum": True, "base_momentum": 0.85, "max_momentum": 0.95, "three_phase": False},
                 "loss": "mean sparse softmax cross-entropy"},
}
# MobileNet is small and underfits in 30 epochs (kiln, seed 1, dropout 0.2: train accuracy 0.875, test 0.849;
# 0.849 again with one-cycle to 0.2 and no decay on biases and batch-norm params, 0.840 with decay 1e-4):
# resnet20's recipe without the graph's dropout, as the kiln spec says ("dropout": 0.0).
IMAGE_RECIPES["mobilenet_small"] = dict(IMAGE_RECIPES["resnet20"], dropout=0.0)
GPT_RECIPE = {"dataset": "kjv (bytes)", "split": "train: first 90% of the bytes, validation: last 10%",
              "context": 128, "batch_size": 32, "steps": 3000,
              "sampling": "windows of 129 bytes at a uniformly random start in the train split",
              "optimizer": {"kind": "adamw", "lr": 3e-3, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1,
                            "decay": "params with dim >= 2 (kernels, embeddings, positions); 0 on biases and layer-norm params"},
              "schedule": {"kind": "SequentialLR(LinearLR(start_factor 0.01, end_factor 1, total_iters 100), "
                                   "CosineAnnealingLR(T_max steps - 100, eta_min 1e-4), milestones [100])",
                           "warmup_steps": 100, "eta_min": 1e-4},
              "grad_clip_global_norm": 1.0, "dropout": 0.0, "eval_every": 500,
              "val": "mean cross-entropy per character over all non-overlapping 128-byte windows of the validation "
                     "split (stride 128, targets shifted by one, incomplete last window dropped); bpc = loss / ln 2"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_lr(opt):
    return opt.param_groups[0]["lr"]


def image_sgd(model, recipe):
    """The CIFAR recipes' SGD (Nesterov, coupled weight decay on every param)."""
    o = recipe["optimizer"]
    return torch.optim.SGD(model.parameters(), lr=recipe["schedule"]["max_lr"], momentum=o["momentum"],
                           nesterov=o["nesterov"], weight_decay=o["weight_decay"])


def compiled(model, args):
    """--compile: the model through torch.compile (Inductor; forward and backward; the optimizer stays eager).
    It compiles on the first steps (and again for eval mode), inside the first epoch's time."""
    return torch.compile(model) if args.compile else model


# ------------------------------------------------------------------ image models
def subset(x, y, k, seed):
    """k examples drawn at random (seeded), kept in file order (the CIFAR-10 files here are sorted by class)."""
    if not k or k >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:k])
    return x[idx], y[idx]


def evaluate_images(model, x_test, y_test, batch=250):
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x_test), batch):
            logits = model(x_test[i:i + batch])
            y = y_test[i:i + batch]
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(x_test), correct / len(x_test)


def train_images(args, out):
    name = args.model
    recipe = json.loads(json.dumps(IMAGE_RECIPES[name]))
    epochs = args.epochs or (1 if args.quick else recipe["epochs"])
    train_n = args.train_subset or (2000 if args.quick else None)
    test_n = args.test_subset or (1000 if args.quick else None)
    bs = recipe["batch_size"]
    if name == "lenet5":
        xtr, ytr, xte, yte = zdata.fashion_mnist(args.data)
    else:
        xtr, ytr, xte, yte = zdata.cifar10(args.data)
    xtr, ytr = subset(xtr, ytr, train_n, args.seed)
    xte, yte = subset(xte, yte, test_n, args.seed + 1)
    n = len(xtr)
    steps_per_epoch = math.ceil(n / bs)
    total_steps = epochs * steps_per_epoch
    recipe.update(epochs=epochs, train_examples=n, test_examples=len(xte), steps_per_epoch=steps_per_epoch,
                  total_steps=total_steps)

    model = compiled(models.MODELS[name](**({"dropout": recipe["dropout"]} if "dropout" in recipe else {})), args)
    if name == "lenet5":
        xtr_t, augment = zdata.mnist_tensor(xtr), None
        xte_t = zdata.mnist_tensor(xte)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        sched = None
    else:
        augment = zdata.CifarAugment(args.seed)
        xte_t = zdata.cifar_normalize(xte)
        opt = image_sgd(model, recipe)
        s = recipe["schedule"]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=s["max_lr"], total_steps=total_steps, pct_start=s["pct_start"], anneal_strategy=s["anneal_strategy"],
            cycle_momentum=s["cycle_momentum"], base_momentum=s["base_momentum"], max_momentum=s["max_momentum"],
            div_factor=s["div_factor"], final_div_factor=s["final_div_factor"], three_phase=s["three_phase"])
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
    recipe["params"] = models.param_count(model)
    log(f"{name}: {recipe['params']:,} params, {n} train / {len(xte)} test examples, {epochs} epoch(s) of "
        f"{steps_per_epoch} steps, batch {bs}, {args.threads} thread(s)")

    log_every = 1 if total_steps <= 5000 else 10
    gen = torch.Generator().manual_seed(args.seed)
    step, epochs_out, steps_log = 0, [], []
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if augment is None:
                x = xtr_t[idx]
            else:
                x = augment(xtr[idx.numpy()])
            y = ytr_t[idx]
            lr = current_lr(opt)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            lv = float(loss)
            loss_sum += lv * len(idx)
            if step % log_every == 0:
                steps_log.append([step, lv, lr])
            step += 1
        seconds = time.perf_counter() - t0
        test_loss, test_acc = evaluate_images(model, xte_t, yte_t)
        row = {"epoch": epoch, "train_loss": loss_sum / n, "test_loss": test_loss, "test_accuracy": test_acc,
               "seconds": seconds}
        epochs_out.append(row)
        log(f"epoch {epoch}/{epochs}: train loss {row['train_loss']:.4f}, test loss {test_loss:.4f}, "
            f"test accuracy {test_acc:.4f}, {seconds:.1f} s (last step's lr {lr:.3g})")
    out.update(recipe=recipe, epochs=epochs_out, steps_log=steps_log, steps_log_every=log_every,
               final={"test_accuracy": epochs_out[-1]["test_accuracy"], "test_loss": epochs_out[-1]["test_loss"]},
               mean_epoch_seconds=sum(r["seconds"] for r in epochs_out) / len(epochs_out))


# ------------------------------------------------------------------ char_gpt
def gpt_optimizer(model, steps, warmup=100):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.99), eps=1e-8)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps - warmup, 1), eta_min=1e-4)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[warmup])
    return opt, sched, sum(p.numel() for p in decay), sum(p.numel() for p in no_decay)


def evaluate_text(model, windows, batch=64):
    model.eval()
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for tok, tgt in windows.val_batches(batch):
            logits = model(tok)
            loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum"))
            count += tgt.numel()
    model.train()
    return loss_sum / count


def train_gpt(args, out):
    recipe = json.loads(json.dumps(GPT_RECIPE))
    steps = args.steps or (40 if args.quick else recipe["steps"])
    val_windows = args.test_subset or (32 if args.quick else None)
    bs, ctx, every = recipe["batch_size"], recipe["context"], recipe["eval_every"]
    windows = zdata.TextWindows(zdata.kjv(args.data), ctx, args.seed, val_windows)
    model = compiled(models.CharGPT(context=ctx, dropout=recipe["dropout"]), args)
    opt, sched, n_decay, n_no_decay = gpt_optimizer(model, steps, recipe["schedule"]["warmup_steps"])
    recipe.update(steps=steps, train_bytes=len(windows.train), val_bytes=len(windows.val),
                  val_windows=windows.n_val_windows, params=models.param_count(model),
                  params_decayed=n_decay, params_not_decayed=n_no_decay)
    recipe["schedule"]["cosine_T_max"] = max(steps - 100, 1)
    log(f"char_gpt: {recipe['params']:,} params, {len(windows.train):,} train / {len(windows.val):,} val bytes "
        f"({windows.n_val_windows} val windows), {steps} steps of batch {bs}, {args.threads} thread(s)")

    model.train()
    steps_log, evals, block_seconds, recent = [], [], [], []
    log_every = 1 if steps <= 5000 else 10
    block_t0, block_steps, t_start = time.perf_counter(), 0, time.perf_counter()
    for step in range(steps):
        tok, tgt = windows.train_batch(bs)
        lr = current_lr(opt)
        logits = model(tok)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        lv = float(loss)
        recent = (recent + [lv])[-100:]
        if step % log_every == 0:
            steps_log.append([step, lv, lr])
        done = step + 1
        block_steps += 1
        if block_steps == 100 or done == steps:
            sec = time.perf_counter() - block_t0
            block_seconds.append({"steps": block_steps, "seconds": sec})
            log(f"step {done}/{steps}: loss (last {len(recent)}) {sum(recent) / len(recent):.4f}, lr {lr:.3g}, "
                f"{sec:.1f} s for {block_steps} steps, {time.perf_counter() - t_start:.0f} s elapsed")
        if done % every == 0 or done == steps:
            val = evaluate_text(model, windows)
            evals.append({"step": done, "train_loss": sum(recent) / len(recent), "val_loss": val,
                          "val_bpc": val / math.log(2)})
            log(f"  eval at step {done}: val loss {val:.4f}, {val / math.log(2):.4f} bits per character")
        if block_steps == 100 or done == steps:  # evaluation is not in the block's time
            block_t0, block_steps = time.perf_counter(), 0
    full = [b["seconds"] for b in block_seconds if b["steps"] == 100]
    per100 = full or [b["seconds"] * 100 / b["steps"] for b in block_seconds]  # a short run: extrapolated
    out.update(recipe=recipe, evals=evals, steps_log=steps_log, steps_log_every=log_every,
               seconds_per_100_steps=per100, seconds_per_100_steps_extrapolated=not full, step_blocks=block_seconds,
               mean_seconds_per_100_steps=sum(per100) / len(per100),
               final={"val_bpc": evals[-1]["val_bpc"], "val_loss": evals[-1]["val_loss"]})


def main():
    ap = argparse.ArgumentParser(description="PyTorch twin of a kiln zoo training run")
    ap.add_argument("--model", required=True, choices=sorted(models.MODELS))
    ap.add_argument("--out", required=True, help="the results JSON")
    ap.add_argument("--data", default=os.path.join(zdata.REPO, "data"), help="data folder (default: data/ in the repo)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2,000 / 1,000 images and 1 epoch; char_gpt 40 steps")
    ap.add_argument("--epochs", type=int, help="image models: epochs (default: the recipe's)")
    ap.add_argument("--steps", type=int, help="char_gpt: steps (default 3000)")
    ap.add_argument("--train-subset", type=int, help="image models: N training examples (a seeded random subset)")
    ap.add_argument("--test-subset", type=int, help="image models: N test examples (a seeded random subset); char_gpt: the first N validation windows")
    ap.add_argument("--compile", action="store_true", help="run the model through torch.compile (a peer mode of the "
                    "speed harness, tools/bench/peers/zoo.py)")
    ap.add_argument("--print-lr", type=int, nargs="*", metavar="STEP",
                    help="print the schedule's lr at these steps (no training; with the run's --epochs/--steps/subset)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    if args.print_lr is not None:
        return print_lr(args)
    out = {"model": args.model, "framework": "pytorch", "mode": "compile" if args.compile else "eager",
           "torch_version": torch.__version__, "threads": args.threads,
           "seed": args.seed, "quick": args.quick,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "host_cpu": cpu_model()}
    t0 = time.perf_counter()
    (train_gpt if args.model == "char_gpt" else train_images)(args, out)
    out["total_seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = peak_rss_mb()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    log(f"wrote {args.out}: final {out['final']}, peak RSS {out['peak_rss_mb']:.0f} MB")


def print_lr(args):
    """The schedule alone, on a throwaway model: lr (and momentum or betas) at the given steps."""
    model = models.MODELS[args.model]()
    if args.model == "char_gpt":
        steps = args.steps or (40 if args.quick else GPT_RECIPE["steps"])
        opt, sched, _, _ = gpt_optimizer(model, steps)
    elif args.model == "lenet5":
        steps, sched = None, None
    else:
        n = args.train_subset or (2000 if args.quick else 50000)
        steps = (args.epochs or (1 if args.quick else 30)) * math.ceil(n / 128)
        recipe = IMAGE_RECIPES[args.model]
        opt = image_sgd(model, recipe)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["schedule"]["max_lr"], total_steps=steps)
    if sched is None:
        print(f"{args.model}: constant lr 1e-3")
        return
    want = set(s if s >= 0 else steps + s for s in (args.print_lr or [0, 100, 101, -1]))
    print(f"{args.model}: {steps} steps")
    for step in range(steps):
        if step in want:
            g = opt.param_groups[0]
            extra = f"momentum {g['momentum']:.6f}" if "momentum" in g else f"betas {g['betas']}"
            print(f"  step {step:6d}: lr {g['lr']:.9g}  {extra}")
        opt.step()
        sched.step()


if __name__ == "__main__":
    main()
