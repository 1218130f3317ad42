#!/usr/bin/env bash
# Runs the tests that start processes (launcher, kill-resume, distributed,
# the CLI's kill tests) N times in a row while another process loads every
# core, and fails on the first failure or on any process they leave behind.
# Usage: scripts/stress-tests.sh [N=20] [gtest filter]
# The load: one `sha256sum /dev/zero` per core (a busy loop of pure CPU work,
# no memory or disk), started before the first round and killed at the end.
# Uses the test binary in build/ (scripts/test.sh builds it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-20}
filter=${2:-'LauncherTest.*:KillResume.*:DataParallel*:DistributedEnvironment.*:LocalCollective.*:RetrievalCli.*Kill*'}
tests="${CONTACCUM_BUILD_DIR:-$root/build}/tests/contaccum_tests"
[ -x "$tests" ] || { echo "stress-tests: no $tests; run scripts/test.sh first" >&2; exit 2; }

# The tests make their directories (contaccum-test-*) under $TMPDIR: a private
# one tells this run's processes from those of any other test run.
export TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/contaccum-stress.XXXXXX")
load=()
stop_load() {
  [ ${#load[@]} -eq 0 ] || kill "${load[@]}" 2>/dev/null || true
  rm -rf "$TMPDIR"
}
trap stop_load EXIT
for _ in $(seq "$(nproc)"); do
  sha256sum /dev/zero >/dev/null &
  load+=($!)
done
echo "stress-tests: $rounds rounds of '$filter' beside ${#load[@]} busy processes (sha256sum /dev/zero)"

start=$(date +%s)
for round in $(seq "$rounds"); do
  log=$(mktemp /tmp/contaccum-stress-round.XXXXXX)
  if ! "$tests" --gtest_filter="$filter" >"$log" 2>&1; then
    grep -E "Failure|FAILED|Expected|Which is|actual" "$log" | head -40 >&2
    echo "stress-tests: round $round failed (log: $log)" >&2
    exit 1
  fi
  passed=$(grep -oE "\[  PASSED  \] [0-9]+ tests?" "$log" | grep -oE "[0-9]+")
  rm -f "$log"
  # Nothing the tests started may be running now: every test's processes
  # were started in its temporary directory ($TMPDIR/contaccum-test-*).
  left=$(pgrep -f "$TMPDIR/contaccum-test-" || true)
  if [ -n "$left" ]; then
    echo "stress-tests: round $round left processes behind:" >&2
    ps -o pid,ppid,etime,args -p $(echo $left | tr ' ' ',') >&2 || true
    exit 1
  fi
  echo "round $round: $passed passed, none left behind ($(( $(date +%s) - start )) s so far)"
done
echo "stress-tests: $rounds rounds passed in $(( $(date +%s) - start )) s"
