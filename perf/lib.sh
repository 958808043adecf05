# Shared by the side-by-side benchmarks (tls.sh, compress.sh, limit.sh): tools, a scratch
# directory cleaned on exit, daemons started in the background, and a Meridian node configured
# through its API. Source it after setting TAG (log prefix) and TOOLS ("command:package ...").

HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
MERIDIAN_BIN=${MERIDIAN_BIN:-$ROOT/target/release/meridian}

log() { printf '[%s %s] %s\n' "$TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need=()
for t in $TOOLS curl:curl; do
    PATH="$PATH:/usr/sbin" command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if ((${#need[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    for svc in nginx haproxy; do $sudo systemctl stop "$svc" 2>/dev/null || true; done
fi
NGINX=$(PATH="$PATH:/usr/sbin" command -v nginx || true)
HAPROXY=$(PATH="$PATH:/usr/sbin" command -v haproxy || true)
if [[ ! -x "$MERIDIAN_BIN" ]]; then
    log "building $MERIDIAN_BIN"
    (cd "$ROOT" && cargo build --release -j2 -q)
fi

T=$(mktemp -d "/tmp/meridian-$TAG.XXXXXX")
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
# start NAME COMMAND...: a foreground daemon, logs in $T/NAME.{out,err}, pid in PIDS.
start() { local n=$1; shift; "$@" >"$T/$n.out" 2>"$T/$n.err" & PIDS+=("$!"); }
# wait_for SECONDS WHAT COMMAND...
wait_for() { local s=$1 what=$2; shift 2; for _ in $(seq $((s * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; die "$what not ready"; }
# cpu_ticks PID: user+system time of a process and its children, in clock ticks (1/100 s).
cpu_ticks() {
    local pid=$1 sum=0
    for p in $pid $(pgrep -P "$pid" || true); do
        [[ -r /proc/$p/stat ]] || continue
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat")
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN{ print (a > b) ? a : b }'; }
# per_cpu RATE TICKS: the rate per CPU-second of the process over DURATION.
per_cpu() { awk -v r="$1" -v t="$2" -v d="$DURATION" 'BEGIN{ if (t > 0) printf "%.0f", r * d / (t / 100); else print "n/a" }'; }

# nginx_preamble DIR WORKERS CONNECTIONS: the top of an nginx.conf living in $T/DIR, up to
# the open http block.
nginx_preamble() {
    cat <<CONF
daemon off;
pid $T/$1/nginx.pid;
error_log $T/$1/error.log crit;
worker_processes $2;
events { worker_connections $3; }
http {
    access_log off;
    client_body_temp_path $T/$1/tmp;
    proxy_temp_path $T/$1/tmp;
    fastcgi_temp_path $T/$1/tmp;
    uwsgi_temp_path $T/$1/tmp;
    scgi_temp_path $T/$1/tmp;
    keepalive_requests 1000000;
CONF
}

# The nginx backend every benchmark proxies to: `location` blocks in $1.
backend_nginx() {
    BACKEND=$(free_port)
    mkdir -p "$T/backend"
    chmod 755 "$T/backend"
    cat >"$T/backend/nginx.conf" <<CONF
$(nginx_preamble backend 1 4096)
    sendfile on;
    types { text/plain txt; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$BACKEND backlog=4096;
        $1
    }
}
CONF
    start backend "$NGINX" -p "$T/backend" -c "$T/backend/nginx.conf"
}

# Starts a single Meridian node and sets MERIDIAN_PID, ADMIN and TOKEN.
meridian_start() {
    ADMIN=$(free_port)
    cat >"$T/node.toml" <<CONF
node_id = 1
name = "$TAG"
data_dir = "$T/meridian"
admin_bind = "127.0.0.1:$ADMIN"
cluster_bind = "127.0.0.1:$(free_port)"
dns_bind = "127.0.0.1:$(free_port)"
CONF
    start meridian env RUST_LOG=warn "$MERIDIAN_BIN" serve --config "$T/node.toml"
    MERIDIAN_PID=${PIDS[-1]}
    wait_for 60 meridian grep -q '^meridian ready:' "$T/meridian.out"
    local password
    password=$(tr -d '\r\n' <"$T/meridian/initial-admin-password")
    TOKEN=$(curl -fsS -u "admin:$password" -H 'Content-Type: application/json' -d '{"name":"perf"}' \
        "http://127.0.0.1:$ADMIN/api/v1/tokens" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
}

# meridian_proxy PORT LISTENER ROUTE: one listener on PORT and one route to the backend, with
# extra TOML for each (LISTENER, ROUTE), applied through the API.
meridian_proxy() {
    cat >"$T/config.toml" <<CONF
api_version = "meridian/v1"
[[listeners]]
name = "bench"
bind = "127.0.0.1:$1"
$2
[[routes]]
name = "all"
listener = "bench"
pool = "backend"
$3
[[pools]]
name = "backend"
members = [{ address = "127.0.0.1:$BACKEND" }]
CONF
    curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' \
        -H 'If-Match: *' --data-binary @"$T/config.toml" "http://127.0.0.1:$ADMIN/api/v1/config" \
        >/dev/null || die "config apply failed"
}

# front_nginx HTTP SERVER LOCATION: nginx with 2 workers proxying to the backend, started.
# HTTP goes in the http block, SERVER in the server block (its listen line first), LOCATION in
# `location /` before the proxying directives.
front_nginx() {
    mkdir -p "$T/nginx"
    chmod 755 "$T/nginx"
    cat >"$T/nginx/nginx.conf" <<CONF
$(nginx_preamble nginx 2 8192)
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
    $1
    server {
        $2
        location / {
            $3
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    start nginx "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf"
}
