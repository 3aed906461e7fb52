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
# probe (scripts/vm/arm64/probe.py) from the host's 9p share.  The steps it shares with the x86-64
# image are in scripts/vm/image-lib.sh.  Mirror: $EDGED_VM_MIRROR, else the Debian mirror apt uses on
# this host.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-image.sh OUTDIR}
IMG_NAME=vm-arm64 IMG_ARCH=arm64 IMG_FOREIGN=1 IMG_CONSOLE=ttyAMA0 IMG_LOG_TAG=vm-arm64-image IMG_AUTOREMOVE=1
PACKAGES=(systemd-sysv udev kmod dbus procps initramfs-tools python3 python3-venv alsa-utils gpiod linux-image-arm64)
BUILD_ONLY=(linux-headers-arm64 gcc make xz-utils)
# a small initrd: virtio (PCI on the virt board) and ext4 to mount the root
INITRD_MODULES=(virtio_pci virtio_mmio virtio_blk ext4)
# shellcheck source=scripts/vm/image-lib.sh
. "$HERE/../image-lib.sh"

start_build
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "build-image.sh: binfmt_misc has no qemu-aarch64 entry" >&2; exit 1; }
bootstrap_rootfs
mount_chroot
install_packages
build_gpio_sim
strip_build_tools
finish_guest "$HERE"
pack_image 900
