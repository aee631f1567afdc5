#!/usr/bin/env bash
# Installs what tools/fuzz.sh needs beyond tools/install_deps.sh: Debian's clang
# and its runtime libraries (libFuzzer, AddressSanitizer, UBSan). Not used by CI.
set -euo pipefail
PACKAGES=(clang libclang-rt-14-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
