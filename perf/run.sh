#!/usr/bin/env bash
# Meridian benchmark harness: Meridian side by side with Debian-packaged anchors, on loopback.
#
#   1. HTTP reverse proxy: nginx backend <- {Meridian, nginx proxy_pass, haproxy} <- wrk / h2load,
#      in several scenarios (keepalive at 50 and 1,000 connections, 100 KB bodies, a new
#      connection per request, HTTP/2 cleartext), with the proxy's CPU time per 100k requests
#   2. Memory: peak RSS of each proxy, and its RSS while holding 10,000 idle client connections
#   3. Authoritative DNS over UDP: {Meridian, knot, gdnsd} <- dnsperf; Meridian also on GSLB
#      names of every policy, and while 100 config revisions are applied during the run
#
# Every daemon runs in the foreground with its own config in a temp dir, on free loopback ports;
# everything started here is stopped on exit. A dated section is appended to perf/RESULTS.md.
# See perf/README.md. Environment knobs:
#   DURATION=10        seconds per measured run          WARMUP=2  seconds of warm-up per proxy
#   SCENARIOS="ka50 ka1000 big close h2 idle dns"        which parts to run (default: all)
#   ONLY=anchors       skip Meridian (no build, no node): tests the harness with the anchors alone
#   MERIDIAN_BIN=path  use this binary instead of building target/release/meridian
#   IDLE_CONNS=10000   idle connections per proxy   IDLE_MODE=silent|partial|keepalive
#   NO_INSTALL=1       do not apt-get install missing tools   KEEP_TMP=1  keep the temp dir
#   RESULTS=path       where to append (default perf/RESULTS.md)
#   MERIDIAN_LOG=info  Meridian's RUST_LOG
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
PERF_OUT=${PERF_OUT:-/tmp}
ONLY=${ONLY:-}
ALL_SCENARIOS="ka50 ka1000 big close h2 idle dns"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_MODE=${IDLE_MODE:-silent}
WRK_THREADS=1
H2_CLIENTS=50
H2_STREAMS=10
BIG_BYTES=102400
DNSPERF_CLIENTS=4
DNSPERF_OUTSTANDING=100

