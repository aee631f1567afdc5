#!/usr/bin/env bash
# usage: check_needed.sh absent|present BINARY
# Reads BINARY's dynamic section and says whether gRPC is among its NEEDED
# libraries; exits 1 when that is not what the first argument expects. For
# `absent` it also asks the dynamic loader (ldd), so a gRPC pulled in through
# another library would be seen too.
set -euo pipefail
expect=$1 binary=$2
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
if [ -z "$needed" ]; then
  echo "no NEEDED entries read from $binary" >&2
  exit 1
fi
echo "NEEDED of $(basename "$binary"):"
echo "$needed" | sed 's/^/  /'
grpc=$(echo "$needed" | grep -E '^libgrpc' || true)
case $expect in
  absent)
    if [ -n "$grpc" ]; then
      echo "FAIL: $binary needs gRPC: $grpc" >&2
      exit 1
    fi
    loaded=$(ldd "$binary" | grep -E 'libgrpc' || true)
    if [ -n "$loaded" ]; then
      echo "FAIL: $binary loads gRPC through another library:" >&2
      echo "$loaded" >&2
      exit 1
    fi
    echo "OK: no libgrpc needed or loaded";;
  present)
    if ! echo "$grpc" | grep -q '^libgrpc++'; then
      echo "FAIL: $binary does not need libgrpc++" >&2
      exit 1
    fi
    echo "OK: needs $(echo $grpc)";;
  *)
    echo "usage: check_needed.sh absent|present BINARY" >&2
    exit 2;;
esac
