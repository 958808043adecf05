#!/usr/bin/env bash
# Proves Meridian's kernel-TLS path in a VM running Debian 12's kernel (6.1, with the `tls`
# module; the development kernel has none). Boots the guest of packaging/vm/ with
# tests/vm/ktls-guest.sh:
#   stage 1 (kernel)  the guest kernel does kTLS: /proc/net/tls_stat, and a TLS 1.3 handshake
#                     in OpenSSL handed to the kernel (TX and RX) for each suite, bytes exact
#   stage 2 (all)     Meridian with two HTTPS listeners: through ktls = "auto", a 100 MB download
#                     and a 10 MB upload arrive byte-exact (sha256) and /proc/net/tls_stat counts
#                     every connection as kernel TLS TX and RX (ss shows the socket as
#                     tcp-ulp-tls); through ktls = "off" the same bytes, and no counter moves
#
# Usage: tests/vm/ktls.sh        (root; builds the guest image on first use, ~2 min)
#   MERIDIAN_BIN=path          the meridian binary (default target/release/meridian)
#   MERIDIAN_KTLS_STAGES=auto  auto: stage 2 when MERIDIAN_BIN exists and its config accepts a
#                              listener `tls` table, else stage 1 only (and say so);
#                              all: both, failing if Meridian cannot; kernel: stage 1 only
# and the MERIDIAN_VM_* settings of packaging/vm/run.sh. The guest's logs, counters and `ss`
# output are copied to $MERIDIAN_VM_DIR/ktls-out (default target/vm/ktls-out).
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$(pwd)
bin=${MERIDIAN_BIN:-$repo/target/release/meridian}
stages=${MERIDIAN_KTLS_STAGES:-auto}
export MERIDIAN_VM_DIR=${MERIDIAN_VM_DIR:-$repo/target/vm}

# has_tls_listeners BIN: whether this build's config model knows a listener's `tls` table.
# Only a clear "unknown field" means no; any other answer goes on to the real test.
has_tls_listeners() {
    local probe out
    probe=$(mktemp)
    cat >"$probe" <<'EOF'
api_version = "meridian/v1"
[[listeners]]
name = "probe"
bind = "127.0.0.1:8443"
tls = { certificates = ["probe"], ktls = "auto" }
EOF
    out=$("$1" config validate --file "$probe" 2>&1 || true)
    rm -f "$probe"
    ! grep -q 'tls: unknown field' <<<"$out"
}

case $stages in
    kernel) ;;
    all)
        [ -x "$bin" ] || { echo "ktls: $bin not found (MERIDIAN_BIN)" >&2; exit 1; }
        ;;
    auto)
        if [ ! -x "$bin" ]; then
            echo "ktls: $bin not found: running stage 1 (kernel) only" >&2
            stages=kernel
        elif ! has_tls_listeners "$bin"; then
            echo "ktls: $bin has no TLS listeners yet (config: 'tls: unknown field'):" \
                "running stage 1 (kernel) only" >&2
            stages=kernel
        else
            stages=all
        fi
        ;;
    *)
        echo "ktls: MERIDIAN_KTLS_STAGES must be auto, all or kernel" >&2
        exit 2
        ;;
esac

files=$(mktemp -d "${TMPDIR:-/tmp}/ktls-files.XXXXXX")
trap 'rm -rf "$files"' EXIT
cp tests/vm/ktls_handoff.py tests/vm/origin.py "$files/"
if [ "$stages" = all ]; then
    # The release profile keeps debug info (150 MB); the guest needs none of it.
    strip -o "$files/meridian" "$bin" 2>/dev/null || cp "$bin" "$files/meridian"
fi

out=$MERIDIAN_VM_DIR/ktls-out
rm -rf "$out"
echo "ktls: stages=$stages, guest logs in $out" >&2
rc=0
MERIDIAN_VM_OUT=$out packaging/vm/run.sh "$files" tests/vm/ktls-guest.sh "$stages" || rc=$?
[ "$rc" -eq 0 ] || echo "ktls: FAILED (exit $rc); guest logs in $out" >&2
exit "$rc"