log() { printf '[perf %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -z "$ONLY" || "$ONLY" == anchors ]] || die "ONLY must be empty or 'anchors' (got '$ONLY')"
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[1-9][0-9]*$ ]] || die "DURATION and WARMUP must be positive integers"
[[ "$IDLE_CONNS" =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be a positive integer"
[[ "$IDLE_MODE" =~ ^(silent|partial|keepalive)$ ]] || die "IDLE_MODE must be silent, partial or keepalive"
read -r -a SCEN <<<"$SCENARIOS"
for s in "${SCEN[@]}"; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (known: $ALL_SCENARIOS)"
done
((${#SCEN[@]})) || die "SCENARIOS is empty"
want() { [[ " ${SCEN[*]} " == *" $1 "* ]]; }
HTTP_SCENARIOS=()
for s in ka50 ka1000 big close h2; do want "$s" && HTTP_SCENARIOS+=("$s"); done

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
declare -A PKG_FOR=([nginx]=nginx-light [haproxy]=haproxy [wrk]=wrk [h2load]=nghttp2-client
                    [knotd]=knot [gdnsd]=gdnsd [dnsperf]=dnsperf [curl]=curl [dig]=bind9-dnsutils [ss]=iproute2
                    [python3]=python3 [ps]=procps)
find_tool() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" 2>/dev/null || true; }

install_missing() {
    local missing=() t
    for t in "${!PKG_FOR[@]}"; do
        [[ -n "$(find_tool "$t")" ]] || missing+=("${PKG_FOR[$t]}")
    done
    ((${#missing[@]})) || return 0
    [[ -z "${NO_INSTALL:-}" ]] || die "missing packages: ${missing[*]} (NO_INSTALL is set)"
    log "installing: ${missing[*]}"
    # Some packages start their system service on install. Remember which services were already
    # running, and stop only the ones this install started: we never use their configs or ports.
    local svc before=()
    local has_systemd=""
    [[ -d /run/systemd/system ]] && has_systemd=1
    if [[ -n "$has_systemd" ]]; then
        for svc in nginx haproxy knot gdnsd; do
            systemctl is-active --quiet "$svc" 2>/dev/null && before+=("$svc")
        done
    fi
    local sudo=""
    ((EUID == 0)) || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    if [[ -n "$has_systemd" ]]; then
        for svc in nginx haproxy knot gdnsd; do
            [[ " ${before[*]} " == *" $svc "* ]] && continue
            if systemctl is-active --quiet "$svc" 2>/dev/null; then
                log "stopping $svc.service started by the package install"
                $sudo systemctl stop "$svc" || true
            fi
        done
    fi
}
install_missing
NGINX=$(find_tool nginx); HAPROXY=$(find_tool haproxy); WRK=$(find_tool wrk); H2LOAD=$(find_tool h2load)
KNOTD=$(find_tool knotd); GDNSD=$(find_tool gdnsd); DNSPERF=$(find_tool dnsperf); PYTHON=$(find_tool python3)
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Meridian binary
# ---------------------------------------------------------------------------------------------
if [[ "$ONLY" == anchors ]]; then
    log "ONLY=anchors: Meridian is not built or run"
    MERIDIAN_BIN=""
elif [[ -n "${MERIDIAN_BIN:-}" ]]; then
    [[ -x "$MERIDIAN_BIN" ]] || die "MERIDIAN_BIN=$MERIDIAN_BIN is not executable"
else
    log "cargo build --release -j2 --bin meridian (a no-op when up to date)"
    (cd "$ROOT" && cargo build --release -j2 --bin meridian) >&2
    MERIDIAN_BIN="$ROOT/target/release/meridian"
fi
if [[ -n "$MERIDIAN_BIN" ]]; then PROXIES=(meridian nginx haproxy); else PROXIES=(nginx haproxy); fi

# ---------------------------------------------------------------------------------------------
# File descriptors: 1,000-connection runs and the idle-connection test need many. Every process
# started below inherits this limit: haproxy's ideal (2 per connection), capped by the hard limit.
# ---------------------------------------------------------------------------------------------
HAPROXY_MAXCONN=$((IDLE_CONNS + 2048))
WANT_NOFILE=$((2 * HAPROXY_MAXCONN + 1024))
TARGET_NOFILE=$(ulimit -Hn)
if [[ "$TARGET_NOFILE" == unlimited ]] || ((TARGET_NOFILE > WANT_NOFILE)); then TARGET_NOFILE=$WANT_NOFILE; fi
ulimit -n "$TARGET_NOFILE" 2>/dev/null || true
NOFILE=$(ulimit -n)
if want idle && ((NOFILE < IDLE_CONNS + 1024)); then
    log "WARNING: open-file limit $NOFILE is too low for $IDLE_CONNS idle connections; using $((NOFILE - 1024))"
    IDLE_CONNS=$((NOFILE - 1024))
fi
((NOFILE >= 4096)) || die "open-file limit $NOFILE is too low (ulimit -Hn must be at least 4096)"
# nginx worker_connections (client and upstream sockets; nginx preallocates them all).
WORKER_CONNS=$((IDLE_CONNS + 4096))
((WORKER_CONNS <= NOFILE - 64)) || WORKER_CONNS=$((NOFILE - 64))

# ---------------------------------------------------------------------------------------------
# Temp dir, process tracking, cleanup
# ---------------------------------------------------------------------------------------------
T=$(mktemp -d /tmp/meridian-perf.XXXXXX)
PIDS=()
IDLE_PID=""
cleanup() {
    local rc=$? pid
    [[ -n "$IDLE_PID" ]] && kill -TERM "$IDLE_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.3
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "${KEEP_TMP:-}" || $rc -ne 0 ]]; then
        log "logs and configs kept in $T"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports: random, checked against every TCP and UDP socket, never reused here.
USED_PORTS=" "
pick_port() { # pick_port VAR
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        ss -Htuan "( sport = :$p )" | grep -q . && continue
        USED_PORTS+="$p "
        printf -v "$1" '%s' "$p"
        return
    done
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out waiting for $what"
        sleep 0.2
    done
}

http_ok() { [[ "$(curl -fsS --max-time 2 "$1")" == "ok" ]]; }

pick_port BACKEND_PORT; pick_port NGINX_PORT; pick_port HAPROXY_PORT; pick_port MERIDIAN_PORT
pick_port NGINX_H2_PORT; pick_port HAPROXY_H2_PORT
pick_port ADMIN_PORT; pick_port CLUSTER_PORT; pick_port MDNS_PORT; pick_port KNOT_PORT
pick_port GDNSD_PORT

# ---------------------------------------------------------------------------------------------
# Backend: nginx answering "ok" on 127.0.0.1 and 127.0.0.2 (the second address is a GSLB site),
# and a 100 KB file on /100k
# ---------------------------------------------------------------------------------------------
nginx_common() { # nginx_common DIR
    cat <<EOF
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections $WORKER_CONNS; }
EOF
}
nginx_temp_paths() { # nginx_temp_paths DIR
    cat <<EOF
    client_body_temp_path $1/tmp-body;
    proxy_temp_path $1/tmp-proxy;
    fastcgi_temp_path $1/tmp-fastcgi;
    uwsgi_temp_path $1/tmp-uwsgi;
    scgi_temp_path $1/tmp-scgi;
EOF
}

mkdir -p "$T/backend/www" "$T/nginx" "$T/haproxy" "$T/meridian/data" "$T/knot/db" "$T/dns" "$T/gdnsd/zones" "$T/gdnsd/run" "$T/gdnsd/state"
# nginx workers run as an unprivileged user when started as root: let them reach the file.
chmod 711 "$T" "$T/backend"
chmod 755 "$T/backend/www"
# 100 KB of printable, incompressible-looking bytes (nothing here compresses responses anyway).
head -c $((BIG_BYTES * 3 / 4)) /dev/urandom | base64 -w 0 | head -c "$BIG_BYTES" >"$T/backend/www/100k"
chmod 644 "$T/backend/www/100k"
[[ $(stat -c %s "$T/backend/www/100k") -eq $BIG_BYTES ]] || die "could not write the 100 KB file"
{
    nginx_common "$T/backend"
    cat <<EOF
worker_processes 1;
http {
    access_log off;
$(nginx_temp_paths "$T/backend")
    sendfile on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        listen 127.0.0.2:$BACKEND_PORT backlog=4096;
        location / {
            default_type text/plain;
            return 200 "ok";
        }
        location = /100k {
            root $T/backend/www;
            default_type application/octet-stream;
        }
    }
}
EOF
} >"$T/backend/nginx.conf"

# ---------------------------------------------------------------------------------------------
# Anchor proxies: nginx proxy_pass with upstream keepalive, haproxy in http mode; both with 2
# workers/threads like Meridian's tokio runtime on this 2-core machine. Each also has an h2c
# (HTTP/2 prior knowledge, cleartext) port: nginx 1.22 and haproxy cannot serve HTTP/1.1 and h2c
# prior knowledge on one cleartext port, Meridian serves both on its single listener.
# ---------------------------------------------------------------------------------------------
{
    nginx_common "$T/nginx"
    cat <<EOF
worker_processes 2;
http {
    access_log off;
$(nginx_temp_paths "$T/nginx")
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_buffering on;
    proxy_max_temp_file_size 0;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / { proxy_pass http://backend; }
    }
    server {
        listen 127.0.0.1:$NGINX_H2_PORT http2 backlog=4096;
        location / { proxy_pass http://backend; }
    }
}
EOF
} >"$T/nginx/nginx.conf"

cat >"$T/haproxy/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn $HAPROXY_MAXCONN
    # haproxy wants 2 fds per connection (client + server side) and by default refuses to start
    # when it cannot raise its fd limit that far; the idle test needs only the client side.
    no strict-limits
    log stderr format raw local0 warning

defaults
    mode http
    log global
    maxconn $HAPROXY_MAXCONN
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 65s

frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend nginx_backend

frontend bench_h2
    bind 127.0.0.1:$HAPROXY_H2_PORT proto h2
    default_backend nginx_backend

backend nginx_backend
    server b1 127.0.0.1:$BACKEND_PORT
EOF

# ---------------------------------------------------------------------------------------------
# Meridian node: listener -> route -> pool (the nginx backend); a zone and a GSLB record
# ---------------------------------------------------------------------------------------------
cat >"$T/meridian/node.toml" <<EOF
node_id = 1
name = "perf"
data_dir = "$T/meridian/data"
admin_bind = "127.0.0.1:$ADMIN_PORT"
cluster_bind = "127.0.0.1:$CLUSTER_PORT"
dns_bind = "127.0.0.1:$MDNS_PORT"
EOF

cat >"$T/meridian/config.toml" <<EOF
api_version = "meridian/v1"

[[listeners]]
name = "bench"
bind = "127.0.0.1:$MERIDIAN_PORT"

[[routes]]
name = "all"
listener = "bench"
path_prefix = "/"
pool = "backend"

[[pools]]
name = "backend"
health_check = "backend"
members = [{ address = "127.0.0.1:$BACKEND_PORT" }]

[[health_checks]]
name = "backend"
path = "/"
interval_ms = 1000
timeout_ms = 500
rise = 2
fall = 2

# Response-rate limiting is per client subnet, and every benchmark query comes from 127.0.0.1:
# off here, as Knot's RRL is off by default.
[dns]
rate_limit = { responses_per_second = 0 }

[[zones]]
name = "bench.test"
ns = ["ns1"]
soa = { mname = "ns1", rname = "hostmaster" }
records = [
  { name = "ns1", type = "A", value = "127.0.0.1" },
  { name = "www", type = "A", value = "127.0.0.10" },
]

[[gslb_records]]
name = "app.bench.test"
ttl = 30
sites = [
  { name = "one", address = "127.0.0.1", port = $BACKEND_PORT, health_check = "backend" },
  { name = "two", address = "127.0.0.2", port = $BACKEND_PORT, health_check = "backend" },
]
EOF
# One GSLB name per steering policy, same two sites (for the "policies" run).
for policy in failover weighted round_robin persistent; do
    cat >>"$T/meridian/config.toml" <<EOF

[[gslb_records]]
name = "${policy//_/-}.bench.test"
ttl = 30
policy = "$policy"
sites = [
  { name = "one", address = "127.0.0.1", port = $BACKEND_PORT, health_check = "backend", priority = 1, weight = 3 },
  { name = "two", address = "127.0.0.2", port = $BACKEND_PORT, health_check = "backend", priority = 2 },
]
EOF
done
cat >>"$T/meridian/config.toml" <<EOF

[[regions]]
name = "local"
networks = ["127.0.0.0/8"]
spill_to = ["other"]

[[regions]]
name = "other"
networks = ["10.0.0.0/8"]

[[gslb_records]]
name = "geo.bench.test"
ttl = 30
steer = "geo"
sites = [
  { name = "one", address = "127.0.0.1", port = $BACKEND_PORT, health_check = "backend", region = "local" },
  { name = "two", address = "127.0.0.2", port = $BACKEND_PORT, health_check = "backend", region = "other" },
]
EOF

# ---------------------------------------------------------------------------------------------
# knot: the same zone; app.bench.test is a static two-address RRset (what Meridian's GSLB
# record answers while both sites are healthy)
# ---------------------------------------------------------------------------------------------
cat >"$T/knot/bench.test.zone" <<'EOF'
$ORIGIN bench.test.
$TTL 300
@    SOA ns1 hostmaster 1 3600 600 604800 60
@    NS  ns1
ns1  A   127.0.0.1
www  A   127.0.0.10
app  30 A 127.0.0.1
app  30 A 127.0.0.2
EOF
# gdnsd: the same zone file, one UDP thread per core.
cp "$T/knot/bench.test.zone" "$T/gdnsd/zones/bench.test"
cat >"$T/gdnsd/config" <<EOF
options => {
  listen => [ 127.0.0.1:$GDNSD_PORT ]
  udp_threads => $(nproc)
  tcp_threads => 1
  run_dir => $T/gdnsd/run
  state_dir => $T/gdnsd/state
}
EOF
cat >"$T/knot/knot.conf" <<EOF
server:
    rundir: "$T/knot"
    listen: 127.0.0.1@$KNOT_PORT
log:
  - target: stderr
    any: warning
database:
    storage: "$T/knot/db"
control:
    listen: "$T/knot/knot.sock"
template:
  - id: default
    storage: "$T/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: bench.test
    file: "bench.test.zone"
EOF

printf 'www.bench.test A\n' >"$T/dns/static.txt"
printf 'www.bench.test A\napp.bench.test A\n' >"$T/dns/mixed.txt"
printf '%s.bench.test A\n' app failover weighted round-robin persistent geo >"$T/dns/policies.txt"

# ---------------------------------------------------------------------------------------------
# Start everything
# ---------------------------------------------------------------------------------------------
start() { # start NAME COMMAND...  (foreground daemon, logs in $T/NAME.{out,err})
    local name=$1; shift
    "$@" >"$T/$name.out" 2>"$T/$name.err" &
    PIDS+=("$!")
}

declare -A PID_OF PORT_OF H2PORT_OF
PORT_OF=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
H2PORT_OF=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_H2_PORT [haproxy]=$HAPROXY_H2_PORT)

log "temp dir $T; open-file limit $NOFILE; proxies: ${PROXIES[*]}; scenarios: ${SCEN[*]}"
log "ports: backend=$BACKEND_PORT nginx=$NGINX_PORT (h2c $NGINX_H2_PORT) haproxy=$HAPROXY_PORT (h2c $HAPROXY_H2_PORT) meridian=$MERIDIAN_PORT dns: meridian=$MDNS_PORT knot=$KNOT_PORT"
start backend "$NGINX" -p "$T/backend" -e "$T/backend/error.log" -c "$T/backend/nginx.conf"
wait_for 10 "backend nginx" http_ok "http://127.0.0.1:$BACKEND_PORT/"
wait_for 10 "backend nginx on 127.0.0.2" http_ok "http://127.0.0.2:$BACKEND_PORT/"
start nginx "$NGINX" -p "$T/nginx" -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf"
PID_OF[nginx]=${PIDS[-1]}
start haproxy "$HAPROXY" -db -f "$T/haproxy/haproxy.cfg"
PID_OF[haproxy]=${PIDS[-1]}
if want dns; then
    start knot "$KNOTD" -c "$T/knot/knot.conf"
    start gdnsd "$GDNSD" -c "$T/gdnsd" start
fi
if [[ -n "$MERIDIAN_BIN" ]]; then
    start meridian env RUST_LOG="${MERIDIAN_LOG:-info}" "$MERIDIAN_BIN" serve --config "$T/meridian/node.toml"
    MERIDIAN_PID=${PIDS[-1]}
    PID_OF[meridian]=$MERIDIAN_PID
fi
wait_for 10 "nginx proxy" http_ok "http://127.0.0.1:$NGINX_PORT/"
wait_for 10 "haproxy" http_ok "http://127.0.0.1:$HAPROXY_PORT/"
if want dns; then
    wait_for 10 "knot" bash -c "dig +time=1 +tries=1 @127.0.0.1 -p $KNOT_PORT www.bench.test A +short | grep -q 127.0.0.10"
    wait_for 10 "gdnsd" bash -c "dig +time=1 +tries=1 @127.0.0.1 -p $GDNSD_PORT www.bench.test A +short | grep -q 127.0.0.10"
fi
if [[ -n "$MERIDIAN_BIN" ]]; then
    wait_for 60 "meridian ready line" grep -q '^meridian ready:' "$T/meridian.out"
    log "$(grep '^meridian ready:' "$T/meridian.out")"

    wait_for 10 "initial admin password" test -s "$T/meridian/data/initial-admin-password"
    PASSWORD=$(tr -d '\r\n' <"$T/meridian/data/initial-admin-password")
    TOKEN_JSON=$(curl -fsS -u "admin:$PASSWORD" -H 'Content-Type: application/json' \
        -d '{"name":"perf"}' "http://127.0.0.1:$ADMIN_PORT/api/v1/tokens")
    TOKEN=$(sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p' <<<"$TOKEN_JSON")
    [[ -n "$TOKEN" ]] || die "no token in: $TOKEN_JSON"
    curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' -H 'If-Match: *' \
        --data-binary @"$T/meridian/config.toml" "http://127.0.0.1:$ADMIN_PORT/api/v1/config" >"$T/meridian/apply.json" \
        || die "config apply failed"
    log "meridian config applied: $(cat "$T/meridian/apply.json")"
    wait_for 20 "meridian proxy" http_ok "http://127.0.0.1:$MERIDIAN_PORT/"
    wait_for 20 "meridian dns (static)" bash -c "dig +time=1 +tries=1 @127.0.0.1 -p $MDNS_PORT www.bench.test A +short | grep -q 127.0.0.10"
    # Both GSLB sites healthy (the health checks have passed) before DNS is measured.
    wait_for 20 "meridian dns (gslb, two sites)" bash -c "[ \$(dig +time=1 +tries=1 @127.0.0.1 -p $MDNS_PORT app.bench.test A +short | wc -l) -eq 2 ]"
fi

# ---------------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------------
# Converts a wrk or h2load latency ("812.00us", "1.23ms", "2.01s") to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v == "") { print "n/a"; exit }
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

declare -A R # results: R[key,field]; HTTP keys are SCENARIO,PROXY
get() { printf '%s' "${R[$1]:-n/a}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# The proxy's process tree (the started process and all its descendants), one PID a line.
tree_pids() {
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { n = 1; q[1] = root
              for (i = 1; i <= n; i++) { m = split(kids[q[i]], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j] }
              for (i = 1; i <= n; i++) print q[i] }'
}
# utime + stime in clock ticks, summed over the tree (/proc/PID/stat sums all of a process's threads).
cpu_ticks() {
    local pid stat sum=0 f
    for pid in $(tree_pids "$1"); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -r -a f <<<"${stat##*) }" # fields 3.. (state first): utime is field 14, stime 15
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}
# A /proc/PID/status field in kB (VmRSS, VmHWM), summed over the tree.
mem_kb() {
    local pid sum=0 v
    for pid in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
nprocs() { tree_pids "$1" | wc -l; }
cpu_per_100k() { # cpu_per_100k TICKS REQUESTS
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n + 0 <= 0) print "n/a"; else printf "%.3f", t / hz / n * 100000 }'
}
# PCT percentile (nearest rank) of a sorted one-number-a-line file, divided by DIV, 3 decimals.
pct_file() { # pct_file FILE PCT DIV
    awk -v p="$2" -v d="$3" -v n="$(wc -l <"$1")" '
        BEGIN { if (n == 0) { print "n/a"; exit } k = int(n * p / 100 + 0.999999); if (k < 1) k = 1 }
        NR == k { printf "%.3f", $1 / d; exit }' "$1"
}

declare -A CMD=(
    [ka50]="wrk -t$WRK_THREADS -c50 -d${DURATION}s --latency http://127.0.0.1:PORT/"
    [ka1000]="wrk -t$WRK_THREADS -c1000 -d${DURATION}s --latency http://127.0.0.1:PORT/"
    [big]="wrk -t$WRK_THREADS -c50 -d${DURATION}s --latency http://127.0.0.1:PORT/100k"
    [close]="wrk -t$WRK_THREADS -c50 -d${DURATION}s --latency -H 'Connection: close' http://127.0.0.1:PORT/"
    [h2]="h2load -c$H2_CLIENTS -m$H2_STREAMS -t1 -D$DURATION --log-file=FILE http://127.0.0.1:PORT/")

run_wrk() { # run_wrk SCENARIO PROXY CONNECTIONS PATH [EXTRA WRK ARGS...]
    local s=$1 p=$2 c=$3 path=$4; shift 4
    local url="http://127.0.0.1:${PORT_OF[$p]}$path" out="$T/wrk-$s-$p.txt" k="$s,$p" t0 t1 rc=0
    log "$s: $p: wrk warm-up ${WARMUP}s"
    "$WRK" -t"$WRK_THREADS" -c"$c" -d"${WARMUP}s" "$@" "$url" >"$T/wrk-$s-$p.warmup.txt" 2>&1 || true
    log "$s: $p: wrk ${DURATION}s"
    t0=$(cpu_ticks "${PID_OF[$p]}")
    local recorder=""
    if [[ -n "${PERF_RECORD:-}" && "$p" == meridian ]]; then
        # Call graphs of Meridian under this load (PERF_RECORD=1), for perf/RESULTS.md.
        perf record --call-graph "${PERF_CALLGRAPH:-fp}" -F 499 -p "${PID_OF[$p]}" -o "$T/perf-$s.data" -- sleep "$DURATION" \
            >"$T/perf-$s.log" 2>&1 &
        recorder=$!
    fi
    local counter=""
    if [[ -n "${SYSCALLS:-}" ]]; then
        # System calls and context switches of the whole proxy tree (SYSCALLS=1).
        perf stat -x, -e raw_syscalls:sys_enter,context-switches \
            -p "$(tree_pids "${PID_OF[$p]}" | paste -sd,)" -o "$T/stat-$s-$p.csv" -- sleep "$DURATION" \
            >/dev/null 2>&1 &
        counter=$!
    fi
    "$WRK" -t"$WRK_THREADS" -c"$c" -d"${DURATION}s" --latency "$@" "$url" >"$out" 2>&1 || rc=$?
    t1=$(cpu_ticks "${PID_OF[$p]}")
    if [[ -n "$counter" ]]; then
        wait "$counter" || true
        local reqs
        reqs=$(awk '/ requests in / {print $1}' "$out")
        awk -F, -v n="${reqs:-0}" -v who="$s $p" '
            $3 ~ /sys_enter/ {sc = $1} $3 ~ /context-switches/ {cs = $1}
            END { if (n > 0) printf "%s: %.2f syscalls and %.2f context switches per request\n", who, sc / n, cs / n }' \
            "$T/stat-$s-$p.csv" | tee -a "$PERF_OUT/syscalls.txt" >&2
    fi
    if [[ -n "$recorder" ]]; then
        wait "$recorder" || true
        {
            echo "## self time by symbol"
            perf report -i "$T/perf-$s.data" --no-children -g none --stdio --percent-limit 0.5 \
                --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/  */ /g' | head -n 60
            echo "## inclusive time (children) by symbol"
            perf report -i "$T/perf-$s.data" --children -g none --stdio --percent-limit 3 \
                --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/  */ /g' | head -n 80
        } >"$PERF_OUT/profile-$s.txt" || true
        log "$s: profile of meridian in $PERF_OUT/profile-$s.txt"
    fi
    if ((rc)) || ! grep -q '^Requests/sec:' "$out"; then
        log "$s: $p: wrk failed (exit $rc): $(tail -n 3 "$out" | tr '\n' ' ')"
        R[$k,note]="wrk failed (exit $rc)"
        return 0
    fi
    R[$k,rps]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    R[$k,p50]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    R[$k,p99]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    R[$k,non2xx]=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    R[$k,errors]=$(awk '/Socket errors:/ {n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i; print n}' "$out")
    R[$k,total]=$(awk '/ requests in / {print $1}' "$out")
    R[$k,xfer]=$(awk '/^Transfer\/sec:/ {print $2}' "$out")
    R[$k,err]="${R[$k,non2xx]:-0} / ${R[$k,errors]:-0}"
    R[$k,cpu]=$(cpu_per_100k $((t1 - t0)) "${R[$k,total]}")
}

run_h2load() { # run_h2load PROXY
    local p=$1
    local k="h2,$p" out="$T/h2load-$p.txt" lat="$T/h2load-$p.log" t0 t1 probe rc=0
    local url="http://127.0.0.1:${H2PORT_OF[$p]}/" why
    # h2c with prior knowledge: the connection starts with the HTTP/2 preface, no Upgrade.
    probe=$(curl -sS --http2-prior-knowledge --max-time 3 -o /dev/null -w '%{http_version} %{http_code}' \
        "$url" 2>"$T/h2probe-$p.err") || true
    if [[ "$probe" != "2 200" ]]; then
        why="HTTP version ${probe%% *}, status ${probe##* }"
        [[ -s "$T/h2probe-$p.err" ]] && why+="; $(head -n 1 "$T/h2probe-$p.err")"
        log "h2: $p: no HTTP/2 prior-knowledge answer ($why); reported as n/a"
        R[$k,note]="no h2c prior-knowledge answer on its HTTP port ($why)"
        return 0
    fi
    log "h2: $p: h2load warm-up ${WARMUP}s"
    "$H2LOAD" -c"$H2_CLIENTS" -m"$H2_STREAMS" -t1 -D"$WARMUP" "$url" >"$T/h2load-$p.warmup.txt" 2>&1 || true
    log "h2: $p: h2load ${DURATION}s"
    t0=$(cpu_ticks "${PID_OF[$p]}")
    "$H2LOAD" -c"$H2_CLIENTS" -m"$H2_STREAMS" -t1 -D"$DURATION" --log-file="$lat" "$url" >"$out" 2>&1 || rc=$?
    t1=$(cpu_ticks "${PID_OF[$p]}")
    R[$k,rps]=$(awk '/^finished in/ {printf "%.0f", $4}' "$out")
    R[$k,total]=$(awk '$1 == "requests:" {print $6}' "$out")
    if ((rc)) || [[ -z "${R[$k,rps]}" || "${R[$k,total]:-0}" -eq 0 ]]; then
        log "h2: $p: h2load failed (exit $rc): $(tail -n 3 "$out" | tr '\n' ' ')"
        R[$k,rps]=""
        R[$k,note]="h2load failed (exit $rc)"
        return 0
    fi
    R[$k,non2xx]=$(awk '$1 == "status" && $2 == "codes:" {print $5 + $7 + $9}' "$out")
    R[$k,errors]=$(awk '$1 == "requests:" {print $10}' "$out")
    R[$k,err]="${R[$k,non2xx]:-0} / ${R[$k,errors]:-0}"
    R[$k,mean]=$(to_ms "$(awk '$1 == "time" && $3 == "request:" {print $6}' "$out")")
    R[$k,max]=$(to_ms "$(awk '$1 == "time" && $3 == "request:" {print $5}' "$out")")
    # Percentiles from the per-request log: start (us), status (-1 = failed), duration (us).
    awk -F'\t' '$2 > 0 {print $3}' "$lat" | sort -n >"$lat.sorted"
    R[$k,p50]=$(pct_file "$lat.sorted" 50 1000)
    R[$k,p99]=$(pct_file "$lat.sorted" 99 1000)
    rm -f "$lat" "$lat.sorted"
    R[$k,cpu]=$(cpu_per_100k $((t1 - t0)) "${R[$k,total]}")
}

# Opens IDLE_CONNS idle connections to the proxy (perf/idle_conns.py), and samples the proxy's
# RSS once they are all established and accepted, well before any idle timeout (30 s or more).
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
run_idle() { # run_idle PROXY
    local p=$1
    local port=${PORT_OF[$p]} out="$T/idle-$p.txt" k="idle,$p" before with est deadline
    log "idle: $p: opening $IDLE_CONNS $IDLE_MODE connections"
    before=$(mem_kb "${PID_OF[$p]}" VmRSS)
    : >"$out"
    "$PYTHON" "$HERE/idle_conns.py" --port "$port" --count "$IDLE_CONNS" --mode "$IDLE_MODE" --hold 120 >"$out" 2>&1 &
    IDLE_PID=$!
    deadline=$((SECONDS + 90))
    until grep -q -e '^open ' -e '^error' "$out"; do
        kill -0 "$IDLE_PID" 2>/dev/null && ((SECONDS < deadline)) || break
        sleep 0.2
    done
    if ! grep -q '^open ' "$out"; then
        kill -TERM "$IDLE_PID" 2>/dev/null || true
        wait "$IDLE_PID" 2>/dev/null || true
        IDLE_PID=""
        log "idle: $p: failed: $(tr '\n' ' ' <"$out")"
        R[$k,note]="could not open $IDLE_CONNS connections: $(head -n 1 "$out")"
        return 0
    fi
    deadline=$((SECONDS + 10))
    while (($(established "$port") < IDLE_CONNS && SECONDS < deadline)); do sleep 0.2; done
    sleep 2 # let the proxy accept every connection and set it up
    with=$(mem_kb "${PID_OF[$p]}" VmRSS)
    est=$(established "$port")
    kill -TERM "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=""
    R[$k,before]=$before
    R[$k,with]=$with
    R[$k,per]=$(awk -v a="$before" -v b="$with" -v n="$IDLE_CONNS" 'BEGIN { printf "%.2f", (b - a) / n }')
    R[$k,held]="$est / $(awk '/^alive/ {print $2}' "$out")"
    log "idle: $p: RSS $before kB -> $with kB with $IDLE_CONNS connections ($(head -n 1 "$out"); $(tail -n 1 "$out"))"
    sleep 1 # let the closes settle before the next proxy
}

DNSPERF_CMD="dnsperf -s 127.0.0.1 -p PORT -d QUERYFILE -l $DURATION -c $DNSPERF_CLIENTS -q $DNSPERF_OUTSTANDING -v"
run_dnsperf() { # run_dnsperf KEY PORT QUERYFILE
    local key=$1 port=$2 qf=$3 out="$T/dnsperf-$1.txt"
    log "dnsperf ${DURATION}s: $key ($(basename "$qf"))"
    local recorder=""
    if [[ -n "${PERF_RECORD:-}" && "$key" == m_* ]]; then
        # Call graphs of Meridian's DNS under this load (PERF_RECORD=1), for perf/RESULTS.md.
        perf record --call-graph "${PERF_CALLGRAPH:-fp}" -F 499 -p "$MERIDIAN_PID" -o "$T/perf-dns-$key.data" \
            -- sleep "$DURATION" >"$T/perf-dns-$key.log" 2>&1 &
        recorder=$!
    fi
    "$DNSPERF" -s 127.0.0.1 -p "$port" -d "$qf" -l "$DURATION" -c "$DNSPERF_CLIENTS" \
        -q "$DNSPERF_OUTSTANDING" -v >"$out" 2>&1
    if [[ -n "$recorder" ]]; then
        wait "$recorder" || true
        perf report -i "$T/perf-dns-$key.data" --no-children --sort symbol -g none --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -n 60 >"$PERF_OUT/perf-dns-$key.txt" || true
        log "profile of $key in $PERF_OUT/perf-dns-$key.txt"
    fi
    R[$key,rps]=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$out")
    # -v prints one "> RCODE name type latency" line per response; percentiles from those.
    local lat="$T/dnsperf-$1.lat"
    awk '$1 == ">" && $2 != "T" && $2 != "I" {print $NF}' "$out" | sort -g >"$lat"
    local n; n=$(wc -l <"$lat")
    pct() { awk -v n="$n" -v p="$1" 'BEGIN {k = int(n * p / 100); if (k < 1) k = 1} NR == k {printf "%.3f", $1 * 1000; exit}' "$lat"; }
    R[$key,p50]=$(pct 50)
    R[$key,p99]=$(pct 99)
    R[$key,lost]=$(awk '/Queries lost:/ {print $3}' "$out")
    R[$key,rcodes]=$(sed -n 's/^ *Response codes: *//p' "$out")
    R[$key,size]=$(sed -n 's/^ *Average packet size: *request \([0-9]*\), response \([0-9]*\).*/\1\/\2/p' "$out")
    rm -f "$lat"
}

# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------
# Sanity: every proxy returns the backend's body, and the whole 100 KB file.
for p in "${PROXIES[@]}"; do
    http_ok "http://127.0.0.1:${PORT_OF[$p]}/" || die "$p does not return ok"
    if want big; then
        size=$(curl -fsS --max-time 5 -o /dev/null -w '%{size_download}' "http://127.0.0.1:${PORT_OF[$p]}/100k") || size=0
        [[ "$size" -eq $BIG_BYTES ]] || die "$p returned $size bytes for /100k, not $BIG_BYTES"
    fi
done

# Idle connections first, on freshly started proxies: after the load runs, memory that the
# allocators kept from 1,000 busy connections would absorb the idle connections' growth.
for p in "${PROXIES[@]}"; do R[mem,$p,procs]=$(nprocs "${PID_OF[$p]}"); done
if want idle; then
    for p in "${PROXIES[@]}"; do run_idle "$p"; done
fi

for s in "${HTTP_SCENARIOS[@]}"; do
    for p in "${PROXIES[@]}"; do
        case $s in
            ka50) run_wrk "$s" "$p" 50 / ;;
            ka1000) run_wrk "$s" "$p" 1000 / ;;
            big) run_wrk "$s" "$p" 50 /100k ;;
            close) run_wrk "$s" "$p" 50 / -H 'Connection: close' ;;
            h2) run_h2load "$p" ;;
        esac
    done
done

# RSS after the load runs, and the peak so far (idle test and load runs; DNS comes after).
for p in "${PROXIES[@]}"; do
    R[mem,$p,rss]=$(mem_kb "${PID_OF[$p]}" VmRSS)
    R[mem,$p,hwm]=$(mem_kb "${PID_OF[$p]}" VmHWM)
done

# Applies 100 config revisions to Meridian, one after the other (a TXT record's text changes
# each time), as fast as the API takes them; says how many it applied.
churn_config() {
    local i n=0
    for i in $(seq 1 100); do
        sed "s/^  { name = \"www\", type = \"A\"/  { name = \"churn\", type = \"TXT\", value = \"rev $i\" },\n&/" \
            "$T/meridian/config.toml" >"$T/meridian/churn.toml"
        curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' \
            -H 'If-Match: *' --data-binary @"$T/meridian/churn.toml" "http://127.0.0.1:$ADMIN_PORT/api/v1/config" \
            && n=$((n + 1))
    done
    echo "$n" >"$T/dns/churned"
}

if want dns; then
    [[ -n "$MERIDIAN_BIN" ]] && run_dnsperf m_static "$MDNS_PORT" "$T/dns/static.txt"
    run_dnsperf k_static "$KNOT_PORT" "$T/dns/static.txt"
    run_dnsperf g_static "$GDNSD_PORT" "$T/dns/static.txt"
    [[ -n "$MERIDIAN_BIN" ]] && run_dnsperf m_mixed "$MDNS_PORT" "$T/dns/mixed.txt"
    run_dnsperf k_mixed "$KNOT_PORT" "$T/dns/mixed.txt"
    run_dnsperf g_mixed "$GDNSD_PORT" "$T/dns/mixed.txt"
    if [[ -n "$MERIDIAN_BIN" ]]; then
        run_dnsperf m_policies "$MDNS_PORT" "$T/dns/policies.txt"
        churn_config &
        CHURN_PID=$!
        run_dnsperf m_churn "$MDNS_PORT" "$T/dns/mixed.txt"
        wait "$CHURN_PID" || true
        R[m_churn,revisions]=$(cat "$T/dns/churned" 2>/dev/null || echo 0)
    fi
fi

METRICS=""
MERIDIAN_RSS_KB="?"
if [[ -n "$MERIDIAN_BIN" ]]; then
    # Meridian's own view, for the record (request counters by status).
    METRICS=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
        | grep -E '^meridian_(lb_requests_total|lb_upstream_|lb_connections_total|lb_client_errors_total|dns_queries_total)' || true)
    MERIDIAN_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$MERIDIAN_PID/status" 2>/dev/null || echo "?")
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (+ uncommitted changes)" || true)
ver() { "$@" 2>&1 | head -n1 | tr -d '\r'; }
mb() { awk -v k="$1" 'BEGIN { if (k == "" || k == "n/a") print "n/a"; else printf "%.1f", k / 1024 }'; }

