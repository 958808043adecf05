#!/usr/bin/env bash
# Cache benchmark: Meridian, Varnish and nginx `proxy_cache` side by side on loopback, each
# answering cache hits for the same objects from the same nginx backend (which says
# `Cache-Control: max-age=3600`). Measured in one run:
#
#   hits/s       wrk -t1 -c50 on a 1 KB and on a 100 KB object, warm (every answer a hit)
#   per CPU-s    the rate divided by the cache's own CPU time during the run
#                (each measured ROUNDS times, the three caches taking turns; the median counts)
#   stampede     1,000 concurrent requests for one cold key, one connection each, against a
#                backend that takes 500 ms: how many reached the backend
#
# Varnish runs with its defaults (malloc storage, 256 MB); nginx with 2 workers, a 1 GB
# proxy_cache and, for the stampede, `proxy_cache_lock on`; Meridian with its defaults (2
# workers, 256 MB memory tier, disk tier on). Appends a dated section to perf/RESULTS.md.
# Knobs: DURATION (s, default 10), ROUNDS (default 3), MERIDIAN_BIN, RESULTS=path, KEEP_TMP=1,
# PERF_RECORD=1 (perf record -g of Meridian during its first 1 KB run, to $PERF_OUT/cache.data,
# default /tmp).
set -euo pipefail

TAG=cache-perf
TOOLS="nginx:nginx-light wrk:wrk varnishd:varnish python3:python3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VARNISHD=$(PATH="$PATH:/usr/sbin" command -v varnishd) || die "varnishd not found"

mkdir -p "$T/www/obj"
chmod -R 755 "$T/www"
head -c 1024 /dev/urandom >"$T/www/obj/1k.bin"
head -c 102400 /dev/urandom >"$T/www/obj/100k.bin"
chmod 644 "$T/www/obj/"*
backend_nginx "root $T/www; location /obj/ { expires 1h; }"

# The slow backend of the stampede: 500 ms per answer, counting what it gets.
SLOW=$(free_port)
cat >"$T/slow.py" <<'PY'
import http.server, sys, threading, time
lock = threading.Lock()
count = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        global count
        with lock:
            count += 1
            with open(sys.argv[2], "w") as f:
                f.write(str(count))
        time.sleep(0.5)
        body = b"x" * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 4096
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
start slow python3 "$T/slow.py" "$SLOW" "$T/slow.count"

NGINX_PORT=$(free_port); MERIDIAN_PORT=$(free_port); VARNISH_PORT=$(free_port)
mkdir -p "$T/nginx/cache"
front_nginx "proxy_cache_path $T/nginx/cache levels=1:2 keys_zone=c:64m max_size=1g inactive=1h;
    upstream slow { server 127.0.0.1:$SLOW; }" \
    "listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location /cold/ {
            proxy_pass http://slow;
            proxy_cache c;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
        }" \
    "proxy_cache c;"
mkdir -p "$T/varnish"
cat >"$T/varnish/default.vcl" <<VCL
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$BACKEND"; }
backend slow { .host = "127.0.0.1"; .port = "$SLOW"; }
sub vcl_recv { if (req.url ~ "^/cold/") { set req.backend_hint = slow; } }
VCL
start varnish "$VARNISHD" -F -j none -n "$T/varnish/work" -a "127.0.0.1:$VARNISH_PORT" \
    -f "$T/varnish/default.vcl" -s malloc,256m -p thread_pool_min=50
wait_for 10 backend curl -fsS "http://127.0.0.1:$BACKEND/obj/1k.bin"
meridian_start
declare -A PID_OF=([nginx]=${PIDS[2]} [varnish]=${PIDS[3]} [meridian]=$MERIDIAN_PID)
declare -A PORT_OF=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT)
cat >"$T/config.toml" <<CONF
api_version = "meridian/v1"
listeners = [{ name = "bench", bind = "127.0.0.1:$MERIDIAN_PORT" }]
[[routes]]
name = "all"
listener = "bench"
pool = "backend"
cache = {}
[[routes]]
name = "cold"
listener = "bench"
path_prefix = "/cold"
pool = "slow"
cache = {}
[[pools]]
name = "backend"
members = [{ address = "127.0.0.1:$BACKEND" }]
[[pools]]
name = "slow"
timeout_ms = 10000
members = [{ address = "127.0.0.1:$SLOW" }]
CONF
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' \
    -H 'If-Match: *' --data-binary @"$T/config.toml" "http://127.0.0.1:$ADMIN/api/v1/config" \
    >/dev/null || die "config apply failed"
for p in meridian nginx varnish; do
    wait_for 30 "$p" curl -fsS "http://127.0.0.1:${PORT_OF[$p]}/obj/1k.bin"
done

