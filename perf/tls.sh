#!/usr/bin/env bash
# TLS termination benchmark: Meridian, nginx and haproxy side by side on loopback, each
# terminating TLS 1.3 with the same ECDSA P-256 certificate in front of the same nginx backend,
# with 2 workers/threads each (this machine has 2 cores). Measured in one run:
#
#   ka         keepalive HTTPS requests/s            wrk -t1 -c50 (HTTP/1.1 over TLS)
#   full       full handshakes/s                     wrk -H 'Connection: close' (a new TLS
#                                                    connection per request; wrk never resumes)
#   stime_full full handshakes/s                     openssl s_time -new, STIME_CLIENTS in parallel
#   resumed    resumed handshakes/s                  openssl s_time -reuse, STIME_CLIENTS in parallel
#
# Each rate is also given per CPU-second of the proxy (its user+system time during the run),
# because the clients share the two cores: a cheaper proxy leaves more CPU to the client.
#   bulk       1 MB responses, MB/s                  wrk -t1 -c8 on /1m
#
# Appends a dated section with ratios to perf/RESULTS.md. Knobs: DURATION (s, default 10),
# MERIDIAN_BIN (default target/release/meridian, built if missing), KEEP_TMP=1, RESULTS=path,
# PERF_RECORD=1 (perf record -g of Meridian during each of its runs, written to
# $PERF_OUT/tls-<scenario>.data, default /tmp; PERF_CALLGRAPH=dwarf for call graphs through
# code without frame pointers), STIME_CLIENTS (parallel openssl s_time clients, default 4).
set -euo pipefail

TAG=tls-perf
TOOLS="nginx:nginx-light haproxy:haproxy wrk:wrk openssl:openssl"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NGINX_TLS=$(free_port); HAPROXY_TLS=$(free_port); MERIDIAN_TLS=$(free_port)

