#!/usr/bin/env bash
# Where the bank work's time goes: runs contaccum_bench_banks (sgemm and
# bank-work lines only) under `perf record` and prints each group of symbols'
# share of the samples: OpenBLAS's sgemm kernel, its packing ("copy")
# routines, the short products' kernels (short_products.h), exp, the
# kernel's scheduler, and the rest.
#
# Usage: bash bench/banks/profile.sh [MEMORY_SIZE]   (default 8192)
# Needs perf (Debian: linux-perf) and a kernel that lets this user profile.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
memory=${1:-8192}
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
bash "$root/bench/build.sh" contaccum_bench_banks
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
perf record -q -o "$work/perf.data" "$root/build-bench/bench/banks/contaccum_bench_banks" --no-steps \
  --memory "$memory" --rounds 60 >/dev/null 2>&1
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
  awk -v memory="$memory" '
    /^ *[0-9.]+%/ {
      share = $1; sub("%", "", share); name = $3
      if (name ~ /^sgemm_kernel/) group = "sgemm kernel"
      else if (name ~ /^sgemm_.*copy/ || name ~ /^sgemm_beta/) group = "sgemm packing"
      else if (name ~ /dot_block|weighted_block/) group = "short products"
      else if (name ~ /exp/) group = "exp"
      else if (name ~ /sched|yield|syscall/) group = "scheduler"
      else group = "other"
      total[group] += share
    }
    END {
      printf "bank work at memory_size %d, share of samples:\n", memory
      n = split("sgemm kernel,sgemm packing,short products,exp,scheduler,other", order, ",")
      for (i = 1; i <= n; ++i) printf "  %-14s %5.1f%%\n", order[i], total[order[i]]
    }'
