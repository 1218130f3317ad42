#!/usr/bin/env bash
# Runs the README's test command (scripts/test.sh) inside a chroot of a Debian
# release, against that release's LibTorch and FAISS:
#   bookworm  Debian 12   LibTorch 1.13, FAISS 1.7.3
#   trixie    Debian 13   LibTorch 2.6,  FAISS 1.11
#   sid       unstable    the newest LibTorch and FAISS Debian has
# Usage: scripts/test-distribution.sh bookworm|trixie|sid [command...]
#   With a command, runs it in the chroot's repository instead of the tests
#   (e.g. `bash scripts/build.sh`).
# The chroot is made once with debootstrap and kept (cached) in
# $CONTACCUM_CHROOTS (default ~/.cache/contaccum/chroots/<release>); its
# packages are installed by scripts/install-deps.sh inside it. The repository
# is bind-mounted at /src and builds in build-<release>/ there; /proc, /dev
# (with /dev/pts) and /dev/shm are mounted for the run and unmounted whatever ends it.
# Nothing outside the chroot and the repository's build-<release>/ changes.
# Needs root (debootstrap, chroot, mount).
set -euo pipefail
usage() { echo "usage: $0 bookworm|trixie|sid [command...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
suite=$1; shift
case "$suite" in bookworm|trixie|sid) ;; *) usage ;; esac
[ "$(id -u)" -eq 0 ] || { echo "test-distribution: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
chroots=${CONTACCUM_CHROOTS:-$HOME/.cache/contaccum/chroots}
dir="$chroots/$suite"
mirror=${CONTACCUM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ ! -f "$dir/.contaccum-ready" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  echo "test-distribution: making the $suite chroot in $dir (once)" >&2
  rm -rf "$dir.partial"
  mkdir -p "$chroots"
  debootstrap --variant=minbase "$suite" "$dir.partial" "$mirror" >"$chroots/$suite.debootstrap.log" 2>&1 ||
    { tail -20 "$chroots/$suite.debootstrap.log" >&2; exit 1; }
  # A release's Release file may be past its Valid-Until on a mirror that
  # serves a snapshot (sid's is valid for a week); the chroot's apt accepts it.
  echo 'Acquire::Check-Valid-Until "false";' >"$dir.partial/etc/apt/apt.conf.d/99contaccum"
  touch "$dir.partial/.contaccum-ready"
  rm -rf "$dir" && mv "$dir.partial" "$dir"
fi

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_in() {  # mount_in TARGET mount-args...
  local target="$dir$1"; shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
mount_in /proc -t proc proc
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs -o size=2g tmpfs
mount_in /src --bind "$root"
# The shared data set, where the repository has one beside it (tests that read
# it skip without it).
[ -d "$root/../shared" ] && mount_in /shared -o ro --bind "$root/../shared"
# The host's name must resolve inside too (torchrun connects to it).
for f in resolv.conf hosts; do cp "/etc/$f" "$dir/etc/$f" 2>/dev/null || true; done

[ $# -gt 0 ] || set -- bash scripts/test.sh
chroot "$dir" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 TERM="${TERM:-dumb}" CONTACCUM_BUILD_DIR="/src/build-$suite" \
  CONTACCUM_WERROR="${CONTACCUM_WERROR:-OFF}" \
  bash -c 'cd /src && "$@"' bash "$@"
