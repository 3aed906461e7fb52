#!/usr/bin/env bash
# Build the arm64 VM bench image (needs root: debootstrap, chroot; aarch64 binaries run on an x86-64
# host through qemu-user-static and binfmt_misc):
#
#   scripts/vm/arm64/build-image.sh OUTDIR
#
# OUTDIR receives rootfs.img (ext4, packed with mkfs.ext4 -d: no loop mount), vmlinuz and initrd.img
# (Debian's arm64 kernel, taken out of the rootfs), kernel-version and packages.txt.  The rootfs is
# Debian bookworm: `debootstrap --foreign --arch=arm64`, its second stage run in a chroot through
# qemu-user-static, then python3, python3-venv, alsa-utils, gpiod, systemd and linux-image-arm64,
# a serial console on ttyAMA0 (qemu's `virt` board), gpio-sim built out of tree in the chroot as the
# x86-64 image does (scripts/vm/gpio-sim: Debian's kernels lack it) and a oneshot unit that runs the
# probe (scripts/vm/arm64/probe.py) from the host's 9p share.  Mirror: $EDGED_VM_MIRROR, else the Debian
# mirror apt uses on this host.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-image.sh OUTDIR}
SUITE=bookworm
PACKAGES=(systemd-sysv udev kmod dbus procps initramfs-tools python3 python3-venv alsa-utils gpiod linux-image-arm64)
BUILD_ONLY=(linux-headers-arm64 gcc make xz-utils)

log() { printf '\033[1m[vm-arm64-image]\033[0m %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "build-image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "build-image.sh: binfmt_misc has no qemu-aarch64 entry" >&2; exit 1; }

host_mirror() {
  local u
  u=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')
  echo "${u:-http://deb.debian.org/debian}"
}
MIRROR=${EDGED_VM_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR%/}
SECURITY=${EDGED_VM_SECURITY_MIRROR:-${MIRROR}-security}

mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "${OUT%/}.build.XXXXXX")
root="$work/root"
mounted=()
cleanup() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  # and whatever debootstrap's second stage left mounted; never delete across a mount (a bound /dev)
  awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
in_root() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }

t0=$SECONDS
log "debootstrap --foreign --arch=arm64 $SUITE from $MIRROR"
debootstrap --foreign --arch=arm64 --variant=minbase "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
log "first stage done in $((SECONDS - t0)) s; second stage through qemu-user-static"
# binfmt's F flag keeps the interpreter open: no qemu-aarch64-static copy inside the rootfs is needed
in_root /debootstrap/debootstrap --second-stage > "$work/second-stage.log" 2>&1 \
  || { tail -n 30 "$work/second-stage.log" >&2; tail -n 30 "$root/debootstrap/debootstrap.log" >&2 || true; exit 1; }
log "second stage done ($((SECONDS - t0)) s)"

for m in proc sys dev dev/pts; do
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    sys) mount -t sysfs sys "$root/sys" ;;
    dev) mount --bind /dev "$root/dev" ;;
    dev/pts) mount --bind /dev/pts "$root/dev/pts" ;;
  esac
  mounted+=("$root/$m")
done
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
cat > "$root/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SRC
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nDpkg::Use-Pty "false";\n' \
  > "$root/etc/apt/apt.conf.d/90vm-bench"
# a small initrd: virtio (PCI on the virt board) and ext4 to mount the root
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$root/etc/initramfs-tools/conf.d/vm-bench.conf"
printf 'virtio_pci\nvirtio_mmio\nvirtio_blk\next4\n' > "$root/etc/initramfs-tools/modules"
log "apt-get install ${PACKAGES[*]} ${BUILD_ONLY[*]}"
in_root apt-get update -qq
in_root apt-get install -y -qq -o Dpkg::Options::=--force-confold "${PACKAGES[@]}" "${BUILD_ONLY[@]}" > "$work/apt.log" 2>&1 \
  || { tail -n 30 "$work/apt.log" >&2; exit 1; }
KVER=$(ls "$root/lib/modules" | sort -V | tail -n1)
HVER=$(in_root dpkg-query -W -f '${Version}' "linux-headers-$KVER")
log "packages installed ($((SECONDS - t0)) s); kernel $KVER (linux $HVER): building gpio-sim out of tree"
in_root sh -c "cd /tmp && apt-get download -qq linux-source-6.1=$HVER"
rm -rf "$root/tmp/gpio-sim" && cp -r "$HERE/../gpio-sim" "$root/tmp/gpio-sim"
in_root sh /tmp/gpio-sim/build.sh "$KVER" "$(cd "$root" && ls tmp/linux-source-6.1_*.deb | sed 's|^|/|')" \
  "/lib/modules/$KVER/updates"
in_root depmod -a "$KVER"
in_root modinfo -F vermagic "/lib/modules/$KVER/updates/gpio-sim-oot.ko" | grep -q "^$KVER " \
  || { echo "gpio-sim-oot.ko: vermagic does not match $KVER" >&2; exit 1; }
log "gpio-sim built ($((SECONDS - t0)) s)"

in_root apt-get purge -y -qq "${BUILD_ONLY[@]}" "linux-headers-$KVER" "linux-headers-${KVER%-arm64}-common" \
  "linux-kbuild-${KVER%%.*}.$(echo "$KVER" | cut -d. -f2)" > /dev/null 2>&1 || true
in_root apt-get autoremove -y -qq --purge > /dev/null 2>&1 || true
in_root apt-get clean
rm -rf "$root"/tmp/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d"
echo vm-arm64 > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vm-arm64\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$root/etc/fstab"
install -m 0755 "$HERE/vm-arm64-boot" "$root/usr/local/sbin/vm-arm64-boot"
install -m 0644 "$HERE/vm-arm64.service" "$root/etc/systemd/system/vm-arm64.service"
in_root systemctl enable vm-arm64.service > /dev/null 2>&1
in_root systemctl mask getty@tty1.service serial-getty@ttyAMA0.service > /dev/null 2>&1
in_root passwd -d root > /dev/null
in_root dpkg-query -W -f '${Package} ${Version}\n' > "$work/packages.txt"

for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[$i]}"; done
mounted=()

log "packing rootfs.img (mkfs.ext4 -d)"
mkdir -p "$work/out"
cp -L "$root/boot/vmlinuz-$KVER" "$work/out/vmlinuz"
cp -L "$root/boot/initrd.img-$KVER" "$work/out/initrd.img"
echo "$KVER" > "$work/out/kernel-version"
mv "$work/packages.txt" "$work/out/packages.txt"
size_mb=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 900 ))
mkfs.ext4 -q -F -L vm-arm64 -E root_owner=0:0 -d "$root" "$work/out/rootfs.img" "${size_mb}M"
rm -rf "$OUT" && mv "$work/out" "$OUT"
log "image ready in $OUT ($((SECONDS - t0)) s)"
