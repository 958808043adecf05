#!/usr/bin/env bash
# Compression benchmark: Meridian and nginx side by side on loopback, each compressing 100 KB
# text responses with gzip at the same level (5), proxied from the same nginx backend, with 2
# workers each (this machine has 2 cores). Measured in one run:
#
#   req/s        wrk -t1 -c50 -H 'Accept-Encoding: gzip' on /100k.txt
#   per CPU-s    the rate divided by the proxy's own CPU time during the run
#   size         the compressed body's bytes (curl), and its ratio to nginx's (target within 2 %)
#
# The text is real prose: the GPL and other licences from /usr/share/common-licenses, 100 KB.
# Appends a dated section to perf/RESULTS.md. Knobs: DURATION (s, default 10), LEVEL (1-9,
# default 5), MERIDIAN_BIN, RESULTS=path, KEEP_TMP=1, PERF_RECORD=1 (perf record -g of Meridian
# during its run, to $PERF_OUT/compress.data, default /tmp).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10}
LEVEL=${LEVEL:-5}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
MERIDIAN_BIN=${MERIDIAN_BIN:-$ROOT/target/release/meridian}

log() { printf '[compress-perf %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need=()
for t in nginx:nginx-light wrk:wrk curl:curl; do
    PATH="$PATH:/usr/sbin" command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if ((${#need[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    $sudo systemctl stop nginx 2>/dev/null || true
fi
NGINX=$(PATH="$PATH:/usr/sbin" command -v nginx)
if [[ ! -x "$MERIDIAN_BIN" ]]; then
    log "building $MERIDIAN_BIN"
    (cd "$ROOT" && cargo build --release -j2 -q)
fi

T=$(mktemp -d /tmp/meridian-compress-perf.XXXXXX)
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
BACKEND=$(free_port); NGINX_PORT=$(free_port); MERIDIAN_PORT=$(free_port)
ADMIN=$(free_port); CLUSTER=$(free_port); DNS=$(free_port)

mkdir -p "$T/www" "$T/backend" "$T/nginx"
chmod 755 "$T/www" "$T/backend" "$T/nginx"
# 100 KB of real prose.
while [[ $(stat -c %s "$T/www/100k.txt" 2>/dev/null || echo 0) -lt 102400 ]]; do
    cat /usr/share/common-licenses/* >>"$T/www/100k.txt" 2>/dev/null || head -c 4096 /etc/services >>"$T/www/100k.txt"
done
truncate -s 102400 "$T/www/100k.txt"
chmod 644 "$T/www/100k.txt"

cat >"$T/backend/nginx.conf" <<CONF
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
    types { text/plain txt; }
    server {
        listen 127.0.0.1:$BACKEND backlog=4096;
        root $T/www;
    }
}
CONF
cat >"$T/nginx/nginx.conf" <<CONF
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
    gzip on;
    gzip_comp_level $LEVEL;
    gzip_types text/plain;
    gzip_min_length 1024;
    gzip_proxied any;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
cat >"$T/node.toml" <<CONF
node_id = 1
name = "compress-perf"
data_dir = "$T/meridian"
admin_bind = "127.0.0.1:$ADMIN"
cluster_bind = "127.0.0.1:$CLUSTER"
dns_bind = "127.0.0.1:$DNS"
CONF

start() { local n=$1; shift; "$@" >"$T/$n.out" 2>"$T/$n.err" & PIDS+=("$!"); }
wait_for() { local s=$1 what=$2; shift 2; for _ in $(seq $((s * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; die "$what not ready"; }

start backend "$NGINX" -p "$T/backend" -c "$T/backend/nginx.conf"
start nginx "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf"
start meridian env RUST_LOG=warn "$MERIDIAN_BIN" serve --config "$T/node.toml"
declare -A PID_OF=([nginx]=${PIDS[1]} [meridian]=${PIDS[2]})
declare -A PORT_OF=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT)
wait_for 10 backend curl -fsS "http://127.0.0.1:$BACKEND/100k.txt"
wait_for 60 meridian grep -q '^meridian ready:' "$T/meridian.out"
PASSWORD=$(tr -d '\r\n' <"$T/meridian/initial-admin-password")
TOKEN=$(curl -fsS -u "admin:$PASSWORD" -H 'Content-Type: application/json' -d '{"name":"perf"}' \
    "http://127.0.0.1:$ADMIN/api/v1/tokens" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
cat >"$T/config.toml" <<CONF
api_version = "meridian/v1"
[[listeners]]
name = "web"
bind = "127.0.0.1:$MERIDIAN_PORT"
[[routes]]
name = "all"
listener = "web"
pool = "backend"
compression = { codecs = ["gzip"], level = $LEVEL, content_types = ["text/plain"] }
[[pools]]
name = "backend"
members = [{ address = "127.0.0.1:$BACKEND" }]
CONF
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' -H 'If-Match: *' \
    --data-binary @"$T/config.toml" "http://127.0.0.1:$ADMIN/api/v1/config" >/dev/null || die "config apply failed"
for p in meridian nginx; do
    wait_for 20 "$p" curl -fsS "http://127.0.0.1:${PORT_OF[$p]}/100k.txt"
done

cpu_ticks() {
    local pid=$1 sum=0
    for p in $pid $(pgrep -P "$pid" || true); do
        [[ -r /proc/$p/stat ]] || continue
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat")
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}

declare -A RPS CPU SIZE
for p in meridian nginx; do
    url="http://127.0.0.1:${PORT_OF[$p]}/100k.txt"
    # The body must come back gzip and decode to the file, byte for byte.
    curl -fsS -H 'Accept-Encoding: gzip' -o "$T/$p.gz" -D "$T/$p.head" "$url"
    grep -qi '^content-encoding: gzip' "$T/$p.head" || die "$p did not compress"
    gzip -dc "$T/$p.gz" | cmp -s - "$T/www/100k.txt" || die "$p's gzip does not decode to the file"
    SIZE[$p]=$(stat -c %s "$T/$p.gz")
    log "$p: warm-up"
    wrk -t1 -c50 -d2s -H 'Accept-Encoding: gzip' "$url" >/dev/null 2>&1 || true
    log "$p: ${DURATION}s"
    if [[ -n "${PERF_RECORD:-}" && $p == meridian ]]; then
        perf record -g -o "${PERF_OUT:-/tmp}/compress.data" -p "${PID_OF[$p]}" -- sleep "$DURATION" >/dev/null 2>&1 &
    fi
    c0=$(cpu_ticks "${PID_OF[$p]}")
    RPS[$p]=$(wrk -t1 -c50 -d"${DURATION}s" -H 'Accept-Encoding: gzip' "$url" | awk '/^Requests\/sec:/{print $2}')
    c1=$(cpu_ticks "${PID_OF[$p]}")
    CPU[$p]=$((c1 - c0))
    sleep 1
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
per_cpu() { awk -v r="$1" -v t="$2" -v d="$DURATION" 'BEGIN{ if (t > 0) printf "%.0f", r * d / (t / 100); else print "n/a" }'; }
m_cpu=$(per_cpu "${RPS[meridian]}" "${CPU[meridian]}"); n_cpu=$(per_cpu "${RPS[nginx]}" "${CPU[nginx]}")
{
    echo
    echo "## Compression — $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo
    echo "\`perf/compress.sh\` (DURATION=${DURATION}s): gzip level $LEVEL of a 100 KB text (licence prose),"
    echo "proxied from one nginx backend; Meridian (flate2 on zlib-rs) against nginx \`gzip on\` (zlib),"
    echo "2 workers each; wrk -t1 -c50 with \`Accept-Encoding: gzip\` on the same 2 cores."
    echo
    echo "| | Meridian | nginx | Meridian / nginx |"
    echo "|---|---|---|---|"
    echo "| req/s | ${RPS[meridian]} | ${RPS[nginx]} | $(ratio "${RPS[meridian]}" "${RPS[nginx]}") |"
    echo "| req per CPU-s of the proxy | $m_cpu | $n_cpu | $(ratio "$m_cpu" "$n_cpu") |"
    echo "| compressed bytes | ${SIZE[meridian]} | ${SIZE[nginx]} | $(ratio "${SIZE[meridian]}" "${SIZE[nginx]}") |"
} | tee -a "$RESULTS"
