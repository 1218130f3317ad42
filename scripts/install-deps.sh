#!/usr/bin/env bash
# Installs every Debian 12 package contaccum needs to build, test and run its
# examples (plus any packages given as arguments). Idempotent: when everything
# is present it prints nothing and exits. Cheap on a rebuild: once a package
# list was found complete, a stamp remembers it until the package database
# (/var/lib/dpkg/status) changes, so neither dpkg nor apt runs again.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-pthread
  libeigen3-dev libfmt-dev libspdlog-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libsimdjson-dev libutf8proc-dev
  libyaml-cpp-dev libcli11-dev zlib1g-dev lz4 libfaiss-dev
  python3 python3-torch python3-numpy python3-faiss
  "$@"  # extra packages a script needs (e.g. gnuplot-nox for examples/reproduce)
)

stamp_dir=${XDG_CACHE_HOME:-$HOME/.cache}/contaccum
stamp="$stamp_dir/install-deps.$(printf '%s\n' "${packages[@]}" | sha1sum | cut -c1-16)"
dpkg_status=/var/lib/dpkg/status
if [ -f "$stamp" ] && [ -f "$dpkg_status" ] && [ "$stamp" -nt "$dpkg_status" ]; then
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  mkdir -p "$stamp_dir" 2>/dev/null && touch "$stamp" 2>/dev/null || true
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
mkdir -p "$stamp_dir" 2>/dev/null && touch "$stamp" 2>/dev/null || true
