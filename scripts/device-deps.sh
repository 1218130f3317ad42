#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on a GPU machine that has CUDA
# and PyTorch's LibTorch but not Debian's libraries: the -dev and runtime
# packages of contaccum's other dependencies (fmt, spdlog, yaml-cpp,
# simdjson, utf8proc, nlohmann-json, CLI11, GoogleTest, Eigen, FAISS with
# OpenBLAS, Gloo's headers), downloaded from Debian 12's registry and
# unpacked into one archive, device-deps.tar.xz (about 13 MB; git ignores
# it), which the device tool carries beside the working tree.
# Usage: bash scripts/device-deps.sh     (on a Debian 12 machine)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packages=(libfmt-dev libfmt9 libspdlog-dev libspdlog1.10 libyaml-cpp-dev libyaml-cpp0.7 libsimdjson-dev
  libsimdjson14 libutf8proc-dev libutf8proc2 nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev googletest
  libeigen3-dev libfaiss-dev libgloo-dev libgloo0 libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev
  libblas3 liblapack3 libgfortran5)
(cd "$work" && apt-get download "${packages[@]}" >/dev/null 2>&1)
mkdir "$work/prefix"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/prefix"; done
cd "$work/prefix"
# Static archives are not needed (shared ones are), except the ones Debian
# ships only as archives; nor are docs and sources.
find . -name '*.a' ! -name 'libfaiss.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' -delete
rm -rf usr/share/doc usr/share/man usr/src
# Debian reaches BLAS and LAPACK through alternatives; unpacked, link them.
lib=usr/lib/x86_64-linux-gnu
ln -sf openblas-pthread/libblas.so.3 "$lib/libblas.so.3"
ln -sf openblas-pthread/libblas.so.3 "$lib/libblas.so"
ln -sf openblas-pthread/liblapack.so.3 "$lib/liblapack.so.3"
ln -sf openblas-pthread/liblapack.so.3 "$lib/liblapack.so"
tar -cJf "$root/device-deps.tar.xz" .
echo "device-deps: $(du -h "$root/device-deps.tar.xz" | cut -f1) in $root/device-deps.tar.xz" >&2
