#!/usr/bin/env bash
# Meridian benchmark harness: Meridian side by side with Debian-packaged anchors, on loopback.
#
#   1. HTTP/1.1 reverse proxy: nginx backend <- {Meridian, nginx proxy_pass, haproxy} <- wrk
#   2. Authoritative DNS over UDP: {Meridian, knot} <- dnsperf
#
# Every daemon runs in the foreground with its own config in a temp dir, on free loopback ports;
# everything started here is stopped on exit. A dated section is appended to perf/RESULTS.md.
# See perf/README.md. Environment knobs:
#   DURATION=10        seconds per measured run          WARMUP=2  seconds of HTTP warm-up per proxy
#   MERIDIAN_BIN=path  use this binary instead of building target/release/meridian
#   NO_INSTALL=1       do not apt-get install missing tools   KEEP_TMP=1  keep the temp dir
#   RESULTS=path       where to append (default perf/RESULTS.md)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
WRK_THREADS=1
WRK_CONNS=50
DNSPERF_CLIENTS=4
DNSPERF_OUTSTANDING=100

log() { printf '[perf %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
declare -A PKG_FOR=([nginx]=nginx-light [haproxy]=haproxy [wrk]=wrk [knotd]=knot [dnsperf]=dnsperf
                    [curl]=curl [dig]=bind9-dnsutils [ss]=iproute2)
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
        for svc in nginx haproxy knot; do
            systemctl is-active --quiet "$svc" 2>/dev/null && before+=("$svc")
        done
    fi
    local sudo=""
    ((EUID == 0)) || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    if [[ -n "$has_systemd" ]]; then
        for svc in nginx haproxy knot; do
            [[ " ${before[*]} " == *" $svc "* ]] && continue
            if systemctl is-active --quiet "$svc" 2>/dev/null; then
                log "stopping $svc.service started by the package install"
                $sudo systemctl stop "$svc" || true
            fi
        done
    fi
}
install_missing
NGINX=$(find_tool nginx); HAPROXY=$(find_tool haproxy); WRK=$(find_tool wrk)
KNOTD=$(find_tool knotd); DNSPERF=$(find_tool dnsperf)

# ---------------------------------------------------------------------------------------------
# Meridian binary
# ---------------------------------------------------------------------------------------------
if [[ -n "${MERIDIAN_BIN:-}" ]]; then
    [[ -x "$MERIDIAN_BIN" ]] || die "MERIDIAN_BIN=$MERIDIAN_BIN is not executable"
else
    log "cargo build --release -j2 --bin meridian (a no-op when up to date)"
    (cd "$ROOT" && cargo build --release -j2 --bin meridian) >&2
    MERIDIAN_BIN="$ROOT/target/release/meridian"
fi

# ---------------------------------------------------------------------------------------------
# Temp dir, process tracking, cleanup
# ---------------------------------------------------------------------------------------------
T=$(mktemp -d /tmp/meridian-perf.XXXXXX)
PIDS=()
cleanup() {
    local rc=$? pid
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
pick_port ADMIN_PORT; pick_port CLUSTER_PORT; pick_port MDNS_PORT; pick_port KNOT_PORT

# ---------------------------------------------------------------------------------------------
# Backend: nginx answering "ok" on 127.0.0.1 and 127.0.0.2 (the second address is a GSLB site)
# ---------------------------------------------------------------------------------------------
nginx_common() { # nginx_common DIR
    cat <<EOF
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
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

mkdir -p "$T/backend" "$T/nginx" "$T/haproxy" "$T/meridian/data" "$T/knot/db" "$T/dns"
{
    nginx_common "$T/backend"
    cat <<EOF
worker_processes 1;
http {
    access_log off;
$(nginx_temp_paths "$T/backend")
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        listen 127.0.0.2:$BACKEND_PORT;
        location / {
            default_type text/plain;
            return 200 "ok";
        }
    }
}
EOF
} >"$T/backend/nginx.conf"

# ---------------------------------------------------------------------------------------------
# Anchor proxies: nginx proxy_pass with upstream keepalive, haproxy in http mode
# ---------------------------------------------------------------------------------------------
{
    nginx_common "$T/nginx"
    cat <<EOF
worker_processes auto;
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
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_buffering on;
        }
    }
}
EOF
} >"$T/nginx/nginx.conf"

cat >"$T/haproxy/haproxy.cfg" <<EOF
global
    maxconn 4096
    log stderr format raw local0 warning

defaults
    mode http
    log global
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

# ---------------------------------------------------------------------------------------------
# Start everything
# ---------------------------------------------------------------------------------------------
start() { # start NAME COMMAND...  (foreground daemon, logs in $T/NAME.{out,err})
    local name=$1; shift
    "$@" >"$T/$name.out" 2>"$T/$name.err" &
    PIDS+=("$!")
}

