#!/usr/bin/env bash
# Builds the library, the command line and the tests with AddressSanitizer +
# UndefinedBehaviorSanitizer in build-asan/ (or $CONTACCUM_BUILD_DIR-asan when
# that is set, as in scripts/test-distribution.sh) and runs the whole test suite
# there. Any report fails the run (UBSan does not recover). Only LibTorch's
# own leaks are suppressed (tests/sanitizers/lsan.supp says why, entry by
# entry). CI runs this in a Debian 13 chroot (.ci/run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install-deps.sh"
source "$root/scripts/ccache-env.sh"
build=${CONTACCUM_BUILD_DIR:+$CONTACCUM_BUILD_DIR-asan}
build=${build:-$root/build-asan}
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# -O1: sanitizer builds compile faster and report better than at -O2.
# Warnings are errors in the plain build (scripts/test.sh under CI) only:
# instrumented at -O1, GCC 12 reports false "may be used uninitialized"
# inside LibTorch's inline headers (c10's intrusive_ptr).
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCONTACCUM_BUILD_TESTS=ON -DCONTACCUM_WERROR=OFF -DCONTACCUM_BUILD_EXAMPLES=OFF -DCONTACCUM_INSTALL=OFF >/dev/null
cmake --build "$build" --parallel "$(nproc)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$root/tests/sanitizers/ubsan.supp"
cd "$build"
# The install test builds an uninstrumented consumer; scripts/test.sh runs it.
ctest --output-on-failure --timeout 1500 -j "$(nproc)" -E "^install\\."
