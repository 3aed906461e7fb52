#!/usr/bin/env bash
# Build the VM bench image (needs root: debootstrap, chroot, file ownership):
#
#   scripts/vm/build-image.sh OUTDIR [WHEELHOUSE]
#
# OUTDIR receives rootfs.img (ext4, packed with mkfs.ext4 -d: no loop mount), vmlinuz and
# initrd.img (the guest's own Debian kernel, taken out of the rootfs), kernel-version and
# packages.txt.  The image is Debian bookworm with Debian's kernel, gpio-sim built out of tree
# (scripts/vm/gpio-sim), the packages scripts/install wants already present (the guest has no
# network), and a boot unit that runs scripts/vm/runner.py from the host's 9p share.
# With WHEELHOUSE (scripts/vm-test's, with its requirements.txt), /opt/edged/venv is made here at
# native speed with edged's third-party packages, as a Pi that had edged installed before would have
# it: scripts/install in the guest then takes its update path for the venv (pip installs edged
# itself), which saves minutes of unpacking and byte-compiling under TCG.  `vm-test --fresh-venv`
# removes it in the guest so that scripts/install makes the venv from nothing.
# The steps both images share are in scripts/vm/image-lib.sh.  Mirror: $EDGED_VM_MIRROR, else the
# Debian mirror apt uses on this host.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-image.sh OUTDIR [WHEELHOUSE]}
WHEELS=${2:-}
IMG_NAME=vm-bench IMG_ARCH=amd64 IMG_FOREIGN=0 IMG_CONSOLE=ttyS0 IMG_LOG_TAG=vm-image
# what scripts/install needs (APT_REQUIRED + espeak-ng), the hardware tools, Debian's kernel
PACKAGES=(
  systemd-sysv udev kmod dbus procps
  python3 python3-venv python3-dev libasound2-dev libsystemd-dev pkg-config gcc
  alsa-utils espeak-ng sox gpiod
  linux-image-amd64
)
BUILD_ONLY=(linux-headers-amd64 make xz-utils)
# a small initrd: the guest needs virtio and ext4 to mount its root, nothing else
INITRD_MODULES=(virtio_pci virtio_blk ext4)
# shellcheck source=scripts/vm/image-lib.sh
. "$HERE/image-lib.sh"

start_build
bootstrap_rootfs
mount_chroot
install_packages
build_gpio_sim

if [ -n "$WHEELS" ]; then
  log "pre-seeding /opt/edged/venv from $WHEELS"
  mkdir -p "$root/tmp/wheels" && cp "$WHEELS"/*.whl "$WHEELS/requirements.txt" "$root/tmp/wheels/"
  in_root python3 -m venv --system-site-packages /opt/edged/venv
  # as scripts/install does when it makes the venv: pip brought up to date (from the wheelhouse)
  in_root /opt/edged/venv/bin/python -m pip install -q --disable-pip-version-check --no-index \
    --find-links /tmp/wheels --upgrade pip
  in_root /opt/edged/venv/bin/python -m pip install -q --disable-pip-version-check --no-index \
    --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
  # and, as on that Pi, the stack's PYTHONOPTIMIZE=2 byte code where the unit reads it: the guest's
  # scripts/install (edged precompile) then compiles only edged itself and keeps these
  log "compiling the stack's opt-2 byte code into /opt/edged/pycache"
  in_root env PYTHONPYCACHEPREFIX=/opt/edged/pycache /opt/edged/venv/bin/python -OO -m compileall -q -j0 \
    -x '/(tests?|idlelib|tkinter|lib2to3|ensurepip|turtledemo)/' \
    /usr/lib/python3.11 /opt/edged/venv/lib/python3.11/site-packages > /dev/null \
    || log "some files did not compile (they stay source; the import system compiles them if used)"
fi

strip_build_tools
finish_guest "$HERE/guest"
pack_image 600
