#!/usr/bin/env bash
# Builds Tandem's libFuzzer targets (tests/fuzz/*_fuzzer.cc) with clang,
# AddressSanitizer and UBSan in build-fuzz/, runs each for a fixed time budget
# and prints a table of executions, coverage and findings. Not part of CI.
#
#   tools/install_fuzz_deps.sh          # once: clang + libclang-rt-14-dev
#   tools/fuzz.sh [SECONDS] [TARGET...] # default 60 s per target, every target
#
# Each target starts from its committed seeds (tests/fuzz/corpus/<target>/) and
# grows a working corpus in build-fuzz/corpus/<target>/. A crashing input is
# saved as build-fuzz/findings/<target>/crash-<sha1>: after fixing the bug,
# copy it into tests/fuzz/corpus/<target>/ so that the normal test suite
# (tandem_fuzz_regression_tests) replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-60}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=(codec_decode model_config safetensors tokenizer_json spm_model session_messages)
fi
if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found; run tools/install_fuzz_deps.sh" >&2
  exit 1
fi
BUILD=${BUILD:-build-fuzz}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DTANDEM_BUILD_FUZZERS=ON -DPython_EXECUTABLE=/usr/bin/python3 \
  ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" --target "${TARGETS[@]/%/_fuzzer}"

# Leaks: libtorch and gRPC keep process-lifetime allocations; report memory
# errors and crashes, not those.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
SUMMARY=()
status=0
for t in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$t"
  findings="$BUILD/findings/$t"
  mkdir -p "$corpus" "$findings"
  log="$BUILD/findings/$t.log"
  echo "== $t: ${BUDGET}s"
  set +e
  "$BUILD/tests/fuzz/${t}_fuzzer" -max_total_time="$BUDGET" -timeout=10 -rss_limit_mb=4096 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
    ${FUZZ_ARGS:-} "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  crashes=$(find "$findings" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  SUMMARY+=("$(printf '%-18s %12s %8s %8s %4s' "$t" "${execs:-?}" "${cov:-?}" "$crashes" "$rc")")
  if ((rc != 0)); then
    status=1
    grep -m3 -E 'ERROR|SUMMARY|runtime error|deadly signal' "$log" || true
  fi
done
echo
printf '%-18s %12s %8s %8s %4s\n' target executions coverage findings rc
printf '%s\n' "${SUMMARY[@]}"
echo "logs and findings: $BUILD/findings/"
exit $status
