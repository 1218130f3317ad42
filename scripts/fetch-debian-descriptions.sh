#!/usr/bin/env bash
# Usage: scripts/fetch-debian-descriptions.sh OUT_FILE
#
# Fetches Debian's English package descriptions (the Translation-en index of
# this machine's apt sources) and writes them, decompressed, to OUT_FILE: the
# input of contaccum's Debian data set (read_debian_descriptions).
#
# apt-get does the download, so the machine's mirrors, proxy and signature
# checks apply, but into a private lists directory: /var/lib/apt/lists and
# apt's caches are left alone, and root is not needed. Of the Translation-en
# files the sources give (main suite, -updates, -security), the largest is the
# release's main suite, the one build.py used. OUT_FILE appears complete or
# not at all. Exits non-zero with a message when nothing can be fetched.
set -euo pipefail

die() {
  echo "fetch-debian-descriptions: $*" >&2
  exit 1
}

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 OUT_FILE"
out=$1
command -v apt-get >/dev/null || die "apt-get not found: this needs Debian or a derivative"
out_dir=$(dirname -- "$out")
mkdir -p -- "$out_dir" || die "cannot create $out_dir"

work=$(mktemp -d "${TMPDIR:-/tmp}/contaccum-apt.XXXXXX")
partial_out=""
cleanup() {
  rm -rf -- "$work"
  [ -z "$partial_out" ] || rm -f -- "$partial_out"
}
trap cleanup EXIT
# Run as root, apt downloads as the unprivileged _apt user, which must be able
# to reach lists/partial (mktemp made the directory private).
chmod 755 "$work"
mkdir -p "$work/lists/partial"

start=$SECONDS
# Acquire::Languages=en overrides a "none" (Docker images set it); Packages
# indexes are not needed; an empty pkgcache keeps apt from rebuilding the
# system's package cache from these lists.
if ! apt-get update \
  -o Dir::State::Lists="$work/lists" \
  -o Acquire::Languages=en \
  -o Acquire::IndexTargets::deb::Packages::DefaultEnabled=false \
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
  -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30 \
  >"$work/apt.log" 2>&1; then
  tail -n 20 "$work/apt.log" >&2
  die "apt-get update failed (see above)"
fi

# apt-get update exits 0 even when a download failed: the file is the test.
index=$(find "$work/lists" -maxdepth 1 -type f -name '*_i18n_Translation-en*' -printf '%s %p\n' |
  sort -rn | head -n 1 | cut -d' ' -f2-)
if [ -z "$index" ]; then
  tail -n 20 "$work/apt.log" >&2
  die "no Translation-en index was fetched (no network, or no Debian 'main' source in apt's sources?)"
fi

partial_out="$out.partial.$$"
# apt-helper reads every compression apt stores lists in (lz4 by default, or
# gz, xz, zst, uncompressed); the tools by file name are the fallback.
if [ -x /usr/lib/apt/apt-helper ]; then
  /usr/lib/apt/apt-helper cat-file "$index" >"$partial_out" || die "cannot decompress $index"
else
  case "$index" in
    *.lz4) lz4cat -- "$index" ;;
    *.gz) gzip -dc -- "$index" ;;
    *.xz) xz -dc -- "$index" ;;
    *.zst) zstd -dc -- "$index" ;;
    *.bz2) bzip2 -dc -- "$index" ;;
    *) cat -- "$index" ;;
  esac >"$partial_out" || die "cannot decompress $index"
fi
[ "$(head -c 9 "$partial_out")" = "Package: " ] || die "$index does not look like a Translation-en index"
mv -f -- "$partial_out" "$out"
partial_out=""

echo "fetch-debian-descriptions: $(basename -- "$index") -> $out:" \
  "$(grep -c '^Package: ' "$out") packages, $(stat -c %s "$out") bytes, $((SECONDS - start)) s" >&2
