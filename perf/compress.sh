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

TAG=compress-perf
TOOLS="nginx:nginx-light wrk:wrk gzip:gzip"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LEVEL=${LEVEL:-5}

mkdir -p "$T/www"
chmod 755 "$T/www"
# 100 KB of real prose.
while [[ $(stat -c %s "$T/www/100k.txt" 2>/dev/null || echo 0) -lt 102400 ]]; do
    cat /usr/share/common-licenses/* >>"$T/www/100k.txt" 2>/dev/null || head -c 4096 /etc/services >>"$T/www/100k.txt"
done
truncate -s 102400 "$T/www/100k.txt"
chmod 644 "$T/www/100k.txt"
backend_nginx "root $T/www;"
NGINX_PORT=$(free_port); MERIDIAN_PORT=$(free_port)
front_nginx "gzip on;
    gzip_comp_level $LEVEL;
    gzip_types text/plain;
    gzip_min_length 1024;
    gzip_proxied any;" "listen 127.0.0.1:$NGINX_PORT backlog=4096;" ""
wait_for 10 backend curl -fsS "http://127.0.0.1:$BACKEND/100k.txt"
meridian_start
declare -A PID_OF=([nginx]=${PIDS[1]} [meridian]=$MERIDIAN_PID)
declare -A PORT_OF=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT)
meridian_proxy "$MERIDIAN_PORT" "" \
    "compression = { codecs = [\"gzip\"], level = $LEVEL, content_types = [\"text/plain\"] }"
for p in meridian nginx; do
    wait_for 20 "$p" curl -fsS "http://127.0.0.1:${PORT_OF[$p]}/100k.txt"
done

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

m_cpu=$(per_cpu "${RPS[meridian]}" "${CPU[meridian]}"); n_cpu=$(per_cpu "${RPS[nginx]}" "${CPU[nginx]}")
{
    echo
    echo "## Compression — $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo
    echo "\`perf/compress.sh\` (DURATION=${DURATION}s): gzip level $LEVEL of a 100 KB text (licence prose),"
    echo "proxied from one nginx backend; Meridian (zlib-tune: zlib-rs with tuned search parameters) against nginx \`gzip on\` (zlib),"
    echo "2 workers each; wrk -t1 -c50 with \`Accept-Encoding: gzip\` on the same 2 cores."
    echo
    echo "| | Meridian | nginx | Meridian / nginx |"
    echo "|---|---|---|---|"
    echo "| req/s | ${RPS[meridian]} | ${RPS[nginx]} | $(ratio "${RPS[meridian]}" "${RPS[nginx]}") |"
    echo "| req per CPU-s of the proxy | $m_cpu | $n_cpu | $(ratio "$m_cpu" "$n_cpu") |"
    echo "| compressed bytes | ${SIZE[meridian]} | ${SIZE[nginx]} | $(ratio "${SIZE[meridian]}" "${SIZE[nginx]}") |"
} | tee -a "$RESULTS"
