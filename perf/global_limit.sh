#!/usr/bin/env bash
# Global rate-limit accuracy: three Meridian appliances, each in its own network namespace on
# one bridge (as on a LAN), share one limit of RATE requests per second for a route
# (`global = true`). wrk drives ten times the rate and more, unevenly (connections 6:3:1), and
# then the load shifts (1:3:6). The admitted rate summed over the three nodes, from their
# metrics, is compared with RATE: the error of the cluster-wide limit. For contrast, the same
# load against the same limit without `global` (each node enforces the whole rate).
#
# Envoy's global rate-limit service, the anchor the issue names, is not in Debian (envoy and
# the Go ratelimit service with Redis): it is not run here.
#
# Needs root (ip netns). Appends a dated section to perf/RESULTS.md. Knobs: DURATION (s per
# phase, default 10), RATE (default 200), MERIDIAN_BIN, RESULTS=path, KEEP_TMP=1.
set -euo pipefail

TAG=global-perf
TOOLS="nginx:nginx-light wrk:wrk ip:iproute2"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RATE=${RATE:-200}
[ "$(id -u)" -eq 0 ] || die "needs root for ip netns"

# The LAN: a bridge holding 10.251.7.1, three namespaces at .2, .3, .4.
BR=mgbr$$
NET=10.251.7
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
NSS=()
lan_cleanup() {
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    ip link del "$BR" 2>/dev/null || true
}
trap 'cleanup; lan_cleanup' EXIT
for i in 1 2 3; do
    ns=mg$$n$i
    ip netns add "$ns"
    NSS+=("$ns")
    ip link add "mg$$v$i" type veth peer name "mg$$p$i"
    ip link set "mg$$p$i" netns "$ns"
    ip link set "mg$$v$i" master "$BR"
    ip link set "mg$$v$i" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$NET.$((i + 1))/24" dev "mg$$p$i"
    ip netns exec "$ns" ip link set "mg$$p$i" up
done

# The backend on the bridge: every node proxies to it.
BACKEND=$(free_port)
mkdir -p "$T/backend" "$T/www"
chmod 755 "$T/backend" "$T/www"
echo ok >"$T/www/index.html"
cat >"$T/backend/nginx.conf" <<CONF
$(nginx_preamble backend 1 4096)
    server { listen $NET.1:$BACKEND backlog=4096; root $T/www; }
}
CONF
start backend "$NGINX" -p "$T/backend" -c "$T/backend/nginx.conf"

# node I [JOIN]: starts node I in its namespace.
node() {
    local i=$1 ip=$NET.$(($1 + 1))
    local dir=$T/n$i
    mkdir -p "$dir"
    chmod 700 "$dir"
    cat >"$T/n$i.toml" <<CONF
node_id = $i
name = "n$i"
data_dir = "$dir"
admin_bind = "$ip:9090"
cluster_bind = "$ip:9700"
cluster_plaintext_ok = true
dns_bind = "$ip:8053"
CONF
    if [[ $i -gt 1 ]]; then
        printf 'join = "%s"\ncluster_secret_file = "%s"\n' "$NET.2:9700" "$T/n1/cluster.secret" >>"$T/n$i.toml"
    fi
    start "n$i" ip netns exec "mg$$n$i" env RUST_LOG=warn "$MERIDIAN_BIN" serve --config "$T/n$i.toml"
    wait_for 60 "node $i" grep -q '^meridian ready:' "$T/n$i.out"
}
node 1
password=$(tr -d '\r\n' <"$T/n1/initial-admin-password")
ADMIN=https://$NET.2:9090
# The console is HTTPS off loopback, with a certificate of its own: -k.
TOKEN=$(curl -kfsS -u "admin:$password" -H 'Content-Type: application/json' -d '{"name":"perf"}' \
    "$ADMIN/api/v1/tokens" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
node 2
node 3

apply() {
    cat >"$T/config.toml" <<CONF
api_version = "meridian/v1"
listeners = [{ name = "web", bind = "0.0.0.0:8080" }]
pools = [{ name = "p", members = [{ address = "$NET.1:$BACKEND" }] }]
[[routes]]
name = "api"
listener = "web"
pool = "p"
rate_limit = { requests = $RATE, burst = $((RATE / 10)), key = { by = "route" }, global = $1 }
CONF
    curl -kfsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/toml' \
        -H 'If-Match: *' --data-binary @"$T/config.toml" "$ADMIN/api/v1/config" >/dev/null \
        || die "config apply failed"
    for i in 1 2 3; do
        wait_for 20 "route on node $i" curl -s -o /dev/null "http://$NET.$((i + 1)):8080/"
    done
}

# admitted: the three nodes' admitted counters, summed.
admitted() {
    local sum=0 v
    for i in 1 2 3; do
        v=$(curl -kfsS -H "Authorization: Bearer $TOKEN" "https://$NET.$((i + 1)):9090/metrics" |
            awk '/^meridian_lb_rate_limit_total\{outcome="admitted",route="api"\}/{print $2}')
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# phase C1 C2 C3: wrk on each node with that many connections for DURATION; echoes the
# admitted rate and the offered rate.
phase() {
    local before after offered=0 i
    before=$(admitted)
    for i in 1 2 3; do
        wrk -t1 -c"${!i}" -d"${DURATION}s" "http://$NET.$((i + 1)):8080/" >"$T/wrk.$i" 2>&1 &
    done
    wait $(jobs -p | tail -3)
    after=$(admitted)
    for i in 1 2 3; do
        offered=$(awk -v o="$offered" '/^Requests\/sec:/{printf "%.0f", o + $2}' "$T/wrk.$i")
    done
    awk -v a=$((after - before)) -v d="$DURATION" -v o="$offered" 'BEGIN{ printf "%.1f %s\n", a / d, o }'
}
err() { awk -v a="$1" -v r="$RATE" 'BEGIN{ printf "%+.1f %%", (a - r) * 100 / r }'; }

declare -A ADM OFF
for mode in true false; do
    apply "$mode"
    log "global=$mode: warm-up"
    DURATION=2 phase 6 3 1 >/dev/null
    log "global=$mode: load 6:3:1"
    read -r ADM[$mode.a] OFF[$mode.a] < <(phase 6 3 1)
    log "global=$mode: load shifted to 1:3:6"
    read -r ADM[$mode.b] OFF[$mode.b] < <(phase 1 3 6)
done

{
    echo
    echo "## Global rate limit — $(date -u '+%Y-%m-%d %H:%M UTC') — commit \`$(git -C "$ROOT" rev-parse --short HEAD)\`"
    echo
    echo "\`perf/global_limit.sh\` (DURATION=${DURATION}s per phase, RATE=$RATE/s, burst $((RATE / 10))): three"
    echo "appliances in their own network namespaces, one route limit keyed by route; wrk on each"
    echo "node at once, connections 6:3:1, then shifted to 1:3:6. Admitted = the nodes' admitted"
    echo "counters summed, per second. Envoy's global rate-limit service is not in Debian; not run."
    echo
    echo "| limit | load | offered req/s | admitted req/s | error against $RATE/s |"
    echo "|---|---|---|---|---|"
    for mode in true false; do
        label=$([[ $mode == true ]] && echo "global" || echo "per node (not global)")
        echo "| $label | 6:3:1 | ${OFF[$mode.a]} | ${ADM[$mode.a]} | $(err "${ADM[$mode.a]}") |"
        echo "| $label | 1:3:6 | ${OFF[$mode.b]} | ${ADM[$mode.b]} | $(err "${ADM[$mode.b]}") |"
    done
} | tee -a "$RESULTS"
