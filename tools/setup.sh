#!/usr/bin/env bash
# Installs every Debian package kiln needs (idempotent) and builds it.
#   tools/setup.sh            install + configure + build (Release) into build/
#   tools/setup.sh --deps     install packages only
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl
  llvm-19-dev llvm-19 binutils libxtensor-dev libxsimd-dev nlohmann-json3-dev doctest-dev libcli11-dev
  zlib1g-dev libarchive-dev libjpeg-dev libpng-dev libssl-dev libstb-dev libzstd-dev
  libopenblas-dev gnuplot-nox python3 python3-jsonschema afl++
  libopenmpi-dev openmpi-bin
  libonnx-dev libprotobuf-dev libonnx-testdata
  dataset-fashion-mnist
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--deps" ] && exit 0

BUILD_DIR=${KILN_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${KILN_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)"
