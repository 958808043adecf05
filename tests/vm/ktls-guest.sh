#!/bin/bash
# The kTLS test inside the VM (started by tests/vm/ktls.sh through packaging/vm/run.sh).
#
# Usage: ktls-guest.sh kernel|all
#   kernel  stage 1: the guest kernel does kernel TLS (module, /proc/net/tls_stat, a TLS 1.3
#           handshake in OpenSSL handed to the kernel for each suite, bytes exact both ways)
#   all     stage 1, then stage 2: Meridian's HTTPS listeners with ktls "auto" and "off"
#           (needs /opt/test/meridian)
#
# Prints PASS/FAIL per check and a RESULT line; exits 1 if any check failed. Logs and the
# counters go to /opt/test/out (copied back to the host).
set -uo pipefail

stages=${1:-kernel}
T=/opt/test
OUT=$T/out
W=/tmp/ktls
mkdir -p "$OUT" "$W"

DOWN_MB=100 # through Meridian
UP_MB=10
ORIGIN=127.0.0.1:8080
PORT_AUTO=8443 # listener with ktls = "auto"
PORT_OFF=8444  # listener with ktls = "off"

failures=0
pass() { echo "PASS: $*"; }
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
check() {
    local desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}
finish() {
    cp /proc/net/tls_stat "$OUT/tls_stat.final" 2>/dev/null
    if [ "$failures" -eq 0 ]; then
        echo "RESULT: PASS ($stages)"
        exit 0
    fi
    echo "RESULT: FAIL ($failures check(s) failed)"
    exit 1
}
step() { echo "--- $* ($(cut -d' ' -f1 /proc/uptime) s)"; }

# tls_stat FILE: saves the counters; delta OLD NEW NAME: how much NAME grew.
tls_stat() { cp /proc/net/tls_stat "$1"; }
counter() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
delta() { echo $(($(counter "$2" "$3") - $(counter "$1" "$3"))); }

# === stage 1: the kernel ========================================================================

stage_kernel() {
    step "stage 1: kernel TLS on $(uname -r)"
    check "tls module loaded" grep -q '^tls ' /proc/modules
    if [ ! -r /proc/net/tls_stat ]; then
        fail "/proc/net/tls_stat exists"
        finish
    fi
    pass "/proc/net/tls_stat exists; counters: $(awk '{ printf "%s ", $1 }' /proc/net/tls_stat)"
    tls_stat "$W/k0"

    # OpenSSL's own kTLS is compiled out on Debian 12 (no `-ktls` in s_server/s_client), so
    # the handshake is handed to the kernel the way Meridian does it (ktls_handoff.py).
    step "TLS 1.3 handshake in OpenSSL, then kernel TLS TX+RX on the server socket"
    python3 "$T/ktls_handoff.py" "$W/cert.pem" "$W/key.pem" 16 4 | tee "$OUT/handoff.txt"
    local rc=${PIPESTATUS[0]}
    tls_stat "$W/k1"
    check "kernel TLS handoff: all suites byte-exact both ways (exit $rc)" test "$rc" -eq 0
    check "ss shows the socket as tcp-ulp-tls, sw crypto both ways" \
        grep -q 'tcp-ulp-tls version: 1.3 .*rxconf: sw txconf: sw' "$OUT/handoff.txt"
    local tx rx err
    tx=$(delta "$W/k0" "$W/k1" TlsTxSw)
    rx=$(delta "$W/k0" "$W/k1" TlsRxSw)
    err=$(delta "$W/k0" "$W/k1" TlsDecryptError)
    check "tls_stat TlsTxSw +$tx, TlsRxSw +$rx for 3 connections" test "$tx" -ge 3 -a "$rx" -ge 3
    check "tls_stat TlsDecryptError +$err" test "$err" -eq 0
}

make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -keyout "$W/key.pem" -out "$W/cert.pem" -subj /CN=ktls.meridian.test \
        -addext subjectAltName=DNS:ktls.meridian.test,IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
        2>"$W/openssl.err" || {
        cat "$W/openssl.err"
        fail "self-signed ECDSA P-256 certificate"
        finish
    }
}

# === Meridian: everything that depends on its interface is in this section ====================

MERIDIAN=$T/meridian
MERIDIAN_PID=""
ADMIN=http://127.0.0.1:9090

