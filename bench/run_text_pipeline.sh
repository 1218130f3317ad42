#!/usr/bin/env bash
# Builds and runs the text-pipeline throughput benchmark and writes the report
# docs/TEXT_PIPELINE.md (table, command, machine).
# Usage: bash bench/run_text_pipeline.sh [DATA_DIR] [--repeats N] [--vocab-repeats N] [--vocab-size N]
#        (default data: ../shared/data/debpkg beside the repository)
# Builds only the benchmark (Release) in build-bench/, so it neither waits for
# nor disturbs a build in build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
out="$root/docs/TEXT_PIPELINE.md"

args=("$@")
have_dir=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --*) i=$((i + 1)) ;;  # every option takes a value
    *) have_dir=1 ;;
  esac
done
if [ "$have_dir" -eq 0 ]; then
  args=("$(cd "$root/.." && pwd)/shared/data/debpkg" "${args[@]}")
fi

bash "$root/bench/build.sh" contaccum_bench_text_pipeline "$root" "$build"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
table=$("$build/bench/text_pipeline/contaccum_bench_text_pipeline" "${args[@]}")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The machine.
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
logical=$(grep -c '^processor' /proc/cpuinfo)
sockets=$(grep '^physical id' /proc/cpuinfo | sort -u | wc -l)
[ "$sockets" -gt 0 ] || sockets=1
cores_per_socket=$(grep -m1 '^cpu cores' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
physical=$((sockets * ${cores_per_socket:-$logical}))
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
mem_gib=$(awk -v kb="$mem_kb" 'BEGIN {printf "%.1f", kb / 1048576}')
hypervisor=$(grep -qw hypervisor /proc/cpuinfo && echo ", virtual machine" || true)
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
cxx_version=$("${cxx:-c++}" --version | head -1)
torch_header=$(find /usr/include /usr/local/include -path '*torch/csrc/api/include/torch/version.h' 2>/dev/null | head -1)
torch_version=$( [ -n "$torch_header" ] && sed -n '/define TORCH_VERSION *\\/{n;p}' "$torch_header" | tr -d ' "' )
torch_pkg=$(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || true)
kernel=$(uname -sr)

command="bash bench/run_text_pipeline.sh${*:+ $*}"
mkdir -p "$root/docs"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
{
  cat <<EOF
# Text pipeline throughput

Reading the debpkg data set (\`../shared/data/debpkg\`, see its README), learning
a WordPiece vocabulary from its corpus, and tokenizing the corpus, measured by
\`bench/text_pipeline/main.cpp\` (Release build). Readers parse one line at a
time into a \`TextTable\` (ids, titles and texts in one arena); each reader row is
the whole call, file opening to finished table. Written by the command below;
do not edit by hand.

## Results

$table

## Command

\`\`\`sh
$command
\`\`\`

It builds only the benchmark, in \`build-bench/\` (Release, Ninja), runs it
and writes this file (to a temporary file first, then
renamed over this one).

## Machine

| | |
|---|---|
| CPU | $cpu (${logical} logical CPUs, ${physical} cores${hypervisor}) |
| memory | ${mem_gib} GiB |
| compiler | $cxx_version |
| LibTorch | ${torch_version:-unknown} (Debian \`libtorch-dev\` ${torch_pkg:-not installed}) |
| kernel | $kernel |
| load average (1, 5, 15 min) | $load_before before, $load_after after |
| date | $(date -u '+%Y-%m-%d %H:%M UTC') |

The machine is shared: a load average near or above the CPU count means other
work competed for the cores and the numbers are pessimistic.
EOF
} >"$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "$table"
echo "wrote $out"