ROUNDS=${ROUNDS:-3}
# median VALUES...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A RPS PCPU STAMPEDE ROUND_RATIOS
for size in 1k 100k; do
    for p in meridian varnish nginx; do
        url="http://127.0.0.1:${PORT_OF[$p]}/obj/$size.bin"
        # Byte for byte the backend's object, and a hit the second time.
        curl -fsS -o "$T/$p.$size" "$url"
        cmp -s "$T/$p.$size" "$T/www/obj/$size.bin" || die "$p: $size differs from the backend's"
        log "$p $size: warm-up"
        wrk -t1 -c50 -d2s "$url" >/dev/null 2>&1 || true
    done
    declare -A rates=() cpus=()
    for round in $(seq "$ROUNDS"); do
        declare -A this=()
        for p in meridian varnish nginx; do
            url="http://127.0.0.1:${PORT_OF[$p]}/obj/$size.bin"
            log "$p $size: ${DURATION}s (round $round of $ROUNDS)"
            if [[ -n "${PERF_RECORD:-}" && $p == meridian && $size == 1k && $round == 1 ]]; then
                perf record -g -o "${PERF_OUT:-/tmp}/cache.data" -p "${PID_OF[$p]}" -- sleep "$DURATION" >/dev/null 2>&1 &
            fi
            c0=$(cpu_ticks "${PID_OF[$p]}")
            r=$(wrk -t1 -c50 -d"${DURATION}s" "$url" | awk '/^Requests\/sec:/{print $2}')
            c1=$(cpu_ticks "${PID_OF[$p]}")
            rates[$p]="${rates[$p]:-} $r"
            this[$p]=$(per_cpu "$r" $((c1 - c0)))
            cpus[$p]="${cpus[$p]:-} ${this[$p]}"
            sleep 1
        done
        ROUND_RATIOS[$size]="${ROUND_RATIOS[$size]:-}${ROUND_RATIOS[$size]:+, }$(ratio "${this[meridian]}" "$(best "${this[varnish]}" "${this[nginx]}")")"
    done
    for p in meridian varnish nginx; do
        # shellcheck disable=SC2086 # word splitting is the point
        RPS[$p.$size]=$(median ${rates[$p]})
        # shellcheck disable=SC2086
        PCPU[$p.$size]=$(median ${cpus[$p]})
    done
done

# The stampede: 1,000 requests at once, each on its own connection, for a key nobody has
# asked for yet, per proxy (curl --parallel stops at 300 at once, hence Python).
cat >"$T/stampede.py" <<'PY'
import asyncio, sys
port, path = int(sys.argv[1]), sys.argv[2]
async def one():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "none"
async def main():
    codes = await asyncio.gather(*(one() for _ in range(1000)), return_exceptions=True)
    out = {}
    for c in codes:
        c = c if isinstance(c, str) else "error"
        out[c] = out.get(c, 0) + 1
    print(" ".join(f"{v}×{k}" for k, v in sorted(out.items())))
asyncio.run(main())
PY
for p in meridian varnish nginx; do
    echo 0 >"$T/slow.count"
    log "$p: stampede"
    codes=$(python3 "$T/stampede.py" "${PORT_OF[$p]}" "/cold/$p")
    STAMPEDE[$p]="$(cat "$T/slow.count") (answers: $codes)"
done

m1=${PCPU[meridian.1k]}; v1=${PCPU[varnish.1k]}; n1=${PCPU[nginx.1k]}
m2=${PCPU[meridian.100k]}; v2=${PCPU[varnish.100k]}; n2=${PCPU[nginx.100k]}
{
    echo
    echo "## Cache hits — $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo
    echo "\`perf/cache.sh\` (DURATION=${DURATION}s, ROUNDS=$ROUNDS): warm hits from Meridian (memory tier),"
    echo "Varnish (malloc) and nginx \`proxy_cache\`; wrk -t1 -c50 on the same 2 cores. Each figure is the"
    echo "median of $ROUNDS rounds in which the three took turns."
    echo
    echo "| | Meridian | Varnish | nginx | Meridian / better anchor |"
    echo "|---|---|---|---|---|"
    echo "| 1 KB hits/s | ${RPS[meridian.1k]} | ${RPS[varnish.1k]} | ${RPS[nginx.1k]} | $(ratio "${RPS[meridian.1k]}" "$(best "${RPS[varnish.1k]}" "${RPS[nginx.1k]}")") |"
    echo "| 1 KB hits per CPU-s | $m1 | $v1 | $n1 | $(ratio "$m1" "$(best "$v1" "$n1")") |"
    echo "| 100 KB hits/s | ${RPS[meridian.100k]} | ${RPS[varnish.100k]} | ${RPS[nginx.100k]} | $(ratio "${RPS[meridian.100k]}" "$(best "${RPS[varnish.100k]}" "${RPS[nginx.100k]}")") |"
    echo "| 100 KB hits per CPU-s | $m2 | $v2 | $n2 | $(ratio "$m2" "$(best "$v2" "$n2")") |"
    echo "| per CPU-s, each round (1 KB; 100 KB) | ${ROUND_RATIOS[1k]}; ${ROUND_RATIOS[100k]} | | | |"
    echo "| stampede: backend requests for 1,000 concurrent cold requests | ${STAMPEDE[meridian]} | ${STAMPEDE[varnish]} | ${STAMPEDE[nginx]} (proxy_cache_lock on) | |"
} | tee -a "$RESULTS"