log "temp dir $T"
log "ports: backend=$BACKEND_PORT nginx=$NGINX_PORT haproxy=$HAPROXY_PORT meridian=$MERIDIAN_PORT dns: meridian=$MDNS_PORT knot=$KNOT_PORT"
start backend "$NGINX" -p "$T/backend" -e "$T/backend/error.log" -c "$T/backend/nginx.conf"
wait_for 10 "backend nginx" http_ok "http://127.0.0.1:$BACKEND_PORT/"
wait_for 10 "backend nginx on 127.0.0.2" http_ok "http://127.0.0.2:$BACKEND_PORT/"
start nginx "$NGINX" -p "$T/nginx" -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf"
start haproxy "$HAPROXY" -db -f "$T/haproxy/haproxy.cfg"
start knot "$KNOTD" -c "$T/knot/knot.conf"
start meridian env RUST_LOG="${MERIDIAN_LOG:-info}" "$MERIDIAN_BIN" serve --config "$T/meridian/node.toml"
MERIDIAN_PID=${PIDS[-1]}
wait_for 10 "nginx proxy" http_ok "http://127.0.0.1:$NGINX_PORT/"
wait_for 10 "haproxy" http_ok "http://127.0.0.1:$HAPROXY_PORT/"
wait_for 10 "knot" bash -c "dig +time=1 +tries=1 @127.0.0.1 -p $KNOT_PORT www.bench.test A +short | grep -q 127.0.0.10"
wait_for 60 "meridian ready line" grep -q '^meridian ready:' "$T/meridian.out"
log "$(grep '^meridian ready:' "$T/meridian.out")"

wait_for 10 "initial admin password" test -s "$T/meridian/data/initial-admin-password"
PASSWORD=$(tr -d '\r\n' <"$T/meridian/data/initial-admin-password")
TOKEN_JSON=$(curl -fsS -u "admin:$PASSWORD" -H 'Content-Type: application/json' \
    -d '{"name":"perf"}' "http://127.0.0.1:$ADMIN_PORT/api/v1/tokens")
TOKEN=$(sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p' <<<"$TOKEN_JSON")
[[ -n "$TOKEN" ]] || die "no token in: $TOKEN_JSON"
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' \
    --data-binary @"$T/meridian/config.toml" "http://127.0.0.1:$ADMIN_PORT/api/v1/config" >"$T/meridian/apply.json" \
    || die "config apply failed"
log "meridian config applied: $(cat "$T/meridian/apply.json")"
wait_for 20 "meridian proxy" http_ok "http://127.0.0.1:$MERIDIAN_PORT/"
wait_for 20 "meridian dns (static)" bash -c "dig +time=1 +tries=1 @127.0.0.1 -p $MDNS_PORT www.bench.test A +short | grep -q 127.0.0.10"
# Both GSLB sites healthy (the health checks have passed) before DNS is measured.
wait_for 20 "meridian dns (gslb, two sites)" bash -c "[ \$(dig +time=1 +tries=1 @127.0.0.1 -p $MDNS_PORT app.bench.test A +short | wc -l) -eq 2 ]"

# ---------------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------------
# Converts a wrk latency ("812.00us", "1.23ms", "2.01s") to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

declare -A R # results: R[key,field]
WRK_CMD="wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency http://127.0.0.1:PORT/"
run_wrk() { # run_wrk KEY PORT
    local key=$1 port=$2 out="$T/wrk-$1.txt"
    log "wrk warm-up ${WARMUP}s: $key"
    "$WRK" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP}s" "http://127.0.0.1:$port/" >/dev/null
    log "wrk ${DURATION}s: $key"
    "$WRK" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/" >"$out"
    R[$key,rps]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    R[$key,p50]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    R[$key,p99]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    R[$key,non2xx]=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    R[$key,non2xx]=${R[$key,non2xx]:-0}
    R[$key,errors]=$(awk '/Socket errors:/ {n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i; print n}' "$out")
    R[$key,errors]=${R[$key,errors]:-0}
    R[$key,total]=$(awk '/requests in/ {print $1}' "$out")
}

DNSPERF_CMD="dnsperf -s 127.0.0.1 -p PORT -d QUERYFILE -l $DURATION -c $DNSPERF_CLIENTS -q $DNSPERF_OUTSTANDING -v"
run_dnsperf() { # run_dnsperf KEY PORT QUERYFILE
    local key=$1 port=$2 qf=$3 out="$T/dnsperf-$1.txt"
    log "dnsperf ${DURATION}s: $key ($(basename "$qf"))"
    "$DNSPERF" -s 127.0.0.1 -p "$port" -d "$qf" -l "$DURATION" -c "$DNSPERF_CLIENTS" \
        -q "$DNSPERF_OUTSTANDING" -v >"$out" 2>&1
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------
# Sanity: every proxy returns the backend's body.
for p in "$MERIDIAN_PORT" "$NGINX_PORT" "$HAPROXY_PORT"; do http_ok "http://127.0.0.1:$p/" || die "proxy on $p does not return ok"; done

run_wrk meridian "$MERIDIAN_PORT"
run_wrk nginx "$NGINX_PORT"
run_wrk haproxy "$HAPROXY_PORT"

run_dnsperf m_static "$MDNS_PORT" "$T/dns/static.txt"
run_dnsperf k_static "$KNOT_PORT" "$T/dns/static.txt"
run_dnsperf m_mixed "$MDNS_PORT" "$T/dns/mixed.txt"
run_dnsperf k_mixed "$KNOT_PORT" "$T/dns/mixed.txt"

# Meridian's own view, for the record (request counters by status).
METRICS=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
    | grep -E '^meridian_(lb_requests_total|dns_queries_total)' || true)
