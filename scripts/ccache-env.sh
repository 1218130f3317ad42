# Sourced by the build scripts: where ccache keeps its cache and how it keys
# it. Expects $root (the repository root).
# ccache must ignore the PCH's timestamps or it never hits.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Relative paths in the cache keys: a clone elsewhere (CI) hits the same cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
