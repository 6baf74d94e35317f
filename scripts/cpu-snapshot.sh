#!/usr/bin/env bash
# Prints CPU seconds (user+system) used so far by the broker, the gateways,
# the workers and the load generator: run before and after a load run.
set -euo pipefail
tck=$(getconf CLK_TCK)
for name in beam.smp gateway verifier-worker loadgen; do
  total=0
  for pid in $(pgrep -x "$name" || true); do
    read -r -a f < "/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  printf '%s %s\n' "$name" "$(echo "scale=2; $total / $tck" | bc)"
done