MERIDIAN_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$MERIDIAN_PID/status" 2>/dev/null || echo "?")

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (+ uncommitted changes)" || true)
ver() { "$@" 2>&1 | head -n1 | tr -d '\r'; }
if [[ ! -s "$RESULTS" ]]; then
    printf '# Meridian benchmark results\n\nAppended by `perf/run.sh`, newest last. See perf/README.md for what is measured and the caveats.\n' >"$RESULTS"
fi
{
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$COMMIT\`$DIRTY"
    echo
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
    echo "Load generator, proxy/server and backend share these cores; nothing is pinned."
    echo "Versions: $(ver "$NGINX" -v); $(ver "$HAPROXY" -v | cut -d' ' -f1-3); $(ver "$WRK" -v | cut -d' ' -f1-2); knotd $("$KNOTD" -V 2>&1 | awk '{print $NF}'); dnsperf $("$DNSPERF" -h 2>&1 | sed -n 's/^Version //p' | head -n1); meridian $("$MERIDIAN_BIN" --version | awk '{print $2}') (\`${MERIDIAN_BIN#"$ROOT"/}\`, RUST_LOG=${MERIDIAN_LOG:-info})."
    echo
    echo "### 1. HTTP/1.1 reverse proxy"
    echo
    echo "Backend: nginx, 1 worker, \`return 200 \"ok\"\`, keepalive. Proxies: Meridian (listener → route → pool, health-checked member),"
    echo "nginx \`proxy_pass\` (worker_processes auto, upstream keepalive 256, X-Forwarded-For), haproxy (http mode, nbthread auto, option forwardfor, http-reuse always)."
    echo "Each proxy gets a ${WARMUP}s warm-up, then: \`$WRK_CMD\`."
    echo
    echo "| proxy | req/s | p50 ms | p99 ms | non-2xx | socket errors | Meridian/this (req/s) | Meridian/this (p99) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for k in meridian nginx haproxy; do
        if [[ $k == meridian ]]; then r1="—"; r2="—"; else r1=$(ratio "${R[meridian,rps]}" "${R[$k,rps]}"); r2=$(ratio "${R[meridian,p99]}" "${R[$k,p99]}"); fi
        echo "| $k | ${R[$k,rps]} | ${R[$k,p50]} | ${R[$k,p99]} | ${R[$k,non2xx]} | ${R[$k,errors]} | $r1 | $r2 |"
    done
    echo
    echo "### 2. Authoritative DNS over UDP"
    echo
    echo "Zone bench.test: \`www\` a static A record; \`app\` a GSLB record with two healthy sites in Meridian and the equivalent static"
    echo "two-address RRset in knot (udp-workers = cores). \`static\` queries only \`www A\`; \`mixed\` alternates \`www A\` and \`app A\`."
    echo "Command: \`$DNSPERF_CMD\` (latency percentiles from the per-response \`-v\` lines)."
    echo
    echo "| server | queries | qps | p50 ms | p99 ms | lost | bytes req/resp | response codes | Meridian/knot (qps) | Meridian/knot (p99) |"
    echo "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"
    for q in static mixed; do
        echo "| meridian | $q | ${R[m_$q,rps]} | ${R[m_$q,p50]} | ${R[m_$q,p99]} | ${R[m_$q,lost]} | ${R[m_$q,size]} | ${R[m_$q,rcodes]} | $(ratio "${R[m_$q,rps]}" "${R[k_$q,rps]}") | $(ratio "${R[m_$q,p99]}" "${R[k_$q,p99]}") |"
        echo "| knot | $q | ${R[k_$q,rps]} | ${R[k_$q,p50]} | ${R[k_$q,p99]} | ${R[k_$q,lost]} | ${R[k_$q,size]} | ${R[k_$q,rcodes]} | — | — |"
    done
    echo
    echo "Meridian peak RSS: ${MERIDIAN_RSS_KB} kB. Meridian counters after the run:"
    echo
    echo '```'
    echo "${METRICS:-"(metrics not available)"}"
    echo '```'
} | tee -a "$RESULTS"
log "appended to $RESULTS"