declare -A TITLE=(
    [ka50]="small responses, keepalive, 50 connections"
    [ka1000]="small responses, keepalive, 1,000 connections"
    [big]="100 KB responses, keepalive, 50 connections"
    [close]="a new connection per request (\`Connection: close\`), 50 concurrent"
    [h2]="HTTP/2 cleartext (h2c, prior knowledge), 50 connections × 10 streams")

http_table() { # http_table SCENARIO NUMBER
    local s=$1 n=$2 p r1 r2 extra_h="" extra_s="" extra
    [[ $s == h2 ]] && { extra_h=" mean ms | max ms |"; extra_s="---:|---:|"; }
    echo "#### 1.$n $s — ${TITLE[$s]}"
    echo
    echo "Command: \`${CMD[$s]}\`, after a ${WARMUP}s warm-up with the same load."
    [[ $s == h2 ]] && echo "p50/p99 from h2load's per-request log (\`--log-file\`); mean and max are h2load's \"time for request\"."
    echo
    echo "| proxy | req/s | p50 ms | p99 ms |$extra_h non-2xx / errors | CPU s per 100k req | Meridian/this (req/s) | Meridian/this (p99) |"
    echo "|---|---:|---:|---:|$extra_s---:|---:|---:|---:|"
    for p in "${PROXIES[@]}"; do
        if [[ $p == meridian ]]; then
            r1="—"; r2="—"
        elif [[ -n "$MERIDIAN_BIN" ]]; then
            r1=$(ratio "$(get "$s,meridian,rps")" "$(get "$s,$p,rps")"); r2=$(ratio "$(get "$s,meridian,p99")" "$(get "$s,$p,p99")")
        else
            r1="n/a"; r2="n/a"
        fi
        extra=""
        [[ $s == h2 ]] && extra=" $(get "$s,$p,mean") | $(get "$s,$p,max") |"
        echo "| $p | $(get "$s,$p,rps") | $(get "$s,$p,p50") | $(get "$s,$p,p99") |$extra $(get "$s,$p,err") | $(get "$s,$p,cpu") | $r1 | $r2 |"
    done
    for p in "${PROXIES[@]}"; do
        [[ -n "${R[$s,$p,note]:-}" ]] && { echo; echo "$p: n/a — ${R[$s,$p,note]}."; }
    done
    if [[ $s == big ]]; then
        echo
        printf 'Transfer/sec (wrk):'
        for p in "${PROXIES[@]}"; do printf ' %s %s;' "$p" "$(get "$s,$p,xfer")"; done
        echo
    fi
    echo
}

