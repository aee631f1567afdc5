#!/usr/bin/env bash
# usage: run_consumer_test.sh BUILD_DIR CONSUMER_SOURCE WORK_DIR BUILD_TYPE TOKENIZER_JSON
set -euo pipefail
build=$1 source=$2 work=$3 type=${4:-Release} tokenizer=${5:-}
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work.install.log" 2>&1 || {
  cat "$work.install.log"; exit 1; }
test -f "$work/prefix/lib/cmake/Tandem/TandemConfig.cmake"
test -f "$work/prefix/include/tandem/model.h"
test -f "$work/prefix/include/tandem/edge/edge_session.h"
test -f "$work/prefix/include/tandem/edge/grpc_transport.h"
cmake -S "$source" -B "$work/build" -DCMAKE_BUILD_TYPE="$type" -DCMAKE_PREFIX_PATH="$work/prefix"
cmake --build "$work/build" -j2
"$work/build/tandem_consumer" "$work/model" "$tokenizer"
"$work/build/tandem_grpc_consumer"
# The standalone app carries no gRPC; the collaborative one does.
check=$(dirname "$0")/../packaging/check_needed.sh
"$check" absent "$work/build/tandem_consumer"
"$check" present "$work/build/tandem_grpc_consumer"
