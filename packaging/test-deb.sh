#!/usr/bin/env bash
# End-to-end test of the meridian .deb on this machine (or a throwaway VM): builds it,
# inspects it, installs it, runs the packaged daemon briefly as the meridian user,
# removes and purges it. Needs root. Systemd need not be running (the maintainer
# scripts only touch running services when /run/systemd/system exists).
#
# Usage: packaging/test-deb.sh [extra cargo-deb options]
#   MERIDIAN_DEB=path.deb      test this .deb instead of building one
#   MERIDIAN_TEST_PURGE_FIRST=1  purge an already installed meridian (and its data!) first
#
# Prints one PASS/FAIL line per check; exits 1 if any check failed.
set -uo pipefail

cd "$(dirname "$0")/.."

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND... : PASS if the command succeeds.
check() {
    local desc=$1
    shift
    if "$@" >/dev/null 2>&1; then pass "$desc"; else fail "$desc"; fi
}
finish() {
    if [ "$failures" -eq 0 ]; then
        echo "RESULT: PASS (all checks passed)"
        exit 0
    fi
    echo "RESULT: FAIL ($failures check(s) failed)"
    exit 1
}
abort() {
    fail "$*"
    echo "aborting: later checks depend on this one"
    finish
}

tmp=""
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        sleep 1
        kill -KILL "$server_pid" 2>/dev/null
    fi
    [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || abort "must run as root (it installs and purges the package)"

if dpkg-query -W -f='${Status}' meridian 2>/dev/null | grep -q 'installed\|config-files'; then
    if [ "${MERIDIAN_TEST_PURGE_FIRST:-}" = 1 ]; then
        echo "purging the meridian package already present (MERIDIAN_TEST_PURGE_FIRST=1)"
        dpkg --purge meridian || abort "purge the meridian package already present"
    else
        abort "meridian is already installed here; purge it (destroys /var/lib/meridian) or set MERIDIAN_TEST_PURGE_FIRST=1"
    fi
fi

tmp=$(mktemp -d /tmp/meridian-deb-test.XXXXXX)
chmod 0711 "$tmp" # the meridian user must reach $tmp/run

# --- build -------------------------------------------------------------------------
if [ -n "${MERIDIAN_DEB:-}" ]; then
    deb=$MERIDIAN_DEB
    echo "using $deb (MERIDIAN_DEB)"
else
    echo "building the .deb (packaging/build-deb.sh); this takes a few minutes"
    deb=$(packaging/build-deb.sh "$@") || abort "packaging/build-deb.sh"
fi
[ -f "$deb" ] || abort "a .deb was produced ($deb)"
pass "built $deb"

# --- contents ----------------------------------------------------------------------
contents=$(dpkg-deb -c "$deb") || abort "dpkg-deb -c $deb"
# Owner shows as root/root or 0/0 depending on the tar writer.
has_file() { grep -Eq "^-[rwx-]{9} (root/root|0/0) .* \./$1\$" <<<"$contents"; }
check "package has /usr/bin/meridian" has_file 'usr/bin/meridian'
check "/usr/bin/meridian is mode 0755" grep -Eq '^-rwxr-xr-x (root/root|0/0) .* \./usr/bin/meridian$' <<<"$contents"
check "package loads the tls module at boot (kernel TLS)" has_file 'usr/lib/modules-load.d/meridian.conf'
check "package has /etc/meridian/meridian.toml" has_file 'etc/meridian/meridian.toml'
check "package has the systemd unit in /lib or /usr/lib/systemd/system" \
    has_file '(usr/)?lib/systemd/system/meridian\.service'
check "package has /usr/share/doc/meridian/README.md" has_file 'usr/share/doc/meridian/README.md'

info=$(dpkg-deb -I "$deb") || abort "dpkg-deb -I $deb"
field() { dpkg-deb -f "$deb" "$1"; }
check "Package: meridian" test "$(field Package)" = meridian
check "Section: net" test "$(field Section)" = net
check "Priority: optional" test "$(field Priority)" = optional
check "Depends computed (mentions libc6): $(field Depends)" grep -q 'libc6' <<<"$(field Depends)"
check "extended description present" test "$(field Description | wc -l)" -gt 3
check "control has conffiles, postinst, prerm, postrm" \
    bash -c 'for f in conffiles postinst prerm postrm; do grep -Eq " $f( |$)" <<<"$1" || exit 1; done' _ "$info"
conffiles=$(dpkg-deb -I "$deb" conffiles 2>/dev/null)
check "conffiles lists /etc/meridian/meridian.toml" grep -qx '/etc/meridian/meridian.toml' <<<"$conffiles"
postinst=$(dpkg-deb -I "$deb" postinst 2>/dev/null)
check "postinst creates the user and enables the unit" \
    bash -c 'grep -q "adduser" <<<"$1" && grep -q "deb-systemd-helper enable" <<<"$1" && ! grep -q "#DEBHELPER#" <<<"$1"' _ "$postinst"
check "postinst only starts the unit when systemd runs" grep -q '\[ -d /run/systemd/system \]' <<<"$postinst"

mkdir -p "$tmp/root"
dpkg-deb -x "$deb" "$tmp/root" || abort "dpkg-deb -x $deb"
check "/usr/bin/meridian is stripped (no .debug_info, no .symtab)" \
    bash -c '! readelf -S "$1" | grep -Eq "\.debug_info|\.symtab"' _ "$tmp/root/usr/bin/meridian"
unit=$(find "$tmp/root" -path '*/systemd/system/meridian.service' | head -n 1)
for line in 'Type=simple' 'ExecStart=/usr/bin/meridian serve --config /etc/meridian/meridian.toml' \
    'User=meridian' 'Group=meridian' 'StateDirectory=meridian' 'StateDirectoryMode=0700' \
    'AmbientCapabilities=CAP_NET_BIND_SERVICE' 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' \
    'NoNewPrivileges=yes' 'ProtectSystem=strict' 'SystemCallFilter=@system-service' \
    'UMask=0077' 'LimitNOFILE=1048576' 'Restart=on-failure' 'ReadWritePaths=/var/lib/meridian'; do
    check "unit has $line" grep -qx "$line" "$unit"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    # Verified against the extracted tree; only a missing ExecStart binary is tolerated.
    verify=$(systemd-analyze verify --man=no "$unit" 2>&1 | grep -v 'is not executable: No such file')
    check "systemd-analyze verify meridian.service${verify:+: $verify}" test -z "$verify"
fi

# --- install -----------------------------------------------------------------------
if dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1; then
    pass "dpkg -i"
else
    cat "$tmp/dpkg-i.log"
    fail "dpkg -i"
    dpkg --purge meridian >/dev/null 2>&1
    finish
fi
check "package status is 'install ok installed'" \
    test "$(dpkg-query -W -f='${Status}' meridian)" = "install ok installed"
check "user meridian exists (system uid)" bash -c 'u=$(id -u meridian) && [ "$u" -lt 1000 ]'
check "group meridian exists" getent group meridian
check "meridian's home is /var/lib/meridian" test "$(getent passwd meridian | cut -d: -f6)" = /var/lib/meridian
check "/var/lib/meridian is meridian:meridian 0700" \
    test "$(stat -c '%U:%G %a' /var/lib/meridian)" = "meridian:meridian 700"
check "unit enabled (multi-user.target.wants symlink)" \
    test -L /etc/systemd/system/multi-user.target.wants/meridian.service
check "dpkg records the conffile" grep -q '/etc/meridian/meridian.toml' <<<"$(dpkg-query -W -f='${Conffiles}' meridian)"
check "meridian --help works" /usr/bin/meridian --help
check "meridian serve --help shows the default config path" \
    grep -q '/etc/meridian/meridian.toml' <<<"$(/usr/bin/meridian serve --help 2>&1)"

# Second run of postinst: must be idempotent.
check "dpkg-reconfigure-style rerun of postinst (idempotent)" \
    bash -c 'DPKG_MAINTSCRIPT_PACKAGE=meridian DPKG_MAINTSCRIPT_NAME=postinst /var/lib/dpkg/info/meridian.postinst configure 0.0.0'

# --- run the packaged daemon -------------------------------------------------------
run=$tmp/run
install -d -o meridian -g meridian -m 0700 "$run"
sed -e "s|^data_dir = .*|data_dir = \"$run/data\"|" \
    -e 's|^admin_bind = .*|admin_bind = "127.0.0.1:0"|' \
    -e 's|^cluster_bind = .*|cluster_bind = "127.0.0.1:0"|' \
    -e 's|^dns_bind = .*|dns_bind = "127.0.0.1:0"|' \
    /etc/meridian/meridian.toml >"$run/meridian.toml"
chown meridian:meridian "$run/meridian.toml"
check "test config differs from the packaged one only in data_dir and the three binds" \
    test "$(diff /etc/meridian/meridian.toml "$run/meridian.toml" | grep -c '^>')" -eq 4

runuser -u meridian -- /usr/bin/meridian serve --config "$run/meridian.toml" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" &
server_pid=$!
ready=""
for _ in $(seq 1 120); do
    ready=$(grep -m1 '^meridian ready:' "$tmp/serve.out" 2>/dev/null || true)
    [ -n "$ready" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.5
done
if [ -n "$ready" ]; then
    pass "meridian serve printed: $ready"
    admin=$(sed -n 's/.*admin=\(http:\/\/[^ ]*\).*/\1/p' <<<"$ready")
    check "console answers on $admin/login" \
        test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$admin/login")" = 200
    # runuser forks: the daemon is its child (signal the daemon itself, not runuser).
    daemon_pid=$(pgrep -P "$server_pid" -x meridian || echo "$server_pid")
    check "daemon runs as meridian" test "$(ps -o user= -p "$daemon_pid" | tr -d ' ')" = meridian
    pw=$run/data/initial-admin-password
    check "initial-admin-password written, meridian-owned, mode 0600" \
        test "$(stat -c '%U %a' "$pw" 2>/dev/null)" = "meridian 600"
    check "data dir is mode 0700" test "$(stat -c '%a' "$run/data")" = 700
    kill -TERM "$daemon_pid"
    rc=""
    for _ in $(seq 1 40); do
        kill -0 "$server_pid" 2>/dev/null || { wait "$server_pid"; rc=$?; break; }
        sleep 0.5
    done
    check "meridian serve exits 0 on SIGTERM (rc=${rc:-still running})" test "${rc:-1}" = 0
    server_pid=""
else
    fail "meridian serve printed 'meridian ready:' within 60 s"
    echo "--- serve stdout"; cat "$tmp/serve.out"; echo "--- serve stderr"; cat "$tmp/serve.err"
fi

# --- remove, then purge ------------------------------------------------------------
runuser -u meridian -- sh -c 'echo state >/var/lib/meridian/test-marker'
check "dpkg -r meridian" dpkg -r meridian
check "binary gone after remove" test ! -e /usr/bin/meridian
check "data kept after remove" test -f /var/lib/meridian/test-marker
check "conffile kept after remove" test -f /etc/meridian/meridian.toml
check "dpkg --purge meridian" dpkg --purge meridian
check "package gone after purge" bash -c '! dpkg-query -W -f="\${Status}" meridian 2>/dev/null | grep -q "installed\|config-files"'
check "/var/lib/meridian gone after purge" test ! -e /var/lib/meridian
check "/etc/meridian gone after purge" test ! -e /etc/meridian
check "unit no longer enabled after purge" test ! -e /etc/systemd/system/multi-user.target.wants/meridian.service

finish
