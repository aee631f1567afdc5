#!/usr/bin/env bash
# What the benchmark suite (`make bench-suite`) needs beyond the build:
# Debian's matplotlib for the report's plots. Idempotent.
set -euo pipefail
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q "install ok installed"; then
  echo "install_bench_deps: installing python3-matplotlib"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-matplotlib
fi
