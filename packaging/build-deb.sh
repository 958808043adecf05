#!/usr/bin/env bash
# Builds the meridian .deb with cargo-deb (installed first if missing).
# Usage: packaging/build-deb.sh [extra cargo-deb options]   e.g. --fast, --no-build
# Prints the path of the .deb as the last line of stdout.
set -euo pipefail

cd "$(dirname "$0")/.."

# Two cores on the build machines; override with CARGO_BUILD_JOBS=N.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: cargo-deb not found, installing it" >&2
    cargo install cargo-deb --locked >&2
fi

for tool in dpkg dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null 2>&1 \
        || echo "build-deb: warning: $tool not found (dpkg-dev/binutils); the .deb may lack stripping or computed Depends" >&2
done

# --strip: [profile.release] keeps debug = 1 for profiling, but the package ships a
# stripped binary. Cargo's output goes to stderr; cargo-deb prints the .deb path.
deb=$(cargo deb --strip "$@" | tail -n 1)
if [ ! -f "$deb" ]; then
    echo "build-deb: cargo deb did not report a .deb (got: '$deb')" >&2
    exit 1
fi
echo "build-deb: built $deb" >&2
echo "$deb"
