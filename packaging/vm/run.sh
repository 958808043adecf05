#!/usr/bin/env bash
# Boots the Debian 12 guest of packaging/vm/build-image.sh (built first if needed) under qemu,
# runs one script in it and exits with that script's status. The guest's console is streamed to
# stdout and kept in a log.
#
# Usage: packaging/vm/run.sh FILES-DIR GUEST-SCRIPT [ARGS...]
#   FILES-DIR      copied to /opt/test in the guest (writable; "-" for none)
#   GUEST-SCRIPT   a host file, run in the guest as root from /opt/test with ARGS (it needs a
#                  shebang; #!/bin/bash and #!/usr/bin/python3 are there)
#
# In the guest: Debian bookworm, kernel 6.1 with the `tls` module already loaded, `lo` up, /tmp
# on tmpfs, no other network. Whatever the script writes under /opt/test/out is copied back to
# $MERIDIAN_VM_OUT when that is set.
#
# Environment (all optional):
#   MERIDIAN_VM_DIR=dir        image cache and run directories (default target/vm)
#   MERIDIAN_VM_TIMEOUT=600    seconds before the guest is killed (exit 124)
#   MERIDIAN_VM_MEM=2048       guest memory in MB
#   MERIDIAN_VM_CPUS=2         guest vCPUs
#   MERIDIAN_VM_ACCEL=tcg      tcg (software emulation), kvm, or auto (KVM when it boots within
#                              MERIDIAN_VM_KVM_PROBE=60 s, else TCG). On the development
#                              machines nested KVM hangs or aborts, so TCG is the default.
#   MERIDIAN_VM_KVM_CPU=host   -cpu for KVM
#   MERIDIAN_VM_INIT=direct    direct: a minimal init runs the script (reached ~15 s after
#                              qemu starts, under TCG); systemd: systemd boots (~30 s) and runs
#                              the script as a service, e.g. to install and start a .deb
#   MERIDIAN_VM_SCRATCH_MB=512 free space on /opt/test besides FILES-DIR
#   MERIDIAN_VM_OUT=dir        copy the guest's /opt/test/out here after the run
#   MERIDIAN_VM_LOG=file       copy the console log here
#   MERIDIAN_VM_QUIET=1        do not stream the console (it is still logged)
#   MERIDIAN_VM_KEEP=1         keep the run directory (disks, console log)
#
# Exit status: the guest script's; 124 on timeout; 125 when the guest never reported one
# (kernel panic, crash, bad image).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export MERIDIAN_VM_DIR=${MERIDIAN_VM_DIR:-$repo/target/vm}
timeout_s=${MERIDIAN_VM_TIMEOUT:-600}
mem=${MERIDIAN_VM_MEM:-2048}
cpus=${MERIDIAN_VM_CPUS:-2}
accel=${MERIDIAN_VM_ACCEL:-tcg}
kvm_probe=${MERIDIAN_VM_KVM_PROBE:-60}
init_mode=${MERIDIAN_VM_INIT:-direct}
scratch_mb=${MERIDIAN_VM_SCRATCH_MB:-512}

log() { echo "vm: $*" >&2; }
die() { log "error: $*"; exit 125; }

[ $# -ge 2 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
files=$1
script=$2
shift 2
[ "$files" = - ] || [ -d "$files" ] || die "FILES-DIR $files is not a directory"
[ -f "$script" ] || die "GUEST-SCRIPT $script not found"
case $accel in tcg | kvm | auto) ;; *) die "MERIDIAN_VM_ACCEL must be tcg, kvm or auto" ;; esac
case $init_mode in direct | systemd) ;; *) die "MERIDIAN_VM_INIT must be direct or systemd" ;; esac
for tool in qemu-system-x86_64 qemu-img mkfs.ext4 debugfs; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: apt-get install --allow-downgrades \
qemu-system-x86 qemu-utils/bookworm e2fsprogs"
done

t_start=$(date +%s.%N)
image=$("$here/build-image.sh" | tail -n 1)
[ -f "$image/.complete" ] || die "no image from build-image.sh"

