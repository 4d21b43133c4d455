"""The benchmark's data, read with numpy alone from the files kiln reads.

Every peer gets exactly the arrays kiln trains on: the same preprocessing
(runtime/data/preprocess.cpp), the same CIFAR-10 pixel order (HWC, as
runtime/data/cifar.cpp interleaves the planes), and the same validation split
and subsets (runtime/data/shuffle.cpp: Fisher-Yates over std::mt19937_64,
reproduced here bit for bit).
"""
import gzip
import os
import struct

try:
    import numpy as np
except ImportError:  # the self-test checks the pure-Python parts without numpy
    np = None

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DATA = os.environ.get("KILN_BENCH_DATA", os.path.join(REPO, "data"))


# ---------------------------------------------------------------- randomness
class MT19937_64:
    """std::mt19937_64, as the C++ standard defines it."""

    def __init__(self, seed):
        m = (1 << 64) - 1
        self.mt = [0] * 312
        self.mt[0] = seed & m
        for i in range(1, 312):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & m
        self.i = 312

    def _twist(self):
        mt, m = self.mt, (1 << 64) - 1
        upper, lower = 0xFFFFFFFF80000000, 0x7FFFFFFF
        for k in range(312):
            y = (mt[k] & upper) | (mt[(k + 1) % 312] & lower)
            v = mt[(k + 156) % 312] ^ (y >> 1)
            if y & 1:
                v ^= 0xB5026F5AA96619E9
            mt[k] = v & m
        self.i = 0

    def __call__(self):
        if self.i >= 312:
            self._twist()
        y = self.mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & ((1 << 64) - 1)


def seeded_permutation(n, seed):
    """kiln::data::seeded_permutation."""
    p = list(range(n))
    rng = MT19937_64(seed)
    for i in range(n - 1, 0, -1):
        bound = i + 1
        threshold = ((1 << 64) - bound) % bound
        while True:
            r = rng()
            if r >= threshold:
                break
        j = r % bound
        p[i], p[j] = p[j], p[i]
    return np.array(p, dtype=np.int64) if np is not None else p


def subset_random(x, y, k, seed):
    if not k or k >= len(x):
        return x, y
    p = np.sort(seeded_permutation(len(x), seed)[:k])
    return x[p], y[p]


def split_validation(x, y, k, seed):
    p = seeded_permutation(len(x), seed)
    val, train = np.sort(p[:k]), np.sort(p[k:])
    return (x[train], y[train]), (x[val], y[val])


# ---------------------------------------------------------------- raw files
def load_cifar10(split):
    d = os.path.join(DATA, "cifar10", "cifar-10-batches-bin")
    files = ["test_batch.bin"] if split == "test" else ["data_batch_%d.bin" % i for i in range(1, 6)]
    recs = np.concatenate([np.fromfile(os.path.join(d, f), dtype=np.uint8).reshape(-1, 3073) for f in files])
    labels = recs[:, 0].astype(np.int32)
    images = recs[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW planes -> HWC
    return np.ascontiguousarray(images), labels


def _idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    magic, = struct.unpack(">I", b[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), b[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load_mnist(split):
    d = os.path.join(DATA, "mnist")
    pre = "t10k" if split == "test" else "train"
    images = _idx(os.path.join(d, pre + "-images-idx3-ubyte.gz")).reshape(-1, 28, 28, 1)
    labels = _idx(os.path.join(d, pre + "-labels-idx1-ubyte.gz")).astype(np.int32)
    return images, labels


# ---------------------------------------------------------------- preprocessing
def standardize(images):
    """kiln::data::per_image_standardize: (x - mean) / max(std, 1/sqrt(D)), flattened.
    In chunks, so that the float64 temporaries do not set the peers' peak RSS."""
    flat = images.reshape(len(images), -1)
    d = flat.shape[1]
    out = np.empty(flat.shape, dtype=np.float32)
    for i in range(0, len(flat), 1000):
        x = flat[i:i + 1000].astype(np.float64)
        mean = x.mean(axis=1, keepdims=True)
        std = np.maximum(x.std(axis=1, keepdims=True), 1.0 / np.sqrt(d))
        out[i:i + 1000] = (x - mean) / std
    return out


def scale255(images):
    return (images.astype(np.float32) / np.float32(255.0))


def onehot(labels, classes=10):
    out = np.zeros((len(labels), classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


# ---------------------------------------------------------------- workloads
def load(workload, subset=0, test_subset=0):
    """Arrays for one workload: dict with train/val/test (x, y) pairs.

    mlp: x f32[N,3072] standardized, y f32[N,10] one-hot.
    cnn: x f32[N,28,28,1] in [0,1], y i32[N] digits.
    transfer: as cnn, y f32[N,1] (digit >= 5).
    """
    seed = 1  # the specs' seed and validation seed
    if workload.startswith("mlp"):
        (xtr, ytr), (xte, yte) = load_cifar10("train"), load_cifar10("test")
        # Per-image preprocessing commutes with taking rows: subset first.
        xtr, ytr = subset_random(xtr, ytr, subset, seed)
        xte, yte = subset_random(xte, yte, test_subset, seed)
        return {"train": (standardize(xtr), onehot(ytr)), "val": None, "test": (standardize(xte), onehot(yte))}
    (xtr, ytr), (xte, yte) = load_mnist("train"), load_mnist("test")
    if workload.startswith("transfer"):
        lab = lambda y: (y >= 5).astype(np.float32).reshape(-1, 1)
    else:
        lab = lambda y: y
    (tx, ty), (vx, vy) = split_validation(scale255(xtr), lab(ytr), 7500, seed)
    return {
        "train": subset_random(tx, ty, subset, seed),
        "val": subset_random(vx, vy, test_subset, seed),
        "test": subset_random(scale255(xte), lab(yte), test_subset, seed),
    }


# ---------------------------------------------------------------- kiln checkpoints
def read_kiln_checkpoint(path):
    """Parameters of a kiln checkpoint (runtime/train/CHECKPOINT.md): {name: array}."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != b"KILNCKPT":
        raise ValueError(path + ": not a kiln checkpoint")
    pos = 16
    def u(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]
    def string():
        nonlocal pos
        n = u("Q")
        s = b[pos:pos + n]
        pos += n
        return s
    string()  # graph
    string()  # spec
    dtypes = {0: np.float32, 1: np.float64, 2: np.int32, 3: np.int64, 4: np.uint8, 5: np.bool_}
    params = {}
    for _ in range(u("I")):
        name = string().decode()
        dt, rank = u("B"), u("B")
        shape = [u("q") for _ in range(rank)]
        n = u("Q")
        params[name] = np.frombuffer(b[pos:pos + n], dtype=dtypes[dt]).reshape(shape).copy()
        pos += n
    return params