# meridian_setup CERT KEY: starts a node and configures two HTTPS listeners proxying to
# $ORIGIN: $PORT_AUTO with ktls = "auto" and $PORT_OFF with ktls = "off".
meridian_setup() {
    local cert=$1 key=$2 d=$W/meridian
    mkdir -p "$d"
    cat >"$d/node.toml" <<EOF
node_id = 1
name = "ktls-vm"
data_dir = "$d/data"
admin_bind = "127.0.0.1:9090"
cluster_bind = "127.0.0.1:9700"
dns_bind = "127.0.0.1:5300"
EOF
    NO_COLOR=1 "$MERIDIAN" serve --config "$d/node.toml" >"$OUT/meridian.out" 2>"$OUT/meridian.err" &
    MERIDIAN_PID=$!
    for _ in $(seq 1 240); do
        grep -q '^meridian ready:' "$OUT/meridian.out" 2>/dev/null && break
        kill -0 "$MERIDIAN_PID" 2>/dev/null || break
        sleep 0.5
    done
    grep -q '^meridian ready:' "$OUT/meridian.out" || {
        tail -n 20 "$OUT/meridian.out" "$OUT/meridian.err"
        fail "meridian serve printed 'meridian ready:' within 120 s"
        return 1
    }
    pass "$(grep -m1 '^meridian ready:' "$OUT/meridian.out")"

    local password token
    password=$(cat "$d/data/initial-admin-password")
    token=$(curl -sS --fail-with-body -u "admin:$password" -H 'content-type: application/json' \
        -d '{"name": "ktls-vm-test"}' "$ADMIN/api/v1/tokens" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])') || {
        fail "API token from POST /api/v1/tokens"
        return 1
    }
    local auth=(-H "authorization: Bearer $token" -H 'if-match: *')

    python3 -c 'import json, sys
print(json.dumps({"name": "ktls-vm", "cert_pem": open(sys.argv[1]).read(),
                  "key_pem": open(sys.argv[2]).read()}))' "$cert" "$key" >"$d/cert.json"
    curl -sS --fail-with-body "${auth[@]}" -H 'content-type: application/json' \
        --data-binary @"$d/cert.json" "$ADMIN/api/v1/certificates" >"$d/cert.answer" || {
        cat "$d/cert.answer"
        fail "certificate imported (POST /api/v1/certificates)"
        return 1
    }
    pass "certificate imported: $(cat "$d/cert.answer")"

    cat >"$d/config.toml" <<EOF
api_version = "meridian/v1"

[[listeners]]
name = "https-ktls"
bind = "127.0.0.1:$PORT_AUTO"
tls = { certificates = ["ktls-vm"], ktls = "auto" }

[[listeners]]
name = "https-no-ktls"
bind = "127.0.0.1:$PORT_OFF"
tls = { certificates = ["ktls-vm"], ktls = "off" }

[[routes]]
name = "ktls"
listener = "https-ktls"
path_prefix = "/"
pool = "origin"

[[routes]]
name = "no-ktls"
listener = "https-no-ktls"
path_prefix = "/"
pool = "origin"

[[pools]]
name = "origin"
members = [{ address = "$ORIGIN" }]
EOF
    curl -sS --fail-with-body "${auth[@]}" -X PUT -H 'content-type: application/toml' \
        --data-binary @"$d/config.toml" "$ADMIN/api/v1/config" >"$d/config.answer" || {
        cat "$d/config.answer"
        fail "config with two HTTPS listeners applied (PUT /api/v1/config)"
        return 1
    }
    pass "config applied: $(cat "$d/config.answer")"
}

meridian_stop() {
    [ -n "$MERIDIAN_PID" ] || return 0
    kill -TERM "$MERIDIAN_PID" 2>/dev/null
    wait "$MERIDIAN_PID" 2>/dev/null
    MERIDIAN_PID=""
}

# === stage 2: HTTPS through Meridian =============================================================

# wait_https PORT: the listener answers through to the origin.
wait_https() {
    for _ in $(seq 1 120); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$W/cert.pem" \
            "https://127.0.0.1:$1/healthz")" = 200 ] && return 0
        sleep 0.5
    done
    return 1
}

# meridian_cpu_ticks: user + system clock ticks of the Meridian process (all its threads).
meridian_cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$MERIDIAN_PID/stat"
}