if [[ ! -s "$RESULTS" ]]; then
    printf '# Meridian benchmark results\n\nAppended by `perf/run.sh`, newest last. See perf/README.md for what is measured and the caveats.\n' >"$RESULTS"
fi
{
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$COMMIT\`$DIRTY"
    echo
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
    echo "Load generator, proxy/server and backend share these cores; nothing is pinned."
    if [[ -n "$MERIDIAN_BIN" ]]; then
        mver="meridian $("$MERIDIAN_BIN" --version | awk '{print $2}') (\`${MERIDIAN_BIN#"$ROOT"/}\`, RUST_LOG=${MERIDIAN_LOG:-info})"
    else
        mver="Meridian not run (\`ONLY=anchors\`)"
    fi
    echo "Versions: $(ver "$NGINX" -v); $(ver "$HAPROXY" -v | cut -d' ' -f1-3); $(ver "$WRK" -v | cut -d' ' -f1-2); $(ver "$H2LOAD" --version); knotd $("$KNOTD" -V 2>&1 | awk '{print $NF}'); gdnsd $("$GDNSD" -h 2>&1 | sed -n 's/^gdnsd version //p' | head -n1); dnsperf $("$DNSPERF" -h 2>&1 | sed -n 's/^Version //p' | head -n1); $mver."
    echo "Scenarios: ${SCEN[*]} (\`DURATION=$DURATION WARMUP=$WARMUP\`); open-file limit $NOFILE."
    if ((${#HTTP_SCENARIOS[@]})); then
        echo
        echo "### 1. HTTP reverse proxy"
        echo
        echo "Backend: nginx, 1 worker, \`return 200 \"ok\"\` on \`/\` and a ${BIG_BYTES}-byte file on \`/100k\` (sendfile), keepalive."
        echo "Proxies, 2 workers each: Meridian (listener → route → pool, health-checked member; 2 data-plane worker threads, one single-threaded tokio runtime per core), nginx \`proxy_pass\`"
        echo "(worker_processes 2, upstream keepalive 256 per worker, X-Forwarded-For, proxy_max_temp_file_size 0; h2c on a second \`listen ... http2\` port),"
        echo "haproxy (http mode, nbthread 2, option forwardfor, http-reuse always; h2c on a second \`bind ... proto h2\` port). Upstream is HTTP/1.1 keepalive for all."
        echo "CPU s per 100k req: utime+stime of the proxy's whole process tree (/proc/PID/stat) over the measured run, per 100,000 completed requests"
        echo "(clock tick $CLK_TCK Hz). non-2xx / errors: wrk's non-2xx-or-3xx responses / socket errors; h2load's non-2xx responses / failed requests."
        echo
        n=0
        for s in "${HTTP_SCENARIOS[@]}"; do n=$((n + 1)); http_table "$s" "$n"; done
    fi
    if want idle || ((${#HTTP_SCENARIOS[@]})); then
        echo "### 2. Memory"
        echo
        echo "VmRSS/VmHWM summed over each proxy's process tree (nginx: master + 2 workers, which share pages, so its sum overstates its footprint)."
        if want idle; then
            echo "Idle connections, tested first on the freshly started proxies: \`perf/idle_conns.py\` opens $IDLE_CONNS connections from 127.0.0.1–4"
            echo "($(case $IDLE_MODE in silent) echo "nothing sent" ;; partial) echo "half a request line sent" ;; keepalive) echo "one request answered, then left idle" ;; esac)) and holds them;"
            echo "RSS is sampled 2 s after all are established, well inside every proxy's idle timeout."
            echo "Held: connections established on the proxy's port when sampled / still open on the client side when released."
        fi
        echo "After load: VmRSS once the HTTP scenarios are done. Peak: VmHWM at that point (covers the idle test and the HTTP scenarios, not DNS)."
        echo
        echo "| proxy | processes | RSS at rest MB | RSS with $IDLE_CONNS idle MB | kB per idle conn | held | RSS after load MB | peak RSS MB |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        for p in "${PROXIES[@]}"; do
            echo "| $p | $(get "mem,$p,procs") | $(mb "$(get "idle,$p,before")") | $(mb "$(get "idle,$p,with")") | $(get "idle,$p,per") | $(get "idle,$p,held") | $(mb "$(get "mem,$p,rss")") | $(mb "$(get "mem,$p,hwm")") |"
        done
        for p in "${PROXIES[@]}"; do
            [[ -n "${R[idle,$p,note]:-}" ]] && { echo; echo "$p: n/a — ${R[idle,$p,note]}."; }
        done
    fi
    if want dns; then
        echo
        echo "### 3. Authoritative DNS over UDP"
        echo
        echo "Zone bench.test: \`www\` a static A record; \`app\` a GSLB record with two healthy sites in Meridian and the equivalent static"
        echo "two-address RRset in knot and gdnsd (udp-workers / udp_threads = cores). \`static\` queries only \`www A\`; \`mixed\` alternates \`www A\` and \`app A\`."
        echo "Command: \`$DNSPERF_CMD\` (latency percentiles from the per-response \`-v\` lines)."
        echo
        echo "| server | queries | qps | p50 ms | p99 ms | lost | bytes req/resp | response codes | Meridian/knot (qps) | Meridian/knot (p99) |"
        echo "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"
        for q in static mixed; do
            [[ -n "$MERIDIAN_BIN" ]] && echo "| meridian | $q | $(get "m_$q,rps") | $(get "m_$q,p50") | $(get "m_$q,p99") | $(get "m_$q,lost") | $(get "m_$q,size") | $(get "m_$q,rcodes") | $(ratio "$(get "m_$q,rps")" "$(get "k_$q,rps")") | $(ratio "$(get "m_$q,p99")" "$(get "k_$q,p99")") |"
            echo "| knot | $q | $(get "k_$q,rps") | $(get "k_$q,p50") | $(get "k_$q,p99") | $(get "k_$q,lost") | $(get "k_$q,size") | $(get "k_$q,rcodes") | — | — |"
            echo "| gdnsd | $q | $(get "g_$q,rps") | $(get "g_$q,p50") | $(get "g_$q,p99") | $(get "g_$q,lost") | $(get "g_$q,size") | $(get "g_$q,rcodes") | — | — |"
        done
        if [[ -n "$MERIDIAN_BIN" ]]; then
            echo "| meridian | policies | $(get "m_policies,rps") | $(get "m_policies,p50") | $(get "m_policies,p99") | $(get "m_policies,lost") | $(get "m_policies,size") | $(get "m_policies,rcodes") | $(ratio "$(get "m_policies,rps")" "$(get "k_mixed,rps")") | $(ratio "$(get "m_policies,p99")" "$(get "k_mixed,p99")") |"
            echo "| meridian | mixed, $(get "m_churn,revisions") revisions applied | $(get "m_churn,rps") | $(get "m_churn,p50") | $(get "m_churn,p99") | $(get "m_churn,lost") | $(get "m_churn,size") | $(get "m_churn,rcodes") | $(ratio "$(get "m_churn,rps")" "$(get "k_mixed,rps")") | $(ratio "$(get "m_churn,p99")" "$(get "k_mixed,p99")") |"
            echo
            echo "\`policies\` cycles the GSLB names of every policy (all, failover, weighted, round_robin, persistent, geo); its ratios are to knot's \`mixed\`."
            echo "The last row is \`mixed\` while 100 configuration revisions are applied through the API during the run (each one recompiles the zones and swaps them in)."
        fi
    fi
    if [[ -n "$MERIDIAN_BIN" ]]; then
        echo
        echo "Meridian peak RSS at the end of the run: ${MERIDIAN_RSS_KB} kB. Meridian counters after the run:"
        echo
        echo '```'
        echo "${METRICS:-"(metrics not available)"}"
        echo '```'
    fi
} | tee -a "$RESULTS"
log "appended to $RESULTS"
