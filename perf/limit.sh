#!/usr/bin/env bash
# Rate-limit accuracy: Meridian, nginx (`limit_req`) and HAProxy (a stick table on
# `http_req_rate`) each limit one client to RATE requests per second (burst RATE/10) in front of
# the same nginx backend, while wrk offers as much as it can (10x the rate or more) for
# DURATION seconds. Admitted = requests answered 2xx; the error is how far admitted/s minus the
# burst's share lies from RATE.
#
# Appends a dated section to perf/RESULTS.md. Knobs: DURATION (s, default 10), RATE (default
# 2000), MERIDIAN_BIN, RESULTS=path, KEEP_TMP=1.
set -euo pipefail

TAG=limit-perf
TOOLS="nginx:nginx-light haproxy:haproxy wrk:wrk"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RATE=${RATE:-2000}
BURST=$((RATE / 10))

backend_nginx 'location / { return 200 "ok"; }'
NGINX_PORT=$(free_port); HAPROXY_PORT=$(free_port); MERIDIAN_PORT=$(free_port)
front_nginx "limit_req_zone \$binary_remote_addr zone=per_client:10m rate=${RATE}r/s;
    limit_req_status 429;" "listen 127.0.0.1:$NGINX_PORT backlog=4096;" \
    "limit_req zone=per_client burst=$BURST nodelay;"
cat >"$T/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend web
    bind 127.0.0.1:$HAPROXY_PORT
    stick-table type ip size 100k expire 30s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt $RATE }
    default_backend nginx
backend nginx
    server b1 127.0.0.1:$BACKEND
CONF
start haproxy "$HAPROXY" -db -f "$T/haproxy.cfg"
wait_for 10 backend curl -fsS "http://127.0.0.1:$BACKEND/"
meridian_start
declare -A PORT_OF=([meridian]=$MERIDIAN_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
meridian_proxy "$MERIDIAN_PORT" "" "rate_limit = { requests = $RATE, burst = $BURST }"
for p in meridian nginx haproxy; do
    wait_for 20 "$p" curl -fsS "http://127.0.0.1:${PORT_OF[$p]}/"
done

declare -A OFFERED ADMITTED ERR
for p in meridian nginx haproxy; do
    sleep 2 # every budget full again
    log "$p: ${DURATION}s at full speed"
    wrk -t1 -c50 -d"${DURATION}s" "http://127.0.0.1:${PORT_OF[$p]}/" >"$T/wrk-$p.txt"
    total=$(awk '/requests in/{print $1}' "$T/wrk-$p.txt")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{print $5}' "$T/wrk-$p.txt")
    admitted=$((total - ${non2xx:-0}))
    OFFERED[$p]=$(awk -v t="$total" -v d="$DURATION" 'BEGIN{printf "%.0f", t / d}')
    ADMITTED[$p]=$(awk -v a="$admitted" -v b="$BURST" -v d="$DURATION" 'BEGIN{printf "%.1f", (a - b) / d}')
    ERR[$p]=$(awk -v a="${ADMITTED[$p]}" -v r="$RATE" 'BEGIN{printf "%+.2f %%", (a - r) / r * 100}')
done
{
    echo
    echo "## Rate-limit accuracy — $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo
    echo "\`perf/limit.sh\` (DURATION=${DURATION}s): one client limited to $RATE req/s, burst $BURST, under"
    echo "wrk -t1 -c50 at full speed; admitted/s = (2xx answers − burst) / duration."
    echo
    echo "| | Meridian | nginx limit_req | HAProxy stick table |"
    echo "|---|---|---|---|"
    echo "| offered req/s | ${OFFERED[meridian]} | ${OFFERED[nginx]} | ${OFFERED[haproxy]} |"
    echo "| overload (offered / rate) | $(awk -v o="${OFFERED[meridian]}" -v r="$RATE" 'BEGIN{printf "%.1f×", o/r}') | $(awk -v o="${OFFERED[nginx]}" -v r="$RATE" 'BEGIN{printf "%.1f×", o/r}') | $(awk -v o="${OFFERED[haproxy]}" -v r="$RATE" 'BEGIN{printf "%.1f×", o/r}') |"
    echo "| admitted req/s | ${ADMITTED[meridian]} | ${ADMITTED[nginx]} | ${ADMITTED[haproxy]} |"
    echo "| error against $RATE/s | ${ERR[meridian]} | ${ERR[nginx]} | ${ERR[haproxy]} |"
} | tee -a "$RESULTS"
