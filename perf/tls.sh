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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
MERIDIAN_BIN=${MERIDIAN_BIN:-$ROOT/target/release/meridian}

log() { printf '[tls-perf %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need=()
for t in nginx:nginx-light haproxy:haproxy wrk:wrk openssl:openssl curl:curl; do
    PATH="$PATH:/usr/sbin" command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if ((${#need[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    for svc in nginx haproxy; do $sudo systemctl stop "$svc" 2>/dev/null || true; done
fi
NGINX=$(PATH="$PATH:/usr/sbin" command -v nginx); HAPROXY=$(PATH="$PATH:/usr/sbin" command -v haproxy)
if [[ ! -x "$MERIDIAN_BIN" ]]; then
    log "building $MERIDIAN_BIN"
    (cd "$ROOT" && cargo build --release -j2 -q)
fi

T=$(mktemp -d /tmp/meridian-tls-perf.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "${KEEP_TMP:-}" ]] && log "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
chmod 711 "$T"
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(free_port); NGINX_TLS=$(free_port); HAPROXY_TLS=$(free_port); MERIDIAN_TLS=$(free_port)
ADMIN=$(free_port); CLUSTER=$(free_port); DNS=$(free_port)

# One ECDSA P-256 certificate for all three.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
cat "$T/cert.pem" "$T/key.pem" >"$T/haproxy.pem"
chmod 644 "$T"/*.pem

mkdir -p "$T/www" "$T/backend" "$T/nginx"
chmod 755 "$T/www" "$T/backend" "$T/nginx"
head -c $((1024 * 1024)) /dev/urandom >"$T/www/1m"
chmod 644 "$T/www/1m"
cat >"$T/backend/nginx.conf" <<EOF
daemon off;
pid $T/backend/nginx.pid;
error_log $T/backend/error.log warn;
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $T/backend/tmp;
    proxy_temp_path $T/backend/tmp;
    fastcgi_temp_path $T/backend/tmp;
    uwsgi_temp_path $T/backend/tmp;
    scgi_temp_path $T/backend/tmp;
    sendfile on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND backlog=4096;
        location / { default_type text/plain; return 200 "ok"; }
        location = /1m { root $T/www; default_type application/octet-stream; }
    }
}
EOF
cat >"$T/nginx/nginx.conf" <<EOF
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
worker_processes 2;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $T/nginx/tmp;
    proxy_temp_path $T/nginx/tmp;
    fastcgi_temp_path $T/nginx/tmp;
    uwsgi_temp_path $T/nginx/tmp;
    scgi_temp_path $T/nginx/tmp;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$NGINX_TLS ssl backlog=4096;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
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
cat >"$T/node.toml" <<EOF
node_id = 1
name = "tls-perf"
data_dir = "$T/meridian"
admin_bind = "127.0.0.1:$ADMIN"
cluster_bind = "127.0.0.1:$CLUSTER"
dns_bind = "127.0.0.1:$DNS"
EOF

start() { local n=$1; shift; "$@" >"$T/$n.out" 2>"$T/$n.err" & PIDS+=("$!"); }
wait_for() { local s=$1 what=$2; shift 2; for _ in $(seq $((s * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; die "$what not ready"; }

start backend "$NGINX" -p "$T/backend" -c "$T/backend/nginx.conf"
start nginx "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf"
start haproxy "$HAPROXY" -db -f "$T/haproxy.cfg"
start meridian env RUST_LOG=warn "$MERIDIAN_BIN" serve --config "$T/node.toml"
declare -A PID_OF=([nginx]=${PIDS[1]} [haproxy]=${PIDS[2]} [meridian]=${PIDS[3]})
declare -A PORT_OF=([meridian]=$MERIDIAN_TLS [nginx]=$NGINX_TLS [haproxy]=$HAPROXY_TLS)
wait_for 10 backend curl -fsS "http://127.0.0.1:$BACKEND/"
wait_for 60 "meridian" grep -q '^meridian ready:' "$T/meridian.out"
PASSWORD=$(tr -d '\r\n' <"$T/meridian/initial-admin-password")
TOKEN=$(curl -fsS -u "admin:$PASSWORD" -H 'Content-Type: application/json' -d '{"name":"perf"}' \
    "http://127.0.0.1:$ADMIN/api/v1/tokens" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
python3 - "$T" >"$T/import.json" <<'PY'
import json, sys
t = sys.argv[1]
print(json.dumps({"name": "bench", "cert_pem": open(f"{t}/cert.pem").read(),
                  "key_pem": open(f"{t}/key.pem").read()}))
PY
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @"$T/import.json" "http://127.0.0.1:$ADMIN/api/v1/certificates" >/dev/null \
    || die "certificate import failed"
cat >"$T/config.toml" <<EOF
api_version = "meridian/v1"
[[listeners]]
name = "tls"
bind = "127.0.0.1:$MERIDIAN_TLS"
tls = { certificates = ["bench"] }
[[routes]]
name = "all"
listener = "tls"
pool = "backend"
[[pools]]
name = "backend"
members = [{ address = "127.0.0.1:$BACKEND" }]
EOF
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' -H 'If-Match: *' \
    --data-binary @"$T/config.toml" "http://127.0.0.1:$ADMIN/api/v1/config" >/dev/null || die "config apply failed"
for p in meridian nginx haproxy; do
    wait_for 20 "$p TLS" curl -fsSk "https://127.0.0.1:${PORT_OF[$p]}/"
done
KERNEL_TLS=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/metrics" \
    | awk '/^meridian_lb_kernel_tls_available /{print $2}')

cpu_ticks() { # total utime+stime of a process and its threads/children, in clock ticks
    local pid=$1 sum=0
    for p in $pid $(pgrep -P "$pid" || true); do
        [[ -r /proc/$p/stat ]] || continue
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat")
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}

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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN{ print (a > b) ? a : b }'; }
per_cpu() { awk -v r="$1" -v t="$2" -v d="$DURATION" 'BEGIN{ if (t > 0) printf "%.0f", r * d / (t / 100); else print "n/a" }'; }
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
