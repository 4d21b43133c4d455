#!/usr/bin/env bash
# kiln against PyTorch (eager, torch.compile), TensorFlow (tf.function, XLA)
# and JAX (jit) on the seed experiments, in one run; prints the table and
# writes reports/bench/peers.{md,json}.
#
#   tools/bench/peers.sh [--quick] [--only mlp64,mlpfull,cnn32,transfer32] [--peers kiln,torch,tf,jax] ...
#   tools/bench/peers.sh zoo [--only lenet5,resnet20,mobilenet_small,char_gpt] [--peers kiln,eager,compile] ...
#   tools/bench/peers.sh inference [--models resnet18,mobilenet_v2] [--batches 1,32] ...
#   tools/bench/peers.sh all      (the three in turn, each with its defaults)
#
# zoo: the zoo's training steps against the PyTorch twins (tools/bench/peers/zoo.py);
# inference: latency against onnxruntime and PyTorch eager on torchvision
# models imported from ONNX (tools/bench/peers/inference.py).
#
# The first run on a machine builds a Python environment outside the
# repository (${KILN_BENCH_VENV:-~/.cache/kiln/bench-venv}) with the pinned
# peers from PyPI (tools/bench/peers/requirements.txt; PyPI's torch wheel
# brings several GB of CUDA libraries); later runs reuse it. kiln is built
# (tools/setup.sh) if build/tools/kiln is missing, else brought up to date.
# Everything after the options goes to tools/bench/peers/run.py (--help).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${KILN_BENCH_VENV:-$HOME/.cache/kiln/bench-venv}
REQ=tools/bench/peers/requirements.txt
BUILD_DIR=${KILN_BUILD_DIR:-build}
PY=${KILN_BENCH_PYTHON:-python3}

# 1. The Python environment (once per machine; again when requirements.txt changes).
# (python3-dev: torch.compile's C++ kernels include Python.h.)
if ! "$PY" -c 'import venv, ensurepip, os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null; then
  echo "peers: installing python3-venv"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv python3-dev
fi
stamp="$VENV/.kiln-requirements"
if [ ! -x "$VENV/bin/python" ]; then
  echo "peers: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if ! cmp -s "$REQ" "$stamp"; then
  echo "peers: installing $(grep -v '^#' "$REQ" | tr '\n' ' ')(several GB the first time)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --progress-bar off -r "$REQ"
  cp "$REQ" "$stamp"
fi

# 2. kiln itself.
if [ ! -x "$BUILD_DIR/tools/kiln" ]; then
  echo "peers: building kiln (tools/setup.sh)"
  tools/setup.sh
else
  cmake --build "$BUILD_DIR" --target kiln -j "$(nproc)" >/dev/null
fi

# 3. The data kiln and the peers read.
if [ ! -f data/cifar10/cifar-10-batches-bin/test_batch.bin ] || [ ! -f data/mnist/t10k-images-idx3-ubyte.gz ] || [ ! -f data/text/kjv.txt.gz ]; then
  echo "peers: preparing the data (kiln data prepare)"
  if [ -d ../shared/data ]; then "$BUILD_DIR/tools/kiln" data prepare --from ../shared/data
  else "$BUILD_DIR/tools/kiln" data prepare; fi
fi

# 4. The runs.
export KILN_BUILD_DIR="$BUILD_DIR"
case "${1:-}" in
  zoo) shift; exec "$VENV/bin/python" tools/bench/peers/zoo.py "$@" ;;
  inference) shift; exec "$VENV/bin/python" tools/bench/peers/inference.py "$@" ;;
  all)
    status=0
    for section in run zoo inference; do
      "$VENV/bin/python" "tools/bench/peers/$section.py" || status=1
    done
    exit $status ;;
  *) exec "$VENV/bin/python" tools/bench/peers/run.py "$@" ;;
esac