# One ECDSA P-256 certificate for all three.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
cat "$T/cert.pem" "$T/key.pem" >"$T/haproxy.pem"
chmod 644 "$T"/*.pem

mkdir -p "$T/www"
chmod 755 "$T/www"
head -c $((1024 * 1024)) /dev/urandom >"$T/www/1m"
chmod 644 "$T/www/1m"
backend_nginx "location / { default_type text/plain; return 200 \"ok\"; }
        location = /1m { root $T/www; default_type application/octet-stream; }"
front_nginx "ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;" "listen 127.0.0.1:$NGINX_TLS ssl backlog=4096;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;" "proxy_buffering off;"
cat >"$T/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4000
    tune.ssl.default-dh-param 2048
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend tls
    bind 127.0.0.1:$HAPROXY_TLS ssl crt $T/haproxy.pem ssl-min-ver TLSv1.2
    default_backend nginx
backend nginx
    server b1 127.0.0.1:$BACKEND
EOF
start haproxy "$HAPROXY" -db -f "$T/haproxy.cfg"
wait_for 10 backend curl -fsS "http://127.0.0.1:$BACKEND/"
meridian_start
declare -A PID_OF=([nginx]=${PIDS[1]} [haproxy]=${PIDS[2]} [meridian]=$MERIDIAN_PID)
declare -A PORT_OF=([meridian]=$MERIDIAN_TLS [nginx]=$NGINX_TLS [haproxy]=$HAPROXY_TLS)
python3 - "$T" >"$T/import.json" <<'PY'
import json, sys
t = sys.argv[1]
print(json.dumps({"name": "bench", "cert_pem": open(f"{t}/cert.pem").read(),
                  "key_pem": open(f"{t}/key.pem").read()}))
PY
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @"$T/import.json" "http://127.0.0.1:$ADMIN/api/v1/certificates" >/dev/null \
    || die "certificate import failed"
meridian_proxy "$MERIDIAN_TLS" 'tls = { certificates = ["bench"] }' ""
for p in meridian nginx haproxy; do
    wait_for 20 "$p TLS" curl -fsSk "https://127.0.0.1:${PORT_OF[$p]}/"
done
KERNEL_TLS=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/metrics" \
    | awk '/^meridian_lb_kernel_tls_available /{print $2}')

declare -A RES CPU
wrk_rps() { awk '/^Requests\/sec:/{print $2}'; }
wrk_mbs() { awk '/^Transfer\/sec:/{v=$2; if (v ~ /GB/) {sub("GB","",v); v*=1024} else if (v ~ /MB/) {sub("MB","",v)} else if (v ~ /KB/) {sub("KB","",v); v/=1024} print v}'; }

# Parallel s_time clients: one alone is latency-bound (one handshake at a time).
STIME_CLIENTS=${STIME_CLIENTS:-4}
s_time_total() { # mode (-new|-reuse), port: handshakes/s summed over the clients
    local mode=$1 port=$2 i
    for i in $(seq "$STIME_CLIENTS"); do
        openssl s_time -connect "127.0.0.1:$port" "$mode" -time "$DURATION" 2>/dev/null \
            | awk '/connections in .* real seconds/{v=$1/$4} END{print v+0}' >"$T/stime.$i" &
    done
    wait
    cat "$T"/stime.* | awk '{s+=$1} END{printf "%.0f", s}'
    rm -f "$T"/stime.*
}
measure() { # name, scenario, command...: runs it, records CPU ticks of the proxy
    local p=$1 s=$2; shift 2
    local c0 c1
    c0=$(cpu_ticks "${PID_OF[$p]}")
    if [[ -n "${PERF_RECORD:-}" && $p == meridian ]]; then
        perf record -g ${PERF_CALLGRAPH:+--call-graph $PERF_CALLGRAPH} -o "${PERF_OUT:-/tmp}/tls-$s.data" -p "${PID_OF[$p]}" -- sleep "$DURATION" >/dev/null 2>&1 &
    fi
    RES[$p.$s]=$("$@")
    c1=$(cpu_ticks "${PID_OF[$p]}")
    CPU[$p.$s]=$((c1 - c0))
    sleep 1
}
wrk_ka() { wrk -t1 -c50 -d"${DURATION}s" "$1/" | wrk_rps; }
# A new connection per request: wrk never resumes a session, so each is a full handshake
# (checked below on Meridian's counter of resumed handshakes).
wrk_close() { wrk -t1 -c50 -d"${DURATION}s" -H 'Connection: close' "$1/" | wrk_rps; }
wrk_bulk() { wrk -t1 -c8 -d"${DURATION}s" "$1/1m" | wrk_mbs; }

for p in meridian nginx haproxy; do
    url="https://127.0.0.1:${PORT_OF[$p]}"
    log "$p: warm-up"
    wrk -t1 -c50 -d2s "$url/" >/dev/null 2>&1 || true
    log "$p: keepalive"
    measure "$p" ka wrk_ka "$url"
    log "$p: full handshakes (a new connection per request)"
    measure "$p" full wrk_close "$url"
    log "$p: full handshakes (openssl s_time -new x $STIME_CLIENTS)"
    measure "$p" stime_full s_time_total -new "${PORT_OF[$p]}"
    log "$p: resumed handshakes (openssl s_time -reuse x $STIME_CLIENTS)"
    measure "$p" resumed s_time_total -reuse "${PORT_OF[$p]}"
    log "$p: 1 MB bodies"
    measure "$p" bulk wrk_bulk "$url"
done
RESUMED_BY_WRK=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/metrics" \
    | awk '/^meridian_lb_tls_connections_total\{/ && /handshake="resumed"/ {s+=$2} END{print s+0}')

{
    echo
    echo "## TLS termination — $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo
    echo "\`perf/tls.sh\` (DURATION=${DURATION}s), TLS 1.3, one ECDSA P-256 certificate, 2 workers each,"
    echo "nginx backend on loopback; kernel TLS available on this host: ${KERNEL_TLS:-?} (0 = userspace rustls)."
    echo "Clients share the 2 cores with the proxies: wrk -t1 (OpenSSL); $STIME_CLIENTS parallel openssl s_time."
    echo "\"per CPU-s\" is the rate divided by the proxy's own CPU time (user+system) during the run:"
    echo "what one core of the proxy does, whatever the client costs."
    echo
    echo "| scenario | Meridian | nginx | haproxy | Meridian / best anchor | per CPU-s: Meridian | nginx | haproxy | Meridian / best |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for s in ka full stime_full resumed bulk; do
        case $s in
            ka) label="keepalive (req/s)";;
            full) label="full handshakes, new connection per request (wrk, /s)";;
            stime_full) label="full handshakes (s_time -new, /s)";;
            resumed) label="resumed handshakes (s_time -reuse, /s)";;
            bulk) label="1 MB bodies (MB/s)";;
        esac
        b=$(best "${RES[nginx.$s]:-0}" "${RES[haproxy.$s]:-0}")
        m=$(per_cpu "${RES[meridian.$s]:-0}" "${CPU[meridian.$s]:-0}")
        n=$(per_cpu "${RES[nginx.$s]:-0}" "${CPU[nginx.$s]:-0}")
        h=$(per_cpu "${RES[haproxy.$s]:-0}" "${CPU[haproxy.$s]:-0}")
        echo "| $label | ${RES[meridian.$s]:-?} | ${RES[nginx.$s]:-?} | ${RES[haproxy.$s]:-?} | $(ratio "${RES[meridian.$s]:-0}" "$b") | $m | $n | $h | $(ratio "$m" "$(best "$n" "$h")") |"
    done
    echo
    echo "Meridian's handshakes counted as resumed over the whole run: $RESUMED_BY_WRK (the s_time -reuse runs; wrk's connections are all full)."
} | tee -a "$RESULTS"
