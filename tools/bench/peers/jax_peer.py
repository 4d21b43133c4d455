"""JAX peer. --mode jit (jax.jit of the whole train step, params and optimizer state donated),
compiled ahead of time (timed) for each batch size before the first epoch."""
import os
import time

import common

args = common.parse_args()
# XLA's CPU client: intra-op threads pinned like everyone else's (run.py also sets taskset-free env).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=%d" % args.threads)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_platforms", "cpu")

run = common.Runner(args)
model = run.model
p0 = common.init_params(model, args.base)
if args.mode != "jit":
    raise SystemExit("unknown mode " + args.mode)

if model == "mlp":
    train_keys = list(p0)

    def logits(p, x):
        return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss_of(p, out, y):  # kiln's mse (sum over classes, mean over batch) + l2_penalty
        return jnp.mean(jnp.sum(jnp.square(out - y), axis=1)) + common.L2 * (
            jnp.sum(jnp.square(p["w1"])) + jnp.sum(jnp.square(p["w2"])))

    def correct_of(out, y):
        return jnp.sum(jnp.argmax(out, 1) == jnp.argmax(y, 1))
else:
    train_keys = [k for k in p0 if model == "cnn" or k.startswith("head/")]

    def logits(p, x):  # NHWC / HWIO
        for name, _, _ in common.CNN_LAYERS:
            x = jax.lax.conv_general_dilated(x, p[name + "/kernel"], (1, 1), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            x = jax.nn.relu(x + p[name + "/bias"])
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = x.reshape(x.shape[0], -1)
        head = "dense" if model == "cnn" else "head"
        return x @ p[head + "/kernel"] + p[head + "/bias"]

    if model == "cnn":
        def loss_of(p, out, y):
            logp = jax.nn.log_softmax(out)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        def correct_of(out, y):
            return jnp.sum(jnp.argmax(out, 1) == y)
    else:
        def loss_of(p, out, y):
            return jnp.mean(jnp.maximum(out, 0) - out * y + jnp.log1p(jnp.exp(-jnp.abs(out))))

        def correct_of(out, y):
            return jnp.sum((out > 0) == (y > 0.5))

params = {k: jnp.asarray(v) for k, v in p0.items() if k in train_keys}
frozen = {k: jnp.asarray(v) for k, v in p0.items() if k not in train_keys}
if run.opt == "adam":
    state = {"m": jax.tree_util.tree_map(jnp.zeros_like, params),
             "v": jax.tree_util.tree_map(jnp.zeros_like, params), "t": jnp.zeros((), jnp.float32)}
else:
    state = {}


def loss_fn(tp, fp, x, y):
    p = {**fp, **tp}
    return loss_of(p, logits(p, x), y)


def train_step(tp, st, fp, x, y):
    loss, g = jax.value_and_grad(loss_fn)(tp, fp, x, y)
    if run.opt == "gd":
        return jax.tree_util.tree_map(lambda a, b: a - run.lr * b, tp, g), st, loss
    t = st["t"] + 1
    m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * 0.1, st["m"], g)
    v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * 0.001, st["v"], g)
    lr_t = run.lr * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    tp = jax.tree_util.tree_map(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + 1e-7), tp, m, v)
    return tp, {"m": m, "v": v, "t": t}, loss


train_jit = jax.jit(train_step, donate_argnums=(0, 1))


@jax.jit
def eval_jit(tp, fp, x, y):
    p = {**fp, **tp}
    out = logits(p, x)
    return loss_of(p, out, y), correct_of(out, y)


# Compile ahead of time, timed: jit(f).lower(example args).compile() for every batch size the epochs
# use (full batches and the remainders); the epochs then call these executables, so nothing compiles
# inside them and nothing compiles twice (an executable accepts only its own shapes).
def spec(a, rows):
    return jax.ShapeDtypeStruct((rows,) + a.shape[1:], a.dtype)


train_sizes, eval_sizes = run.batch_sizes()
xtr, ytr = run.sets["train"]
t0 = time.perf_counter()
train_exe = {r: train_jit.lower(params, state, frozen, spec(xtr, r), spec(ytr, r)).compile() for r in train_sizes}
eval_exe = {}
for r in eval_sizes:
    xe, ye = run.sample("eval", r)
    eval_exe[r] = eval_jit.lower(params, frozen, spec(xe, r), spec(ye, r)).compile()
run.set_compile(time.perf_counter() - t0, "measured: jax.jit(...).lower(...).compile() of the train step for "
                "batch sizes %s and of the eval step for %s" % (train_sizes, eval_sizes))


def step(x, y):
    global params, state
    params, state, _ = train_exe[len(x)](params, state, frozen, x, y)


def evaluate(x, y):
    loss, c = eval_exe[len(x)](params, frozen, x, y)
    return float(loss) * len(x), float(c)


def sync():
    jax.block_until_ready(params)


run.run(step, evaluate, sync, framework="jax", version=jax.__version__)
