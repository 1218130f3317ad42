#!/usr/bin/env bash
# Installs every Debian 12 package contaccum needs to build, test and run its
# examples (plus any packages given as arguments). Idempotent: when everything is present it prints nothing and exits.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-pthread
  libeigen3-dev libfmt-dev libspdlog-dev libgtest-dev
  nlohmann-json3-dev libsimdjson-dev libutf8proc-dev
  libyaml-cpp-dev libcli11-dev zlib1g-dev lz4
  python3 python3-torch python3-numpy
  "$@"  # extra packages a script needs (e.g. gnuplot-nox for examples/reproduce)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
