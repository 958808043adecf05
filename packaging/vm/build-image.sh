#!/usr/bin/env bash
# Builds (once) the Debian 12 guest that packaging/vm/run.sh boots: a debootstrap'ed bookworm
# root with Debian's own kernel (linux-image-amd64, 6.1, which has the `tls` module), turned into
# an ext4 image, plus that kernel and its initrd. Needs root, debootstrap and e2fsprogs.
#
# Usage: packaging/vm/build-image.sh
#   MERIDIAN_VM_DIR=dir     cache directory (default: target/vm in the repository)
#   MERIDIAN_VM_MIRROR=url  Debian mirror (default: http://deb.debian.org/debian)
#   MERIDIAN_VM_REBUILD=1   rebuild even when a cached image exists
#
# The image is cached in $MERIDIAN_VM_DIR/image-<hash of this file>/ (rootfs.ext4, vmlinuz,
# initrd.img, packages.txt): editing this script (e.g. the package list) makes a new image,
# anything else reuses the cached one. Downloaded .debs are kept in $MERIDIAN_VM_DIR/debs.
# Progress and timings go to stderr; the image directory is the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vm_dir=${MERIDIAN_VM_DIR:-$repo/target/vm}
mirror=${MERIDIAN_VM_MIRROR:-http://deb.debian.org/debian}

# What the guests need beyond minbase. The kernel and kmod (modprobe tls); the test tools: curl,
# openssl (certificates), python3 (origin servers, raw kTLS checks), iproute2 (ss shows a
# socket's kTLS state), procps, strace; systemd, dbus and adduser so a later guest can install
# and run Meridian's .deb under systemd.
packages=(
    linux-image-amd64 kmod
    ca-certificates curl openssl python3
    iproute2 procps strace
    systemd systemd-sysv dbus adduser
)

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

key=$(sha256sum "$0" | cut -c1-12)
image=$vm_dir/image-$key

if [ -f "$image/.complete" ] && [ "${MERIDIAN_VM_REBUILD:-}" != 1 ]; then
    log "cached image $image"
    echo "$image"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap mkfs.ext4 chroot; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "$tool not found: apt-get install debootstrap e2fsprogs"
done

mkdir -p "$vm_dir/debs"
# One build at a time per cache directory; a second caller waits, then finds the cache.
exec 9>"$vm_dir/.lock"
flock 9
if [ -f "$image/.complete" ] && [ "${MERIDIAN_VM_REBUILD:-}" != 1 ]; then
    log "cached image $image (built by another run meanwhile)"
    echo "$image"
    exit 0
fi

build=$vm_dir/build-$key
root=$build/root
cleanup() {
    # A chroot can leave proc/sys mounted when debootstrap fails half-way.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
    done
    rm -rf "$build"
}
trap cleanup EXIT
cleanup
mkdir -p "$build"

t0=$(date +%s)
log "debootstrap bookworm (minbase + ${#packages[@]} packages) from $mirror"
include=$(IFS=,; echo "${packages[*]}")
if ! debootstrap --variant=minbase --include="$include" --cache-dir="$vm_dir/debs" \
    bookworm "$root" "$mirror" >"$build/debootstrap.log" 2>&1; then
    tail -n 30 "$build/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (log above)"
fi
t1=$(date +%s)
log "debootstrap done in $((t1 - t0)) s"

# --- guest configuration --------------------------------------------------------------
echo meridian-vm >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1 localhost meridian-vm
::1 localhost ip6-localhost ip6-loopback
EOF
echo "/dev/vda / ext4 rw,errors=remount-ro 0 0" >"$root/etc/fstab"
# No network in the guest; keep apt from trying mirrors if a guest script calls it.
: >"$root/etc/resolv.conf"
# A fresh machine-id per boot (systemd makes one when the file is empty).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# The guest's first process. It stays tiny and generic on purpose: everything else (the real
# init, systemd or not) comes with each run on the second disk, so changing run.sh never
# rebuilds the image.
cat >"$root/sbin/vm-init" <<'EOF'
#!/bin/sh
# packaging/vm: mount the run's disk (/dev/vdb) on /opt/test and hand over to its init.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /opt/test
if mount -t ext4 /dev/vdb /opt/test && [ -x /opt/test/.vm/init ]; then
    exec /opt/test/.vm/init "$@"
fi
echo "vm-init: no /opt/test/.vm/init on /dev/vdb" >/dev/console
echo "MERIDIAN-VM-EXIT=125" >/dev/console
echo o >/proc/sysrq-trigger
EOF
chmod 0755 "$root/sbin/vm-init"

# A small initrd: only what mounts the root (virtio disk, ext4). The default (MODULES=most,
# 36 MB) takes seconds to unpack and probe under TCG; the root has every module anyway.
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
chroot "$root" update-initramfs -u -k all >"$build/initramfs.log" 2>&1 \
    || { cat "$build/initramfs.log" >&2; die "update-initramfs failed"; }
umount "$root/proc"

# Keep the image small: package caches, docs and manuals are not needed in a test guest.
chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* "$root/usr/share/man/"* \
    "$root/usr/share/locale/"* "$root/var/log/"*.log "$root/debootstrap"

kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)
initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n 1)
if [ -z "$kernel" ] || [ -z "$initrd" ]; then die "no kernel or initrd in $root/boot"; fi
kver=${kernel##*/vmlinuz-}
[ -n "$(find "$root/lib/modules/$kver" -name 'tls.ko*' -print -quit)" ] \
    || die "kernel $kver has no tls module"
cp "$kernel" "$build/vmlinuz"
cp "$initrd" "$build/initrd.img"
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$build/packages.txt"
echo "$kver" >"$build/kernel-version"

# --- the ext4 image ------------------------------------------------------------------
# Sparse; guests write to a copy-on-write overlay (run.sh), so the free space is only virtual.
used_mb=$(du -sm "$root" | cut -f1)
size_mb=$((used_mb + 3072))
truncate -s "${size_mb}M" "$build/rootfs.ext4"
mkfs.ext4 -q -F -L meridian-vm -d "$root" -E lazy_itable_init=0,lazy_journal_init=0 \
    "$build/rootfs.ext4" >&2
rm -rf "$root"
t2=$(date +%s)
log "kernel $kver; rootfs ${used_mb} MB of files in a ${size_mb} MB ext4 image ($(du -sm "$build/rootfs.ext4" | cut -f1) MB on disk) in $((t2 - t1)) s"

# Publish atomically, then drop images built by older versions of this script.
touch "$build/.complete"
rm -rf "$image"
mv "$build" "$image"
for old in "$vm_dir"/image-*; do
    [ "$old" = "$image" ] || rm -rf "$old"
done
log "image ready in $((t2 - t0)) s: $image"
echo "$image"
