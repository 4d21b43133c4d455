"""The zoo's data, read with numpy from the raw files kiln reads.

  Fashion-MNIST: IDX gz files (60k train, 10k test), [N, 28, 28] uint8.
  CIFAR-10: the official binary batches (1 label byte + R, G, B 32x32 planes),
            kept as uint8 NHWC [N, 32, 32, 3] (kiln's pixel order).
  KJV: the gzip text, as bytes (byte-level vocabulary of 256).
"""
import gzip
import os

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def _first_existing(paths, what):
    for p in paths:
        if os.path.exists(p):
            return p
    raise SystemExit(f"{what} not found; looked in: " + ", ".join(paths))


def _idx(path, header):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, np.uint8, offset=header)


def fashion_mnist(data_dir):
    """(x_train [60000, 28, 28] uint8, y_train int64, x_test, y_test)."""
    d = _first_existing([os.path.join(data_dir, "fashion-mnist"), *FASHION_DIRS], "Fashion-MNIST")
    out = []
    for split in ("train", "t10k"):
        x = _idx(os.path.join(d, f"{split}-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28)
        y = _idx(os.path.join(d, f"{split}-labels-idx1-ubyte.gz"), 8).astype(np.int64)
        assert len(x) == len(y), (len(x), len(y))
        out += [x, y]
    return tuple(out)


def _cifar_files(paths):
    """The records of the files, in order: (uint8 [N, 32, 32, 3], int64 [N]), one file in memory at a time."""
    sizes = [os.path.getsize(p) // 3073 for p in paths]
    x, y, at = np.empty((sum(sizes), 32, 32, 3), np.uint8), np.empty(sum(sizes), np.int64), 0
    for p, n in zip(paths, sizes):
        rec = np.fromfile(p, np.uint8).reshape(-1, 3073)
        x[at:at + n] = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> HWC
        y[at:at + n] = rec[:, 0]
        at += n
    return x, y


def cifar10(data_dir):
    """(x_train [50000, 32, 32, 3] uint8, y_train int64, x_test, y_test)."""
    d = _first_existing([os.path.join(data_dir, "cifar10", "cifar-10-batches-bin"),
                         os.path.join(REPO, "data", "cifar10", "cifar-10-batches-bin")], "CIFAR-10 binary batches")
    x, y = _cifar_files([os.path.join(d, f"data_batch_{i}.bin") for i in range(1, 6)])
    xt, yt = _cifar_files([os.path.join(d, "test_batch.bin")])
    return x, y, xt, yt


def kjv(data_dir):
    """The KJV text as a uint8 array (4,298,239 bytes)."""
    p = _first_existing([os.path.join(data_dir, "text", "kjv.txt.gz"),
                         os.path.join(REPO, "data", "text", "kjv.txt.gz"),
                         os.path.join(REPO, "..", "shared", "data", "text", "kjv.txt.gz")], "kjv.txt.gz")
    with gzip.open(p, "rb") as f:
        return np.frombuffer(f.read(), np.uint8)


# ------------------------------------------------------------------ image batches
def mnist_tensor(x):
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28], x / 255 (no normalization)."""
    return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)


def cifar_normalize(x):
    """uint8 NHWC -> float NCHW: x / 255, then (x - mean) / std per channel."""
    f = (x.astype(np.float32) / 255.0 - CIFAR_MEAN) / CIFAR_STD
    return torch.from_numpy(np.ascontiguousarray(f.transpose(0, 3, 1, 2)))


class CifarAugment:
    """torchvision's RandomCrop(32, padding=4) (zero padding in pixel space, offsets
    uniform in 0..8) then RandomHorizontalFlip(0.5), then ToTensor and Normalize,
    for a whole batch at once: one gather from the zero-padded batch."""

    def __init__(self, seed, pad=4, size=32):
        self.rng = np.random.default_rng(seed)
        self.pad, self.size = pad, size
        self.ar = np.arange(size)

    def __call__(self, x):  # x uint8 [B, 32, 32, 3]
        b, p, s = len(x), self.pad, self.size
        padded = np.zeros((b, s + 2 * p, s + 2 * p, x.shape[3]), np.uint8)
        padded[:, p:p + s, p:p + s] = x
        dy = self.rng.integers(0, 2 * p + 1, b)
        dx = self.rng.integers(0, 2 * p + 1, b)
        flip = self.rng.random(b) < 0.5
        rows = dy[:, None] + self.ar[None, :]
        cols = dx[:, None] + np.where(flip[:, None], self.ar[::-1][None, :], self.ar[None, :])
        out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return cifar_normalize(out)


# ------------------------------------------------------------------ text
class TextWindows:
    """Train: random windows of context + 1 bytes (uniform start in the train split).
    Validation: all non-overlapping windows (stride context) of the validation split,
    targets shifted by one; a last window without its context + 1 bytes is dropped."""

    def __init__(self, text, context, seed, val_windows=None):
        n_train = int(len(text) * 0.9)
        self.train = torch.from_numpy(text[:n_train].astype(np.int64))
        self.val = torch.from_numpy(text[n_train:].astype(np.int64))
        self.context = context
        self.n_val_windows = (len(self.val) - 1) // context
        if val_windows:
            self.n_val_windows = min(self.n_val_windows, val_windows)
        self.gen = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(context + 1)

    def train_batch(self, batch):
        starts = torch.randint(0, len(self.train) - self.context, (batch,), generator=self.gen)
        w = self.train[starts[:, None] + self.offsets[None, :]]
        return w[:, :-1], w[:, 1:]

    def val_batches(self, batch):
        c = self.context
        for i in range(0, self.n_val_windows, batch):
            starts = torch.arange(i, min(i + batch, self.n_val_windows)) * c
            w = self.val[starts[:, None] + self.offsets[None, :]]
            yield w[:, :-1], w[:, 1:]
