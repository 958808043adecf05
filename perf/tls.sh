#!/usr/bin/env bash
# TLS termination benchmark: Meridian, nginx and haproxy side by side on loopback, each
# terminating TLS 1.3 with the same ECDSA P-256 certificate in front of the same nginx backend,
# with 2 workers/threads each (this machine has 2 cores). Measured in one run:
#
#   ka         keepalive HTTPS requests/s            wrk -t1 -c50 (HTTP/1.1 over TLS)
#   full       full handshakes/s                     openssl s_time -new  (a new session each)
#   resumed    resumed handshakes/s                  openssl s_time -reuse (tickets / session ids)
#   bulk       1 MB responses, MB/s                  wrk -t1 -c8 on /1m
#
# Appends a dated section with ratios to perf/RESULTS.md. Knobs: DURATION (s, default 10),
# MERIDIAN_BIN (default target/release/meridian, built if missing), KEEP_TMP=1, RESULTS=path,
# PERF_RECORD=1 (perf record -g of Meridian during its keepalive and handshake runs, written
# to $PERF_OUT, default /tmp).
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

for p in meridian nginx haproxy; do
    url="https://127.0.0.1:${PORT_OF[$p]}"
    log "$p: warm-up"
    wrk -t1 -c50 -d2s "$url/" >/dev/null 2>&1 || true
    log "$p: keepalive"
    c0=$(cpu_ticks "${PID_OF[$p]}")
    if [[ -n "${PERF_RECORD:-}" && $p == meridian ]]; then
        perf record -g -o "${PERF_OUT:-/tmp}/tls-ka.data" -p "${PID_OF[$p]}" -- sleep "$DURATION" >/dev/null 2>&1 &
    fi
    RES[$p.ka]=$(wrk -t1 -c50 -d"${DURATION}s" "$url/" | wrk_rps)
    c1=$(cpu_ticks "${PID_OF[$p]}")
    CPU[$p.ka]=$((c1 - c0))
    sleep 1
    log "$p: full handshakes"
    if [[ -n "${PERF_RECORD:-}" && $p == meridian ]]; then
        perf record -g -o "${PERF_OUT:-/tmp}/tls-full.data" -p "${PID_OF[$p]}" -- sleep "$DURATION" >/dev/null 2>&1 &
    fi
    RES[$p.full]=$(openssl s_time -connect "127.0.0.1:${PORT_OF[$p]}" -new -time "$DURATION" 2>/dev/null \
        | awk '/connections in .* real seconds/{print $1/$4; exit}')
    log "$p: resumed handshakes"
    RES[$p.resumed]=$(openssl s_time -connect "127.0.0.1:${PORT_OF[$p]}" -reuse -time "$DURATION" 2>/dev/null \
        | awk '/connections in .* real seconds/{v=$1/$4} END{print v}')
    log "$p: 1 MB bodies"
    c0=$(cpu_ticks "${PID_OF[$p]}")
    RES[$p.bulk]=$(wrk -t1 -c8 -d"${DURATION}s" "$url/1m" | wrk_mbs)
    c1=$(cpu_ticks "${PID_OF[$p]}")
    CPU[$p.bulk]=$((c1 - c0))
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN{ print (a > b) ? a : b }'; }
{
    echo
    echo "## TLS termination — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "\`perf/tls.sh\` (DURATION=${DURATION}s), TLS 1.3, one ECDSA P-256 certificate, 2 workers each,"
    echo "nginx backend on loopback; kernel TLS available on this host: ${KERNEL_TLS:-?} (0 = userspace rustls)."
    echo "Client: wrk -t1 (OpenSSL) for req/s and MB/s; openssl s_time for handshakes/s (one client)."
    echo
    echo "| scenario | Meridian | nginx | haproxy | Meridian / best anchor |"
    echo "|---|---|---|---|---|"
    for s in ka full resumed bulk; do
        unit=$([[ $s == bulk ]] && echo "MB/s" || ([[ $s == ka ]] && echo "req/s" || echo "hs/s"))
        b=$(best "${RES[nginx.$s]:-0}" "${RES[haproxy.$s]:-0}")
        echo "| $s ($unit) | ${RES[meridian.$s]:-?} | ${RES[nginx.$s]:-?} | ${RES[haproxy.$s]:-?} | $(ratio "${RES[meridian.$s]:-0}" "$b") |"
    done
    echo
    echo "CPU ticks (1/100 s) spent by each proxy: keepalive run ${CPU[meridian.ka]}/${CPU[nginx.ka]}/${CPU[haproxy.ka]}, bulk run ${CPU[meridian.bulk]}/${CPU[nginx.bulk]}/${CPU[haproxy.bulk]} (Meridian/nginx/haproxy)."
} | tee -a "$RESULTS"
