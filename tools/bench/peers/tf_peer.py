"""TensorFlow 2 peer. --mode function (tf.function graphs) | xla (tf.function(jit_compile=True)).
Tracing and compiling are timed before the first epoch (common.Runner.warm_up)."""
import os

import common

args = common.parse_args()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

run = common.Runner(args)
model = run.model
p0 = common.init_params(model, args.base)
if args.mode not in ("function", "xla"):
    raise SystemExit("unknown mode " + args.mode)
jit = args.mode == "xla"

if model == "mlp":
    P = {k: tf.Variable(v, name=k) for k, v in p0.items()}
    trainable = list(P.values())

    def logits(x):
        return tf.matmul(tf.nn.relu(tf.matmul(x, P["w1"]) + P["b1"]), P["w2"]) + P["b2"]

    def loss_of(out, y):  # kiln's mse (sum over classes, mean over batch)
        return tf.reduce_mean(tf.reduce_sum(tf.square(out - y), axis=1))

    def penalty():
        return common.L2 * (tf.reduce_sum(tf.square(P["w1"])) + tf.reduce_sum(tf.square(P["w2"])))

    def correct_of(out, y):
        return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, 1), tf.argmax(y, 1)), tf.float32))
else:
    P = {k: tf.Variable(v, name=k.replace("/", "_"), trainable=(model == "cnn" or k.startswith("head/")))
         for k, v in p0.items()}
    trainable = [v for v in P.values() if v.trainable]

    def logits(x):  # NHWC, TF's native CPU layout
        for name, _, _ in common.CNN_LAYERS:
            x = tf.nn.relu(tf.nn.conv2d(x, P[name + "/kernel"], 1, "VALID") + P[name + "/bias"])
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf.reshape(x, [-1, 64])
        head = "dense" if model == "cnn" else "head"
        return tf.matmul(x, P[head + "/kernel"]) + P[head + "/bias"]

    def penalty():
        return 0.0

    if model == "cnn":
        def loss_of(out, y):
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out))

        def correct_of(out, y):
            return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, 1, output_type=tf.int32), y), tf.float32))
    else:
        def loss_of(out, y):
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=out))

        def correct_of(out, y):
            return tf.reduce_sum(tf.cast(tf.equal(out > 0, y > 0.5), tf.float32))

if run.opt == "adam":  # Keras Adam, written out (kiln's "adam" is Keras')
    M = [tf.Variable(tf.zeros_like(v)) for v in trainable]
    V = [tf.Variable(tf.zeros_like(v)) for v in trainable]
    T = tf.Variable(0.0)


def apply(grads):
    if run.opt == "gd":
        for v, g in zip(trainable, grads):
            v.assign_sub(run.lr * g)
        return
    T.assign_add(1.0)
    lr_t = run.lr * tf.sqrt(1.0 - tf.pow(0.999, T)) / (1.0 - tf.pow(0.9, T))
    for v, g, m, s in zip(trainable, grads, M, V):
        m.assign_add((g - m) * 0.1)
        s.assign_add((tf.square(g) - s) * 0.001)
        v.assign_sub(lr_t * m / (tf.sqrt(s) + 1e-7))


# reduce_retracing: the last partial batch gets a second trace, not one per size.
@tf.function(jit_compile=jit, reduce_retracing=True)
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_of(logits(x), y) + penalty()
    apply(tape.gradient(loss, trainable))
    return loss


@tf.function(jit_compile=jit, reduce_retracing=True)
def eval_step(x, y):
    out = logits(x)
    return loss_of(out, y) + penalty(), correct_of(out, y)


def step(x, y):
    train_step(x, y)


def evaluate(x, y):
    loss, c = eval_step(x, y)
    return float(loss) * len(x), float(c)


# Trace + compile (XLA with jit_compile) every batch size before the first epoch, timed (common.warm_up);
# the warm-up steps' updates are undone: every variable (parameters, Adam's m, v, t) is restored.
state_vars = list(P.values()) + (M + V + [T] if run.opt == "adam" else [])
run.warm_up(step, evaluate, save=lambda: [v.numpy() for v in state_vars],
            restore=lambda saved: [v.assign(a) for v, a in zip(state_vars, saved)])
run.run(step, evaluate, framework="tensorflow", version=tf.__version__)
