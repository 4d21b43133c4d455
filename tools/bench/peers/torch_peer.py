"""PyTorch peer. --mode eager | compile (torch.compile of the loss/forward and of the optimizer step).
Compiling (and eager's first-call overheads) is timed before the first epoch (common.Runner.warm_up)."""
import os

import numpy as np

import common

args = common.parse_args()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)
torch.manual_seed(1)

run = common.Runner(args)
model = run.model
p0 = common.init_params(model, args.base)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


if model == "mlp":
    P = {k: t(v).requires_grad_() for k, v in p0.items()}

    def logits(x):
        return torch.relu(x @ P["w1"] + P["b1"]) @ P["w2"] + P["b2"]

    def loss_fn(x, y):  # kiln's mse (sum over classes, mean over batch) + l2_penalty
        out = logits(x)
        return ((out - y) ** 2).sum(1).mean() + common.L2 * (P["w1"].square().sum() + P["w2"].square().sum()), out

    def correct_of(out, y):
        return (out.argmax(1) == y.argmax(1)).sum()
else:
    # NCHW, torch's native layout: kernels HWIO -> OIHW, images NHWC -> NCHW (once, before timing).
    trainable = model == "cnn"
    P = {}
    for k, v in p0.items():
        a = t(v.transpose(3, 2, 0, 1)) if k.endswith("kernel") and v.ndim == 4 else t(v)
        P[k] = a.requires_grad_(trainable or k.startswith("head/"))
    for name in ("train", "val", "test"):
        x, y = run.sets[name]
        run.sets[name] = (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64) if model == "cnn" else y)

    def logits(x):
        for name, _, _ in common.CNN_LAYERS:
            x = F.max_pool2d(torch.relu(F.conv2d(x, P[name + "/kernel"], P[name + "/bias"])), 2)
        x = x.flatten(1)
        head = "dense" if model == "cnn" else "head"
        return x @ P[head + "/kernel"] + P[head + "/bias"]

    if model == "cnn":
        def loss_fn(x, y):
            out = logits(x)
            return F.cross_entropy(out, y), out

        def correct_of(out, y):
            return (out.argmax(1) == y).sum()
    else:
        def loss_fn(x, y):
            out = logits(x)
            return F.binary_cross_entropy_with_logits(out, y), out

        def correct_of(out, y):
            return ((out > 0) == (y > 0.5)).sum()

params = [p for p in P.values() if p.requires_grad]
if run.opt == "gd":
    opt = torch.optim.SGD(params, lr=run.lr)
else:  # Keras-default Adam, as kiln's
    opt = torch.optim.Adam(params, lr=run.lr, betas=(0.9, 0.999), eps=1e-7)

if args.mode == "compile":
    loss_c = torch.compile(loss_fn)

    @torch.compile(fullgraph=False)
    def opt_step():
        opt.step()

    @torch.compile
    def eval_c(x, y):
        loss, out = loss_fn(x, y)
        return loss, correct_of(out, y)
elif args.mode == "eager":
    loss_c = loss_fn

    def opt_step():
        opt.step()

    def eval_c(x, y):
        loss, out = loss_fn(x, y)
        return loss, correct_of(out, y)
else:
    raise SystemExit("unknown mode " + args.mode)


def step(x, y):
    for p in params:
        p.grad = None
    loss, _ = loss_c(t(x), t(y))
    loss.backward()
    opt_step()


def evaluate(x, y):
    with torch.no_grad():
        loss, c = eval_c(t(x), t(y))
    return float(loss) * len(x), float(c)


# Compile (torch.compile: Dynamo + Inductor, forward, backward and the optimizer step; eager: first-call
# overheads) for every batch size before the first epoch, timed (common.warm_up). The warm-up steps'
# updates are undone: parameters restored in place, the optimizer's state (Adam's exp_avg, exp_avg_sq,
# step; none for plain SGD) zeroed in place, which is what a fresh Adam starts from.
assert run.opt == "gd" or isinstance(opt, torch.optim.Adam)


def save():
    return [p.detach().clone() for p in params]


def restore(saved):
    with torch.no_grad():
        for p, a in zip(params, saved):
            p.copy_(a)
            p.grad = None
        for st in opt.state.values():
            for v in st.values():
                if torch.is_tensor(v):
                    v.zero_()


run.warm_up(step, evaluate, save, restore)
run.run(step, evaluate, framework="torch", version=torch.__version__,
        extra={"threads_set": torch.get_num_threads()})