work=$(mktemp -d "$MERIDIAN_VM_DIR/run.XXXXXX")
qpid=""
stream_pid=""
cleanup() {
    [ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
    [ -n "$stream_pid" ] && kill "$stream_pid" 2>/dev/null
    if [ "${MERIDIAN_VM_KEEP:-}" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the run's disk: FILES-DIR plus the init and the script, mounted on /opt/test -----------
stage=$work/files
mkdir -p "$stage/.vm"
[ "$files" = - ] || cp -a "$files/." "$stage/"
cp "$script" "$stage/.vm/guest-script"
chmod 0755 "$stage/.vm/guest-script"
: >"$stage/.vm/args"
for a in "$@"; do printf '%q ' "$a" >>"$stage/.vm/args"; done
echo "$init_mode" >"$stage/.vm/mode"

# PID 1 after /sbin/vm-init (which mounted this disk). Direct mode runs the script itself;
# systemd mode installs a unit for it and becomes systemd.
cat >"$stage/.vm/init" <<'EOF'
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
LANG=C.UTF-8
export PATH HOME LANG
echo "MERIDIAN-VM-BOOTED"
if [ "$(cat /opt/test/.vm/mode)" = systemd ]; then
    cat >/etc/systemd/system/vm-guest.service <<'UNIT'
[Unit]
Description=packaging/vm guest script
After=multi-user.target

[Service]
# simple, not oneshot: the boot finishes while the script runs (systemctl is-system-running
# --wait in the script would otherwise wait for itself).
Type=simple
ExecStart=/opt/test/.vm/run-guest
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
UNIT
    ln -sf /etc/systemd/system/vm-guest.service /etc/systemd/system/multi-user.target.wants/
    # A login prompt on the console would garble the output.
    ln -sf /dev/null /etc/systemd/system/serial-getty@ttyS0.service
    ln -sf /dev/null /etc/systemd/system/getty@tty1.service
    exec /lib/systemd/systemd
fi
mountpoint -q /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=0620 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname meridian-vm
/opt/test/.vm/run-guest </dev/null
sync
umount /opt/test 2>/dev/null
echo o >/proc/sysrq-trigger
sleep 30
EOF

cat >"$stage/.vm/run-guest" <<'EOF'
#!/bin/bash
# Runs the guest script and reports its status on the console with a marker the host reads.
modprobe tls || echo "run-guest: modprobe tls failed"
ip link set lo up
mkdir -p /opt/test/out
cd /opt/test
echo "MERIDIAN-VM-START uptime=$(cut -d' ' -f1 /proc/uptime)s kernel=$(uname -r)"
eval "set -- $(cat /opt/test/.vm/args)"
/opt/test/.vm/guest-script "$@" 2>&1
rc=$?
sync
echo
echo "MERIDIAN-VM-EXIT=$rc uptime=$(cut -d' ' -f1 /proc/uptime)s"
if [ "$(cat /opt/test/.vm/mode)" = systemd ]; then
    systemctl --no-block poweroff
fi
EOF
chmod 0755 "$stage/.vm/init" "$stage/.vm/run-guest"

files_mb=$(du -sm "$stage" | cut -f1)
truncate -s "$((files_mb + files_mb / 8 + scratch_mb + 16))M" "$work/files.ext4"
mkfs.ext4 -q -F -L vm-files -d "$stage" "$work/files.ext4" >&2
rm -rf "$stage"
# The cached root stays pristine: the guest writes to a throw-away overlay.
qemu-img create -q -f qcow2 -F raw -b "$image/rootfs.ext4" "$work/root.qcow2"

# --- boot ------------------------------------------------------------------------------
console=$work/console.log
cmdline="root=/dev/vda rw console=ttyS0 quiet panic=-1 fastboot fsck.mode=skip init=/sbin/vm-init"
[ "$init_mode" = systemd ] && cmdline="$cmdline systemd.show_status=false"

# run_qemu ACCEL: boots once; sets qrc (qemu's status) and outcome (done, timeout, kvm-hung).
run_qemu() {
    local mode=$1 cpu accel_opt
    if [ "$mode" = kvm ]; then
        cpu=${MERIDIAN_VM_KVM_CPU:-host}
        accel_opt=kvm
    else
        cpu=max
        accel_opt=tcg,thread=multi
    fi
    : >"$console"
    qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
        -accel "$accel_opt" -cpu "$cpu" -smp "$cpus" -m "$mem" \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$cmdline" \
        -drive "file=$work/root.qcow2,format=qcow2,if=virtio,cache=unsafe" \
        -drive "file=$work/files.ext4,format=raw,if=virtio,cache=writeback" \
        -device virtio-rng-pci -nic none -serial "file:$console" -monitor none \
        </dev/null >"$work/qemu.out" 2>&1 &
    qpid=$!
    if [ "${MERIDIAN_VM_QUIET:-}" != 1 ]; then
        tail -n +1 -f --pid="$qpid" "$console" | sed -u 's/\r$//' &
        stream_pid=$!
    fi
    local t0=$SECONDS
    outcome="done"
    while kill -0 "$qpid" 2>/dev/null; do
        if [ $((SECONDS - t0)) -ge "$timeout_s" ]; then
            outcome=timeout
            break
        fi
        if [ "$mode" = kvm ] && [ "$accel" = auto ] && [ $((SECONDS - t0)) -ge "$kvm_probe" ] \
            && ! grep -aq MERIDIAN-VM-BOOTED "$console"; then
            outcome=kvm-hung
            break
        fi
        sleep 1
    done
    if [ "$outcome" != "done" ]; then
        # qemu exits cleanly on SIGTERM (no "Killed" notice from bash); KILL if it must.
        kill -TERM "$qpid" 2>/dev/null || true
        for _ in 1 2 3 4 5; do kill -0 "$qpid" 2>/dev/null && sleep 1; done
        kill -KILL "$qpid" 2>/dev/null || true
    fi
    qrc=0
    wait "$qpid" || qrc=$?
    qpid=""
    if [ -n "$stream_pid" ]; then
        wait "$stream_pid" 2>/dev/null || true
        stream_pid=""
    fi
}

t_boot=$(date +%s.%N)
if [ "$accel" = tcg ]; then
    run_qemu tcg
else
    [ -w /dev/kvm ] || die "MERIDIAN_VM_ACCEL=$accel but /dev/kvm is not usable"
    run_qemu kvm
    if [ "$accel" = auto ] && ! grep -aq MERIDIAN-VM-BOOTED "$console"; then
        log "no boot under KVM ($outcome, qemu exit $qrc); retrying under TCG"
        qemu-img create -q -f qcow2 -F raw -b "$image/rootfs.ext4" "$work/root.qcow2"
        run_qemu tcg
    fi
fi
t_end=$(date +%s.%N)

[ -z "${MERIDIAN_VM_LOG:-}" ] || cp "$console" "$MERIDIAN_VM_LOG"
if [ -s "$work/qemu.out" ]; then
    log "qemu said:"
    sed 's/^/  /' "$work/qemu.out" >&2
fi
if [ -n "${MERIDIAN_VM_OUT:-}" ]; then
    mkdir -p "$MERIDIAN_VM_OUT" "$work/rdump"
    # debugfs reads the guest's disk without mounting it.
    if debugfs -R "rdump /out $work/rdump" "$work/files.ext4" >/dev/null 2>&1 \
        && [ -d "$work/rdump/out" ]; then
        cp -a "$work/rdump/out/." "$MERIDIAN_VM_OUT/"
    else
        log "could not copy /opt/test/out back"
    fi
fi

status=$(tr -d '\r' <"$console" | grep -ao 'MERIDIAN-VM-EXIT=[0-9]*' | tail -n 1 | cut -d= -f2 || true)
start_line=$(tr -d '\r' <"$console" | grep -ao 'MERIDIAN-VM-START uptime=[0-9.]*s' | head -n 1 || true)
timing=$(awk -v a="$t_start" -v b="$t_boot" -v c="$t_end" \
    'BEGIN { printf "image %.1f s, qemu %.1f s", b - a, c - b }')
log "$timing (guest reached the script at ${start_line#*uptime=}; qemu exit $qrc)"
if [ "$outcome" = timeout ]; then
    log "timed out after ${timeout_s} s"
    exit 124
fi
if [ -z "$status" ]; then
    log "the guest reported no exit status (kernel panic or crash?); console: $console"
    MERIDIAN_VM_KEEP=1
    exit 125
fi
log "guest script exited with $status"
exit "$status"