# transfer PORT MODE: downloads and uploads through the listener and checks the bytes and the
# kernel's TLS counters. MODE is auto (kernel TLS expected) or off (none expected).
transfer() {
    local port=$1 mode=$2 url=https://127.0.0.1:$1 conns=0 s=$W/stat-$2
    step "listener :$port, ktls = \"$mode\""
    check "https://127.0.0.1:$port answers through to the origin" wait_https "$port"
    tls_stat "$s.0"

    local t0 got info c0 c1
    t0=$(date +%s.%N)
    c0=$(meridian_cpu_ticks)
    got=$(curl -sS --fail --cacert "$W/cert.pem" -w '%{stderr}%{http_version} %{size_download}\n' \
        "$url/big.bin" 2>"$W/curl.info" | sha256sum | cut -d' ' -f1)
    c1=$(meridian_cpu_ticks)
    conns=$((conns + 1))
    info=$(tail -n 1 "$W/curl.info")
    # Meridian's CPU for the download, per GB (user + system, all threads).
    echo "CPU-PER-GB mode=$mode $(awk -v t=$((c1 - c0)) -v mb="$DOWN_MB" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f s/GB (%.2f s for %d MB)", t / hz / (mb / 1024), t / hz, mb }')" | tee -a "$W/cpu.txt"
    check "GET ${DOWN_MB} MB byte-exact (sha256 ${got:0:16}..., HTTP/$info, $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))" \
        test "$got" = "$BIG_SHA"

    t0=$(date +%s.%N)
    got=$(curl -sS --fail --cacert "$W/cert.pem" -H 'content-type: application/octet-stream' \
        --data-binary @"$W/up.bin" "$url/upload")
    conns=$((conns + 1))
    check "POST ${UP_MB} MB byte-exact at the origin (${got:0:16}..., $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))" \
        test "$got" = "$UP_SHA $((UP_MB << 20))"

    # One slow download kept open long enough to look at Meridian's side of it.
    curl -s --cacert "$W/cert.pem" --limit-rate 256k -o /dev/null "$url/big.bin" &
    local slow=$!
    conns=$((conns + 1))
    sleep 3
    ss -tnie state established "( sport = :$port )" >"$OUT/ss-$mode.txt"
    tls_stat "$s.open"
    kill "$slow" 2>/dev/null
    wait "$slow" 2>/dev/null
    sleep 1
    tls_stat "$s.1"

    local tx rx err curr_tx curr_rx ulp
    tx=$(delta "$s.0" "$s.1" TlsTxSw)
    rx=$(delta "$s.0" "$s.1" TlsRxSw)
    err=$(delta "$s.0" "$s.1" TlsDecryptError)
    curr_tx=$(counter "$s.open" TlsCurrTxSw)
    curr_rx=$(counter "$s.open" TlsCurrRxSw)
    ulp=$(grep -o 'tcp-ulp-tls.*' "$OUT/ss-$mode.txt" | head -n 1)
    cp "$s.0" "$OUT/tls_stat.$mode.before"
    cp "$s.1" "$OUT/tls_stat.$mode.after"
    if [ "$mode" = auto ]; then
        check "kernel TLS TX for Meridian's $conns connections (TlsTxSw +$tx)" test "$tx" -ge "$conns"
        check "kernel TLS RX for Meridian's $conns connections (TlsRxSw +$rx)" test "$rx" -ge "$conns"
        check "an open connection counts in TlsCurrTxSw=$curr_tx TlsCurrRxSw=$curr_rx" \
            test "$curr_tx" -ge 1 -a "$curr_rx" -ge 1
        check "ss shows Meridian's socket as kernel TLS (${ulp:-no tcp-ulp-tls})" \
            grep -q 'tcp-ulp-tls.*rxconf: sw txconf: sw' "$OUT/ss-$mode.txt"
        check "no kernel TLS decrypt errors (TlsDecryptError +$err)" test "$err" -eq 0
    else
        local name moved=""
        for name in TlsTxSw TlsRxSw TlsTxDevice TlsRxDevice TlsDecryptError; do
            [ "$(delta "$s.0" "$s.1" "$name")" -eq 0 ] || moved="$moved $name"
        done
        check "kernel TLS counters unchanged over $conns connections${moved:+ (moved:$moved)}" \
            test -z "$moved"
        check "ss shows no kernel TLS on Meridian's socket" \
            bash -c '! grep -q tcp-ulp-tls "$1"' _ "$OUT/ss-$mode.txt"
    fi
}

stage_meridian() {
    step "stage 2: Meridian's HTTPS listeners"
    if [ ! -x "$MERIDIAN" ]; then
        fail "$MERIDIAN is there"
        return
    fi
    head -c "${DOWN_MB}M" /dev/urandom >"$W/www/big.bin"
    head -c "${UP_MB}M" /dev/urandom >"$W/up.bin"
    BIG_SHA=$(sha256sum <"$W/www/big.bin" | cut -d' ' -f1)
    UP_SHA=$(sha256sum <"$W/up.bin" | cut -d' ' -f1)
    python3 "$T/origin.py" "${ORIGIN%:*}" "${ORIGIN#*:}" "$W/www" 2>"$OUT/origin.log" &
    local origin=$!
    if meridian_setup "$W/cert.pem" "$W/key.pem"; then
        # "off" first: its counters then stay at the values stage 1 left.
        transfer "$PORT_OFF" off
        transfer "$PORT_AUTO" auto
    fi
    meridian_stop
    kill "$origin" 2>/dev/null
    # What Meridian said about kernel TLS (its start-up probe), for the record.
    grep -hiE 'ktls|kernel tls' "$OUT/meridian.out" "$OUT/meridian.err" 2>/dev/null |
        sed 's/\x1b\[[0-9;]*m//g; s/^/meridian: /' | head -n 5
}

mkdir -p "$W/www"
make_cert
stage_kernel
case $stages in
    kernel) ;;
    all) stage_meridian ;;
    *) fail "unknown stage '$stages' (kernel or all)" ;;
esac
finish
