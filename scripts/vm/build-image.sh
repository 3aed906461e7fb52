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
# Mirror: $EDGED_VM_MIRROR, else the Debian mirror apt uses on this host.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-image.sh OUTDIR [WHEELHOUSE]}
WHEELS=${2:-}
SUITE=bookworm
# what scripts/install needs (APT_REQUIRED + espeak-ng), the hardware tools, Debian's kernel
PACKAGES=(
  systemd-sysv udev kmod dbus procps
  python3 python3-venv python3-dev libasound2-dev libsystemd-dev pkg-config gcc
  alsa-utils espeak-ng sox gpiod
  linux-image-amd64
)
BUILD_ONLY=(linux-headers-amd64 make xz-utils)

log() { printf '\033[1m[vm-image]\033[0m %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "build-image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }

host_mirror() {
  # the first Debian (non-security) URI apt uses here, from one-line or deb822 sources
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
  local m
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
in_root() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }

t0=$SECONDS
log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
log "debootstrap done in $((SECONDS - t0)) s"

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
cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
cat > "$root/etc/apt/apt.conf.d/90vm-bench" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Use-Pty "false";
EOF
# a small initrd: the guest needs virtio and ext4 to mount its root, nothing else
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$root/etc/initramfs-tools/conf.d/vm-bench.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' > "$root/etc/initramfs-tools/modules"
log "apt-get install ${PACKAGES[*]} ${BUILD_ONLY[*]}"
in_root apt-get update -qq
in_root apt-get install -y -qq -o Dpkg::Options::=--force-confold "${PACKAGES[@]}" "${BUILD_ONLY[@]}" > "$work/apt.log" 2>&1 \
  || { tail -n 30 "$work/apt.log" >&2; exit 1; }

KVER=$(ls "$root/lib/modules" | sort -V | tail -n1)
HVER=$(in_root dpkg-query -W -f '${Version}' "linux-headers-$KVER")
log "packages installed ($((SECONDS - t0)) s)"
log "kernel $KVER (linux $HVER): building gpio-sim out of tree"
in_root sh -c "cd /tmp && apt-get download -qq linux-source-6.1=$HVER"
rm -rf "$root/tmp/gpio-sim" && cp -r "$HERE/gpio-sim" "$root/tmp/gpio-sim"
in_root sh /tmp/gpio-sim/build.sh "$KVER" "$(cd "$root" && ls tmp/linux-source-6.1_*.deb | sed 's|^|/|')" \
  "/lib/modules/$KVER/updates"
in_root depmod -a "$KVER"
in_root modinfo -F vermagic "/lib/modules/$KVER/updates/gpio-sim-oot.ko" | grep -q "^$KVER " \
  || { echo "gpio-sim-oot.ko: vermagic does not match $KVER" >&2; exit 1; }

if [ -n "$WHEELS" ]; then
  log "pre-seeding /opt/edged/venv from $WHEELS"
  mkdir -p "$root/tmp/wheels" && cp "$WHEELS"/*.whl "$WHEELS/requirements.txt" "$root/tmp/wheels/"
  in_root python3 -m venv --system-site-packages /opt/edged/venv
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

log "configuring the guest"
in_root apt-get purge -y -qq "linux-headers-$KVER" linux-headers-amd64 "linux-headers-${KVER%-amd64}-common" \
  "linux-kbuild-${KVER%%.*}.$(echo "$KVER" | cut -d. -f2)" make xz-utils > /dev/null 2>&1 || true
in_root apt-get clean
rm -rf "$root"/tmp/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d"
echo vm-bench > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vm-bench\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$root/etc/fstab"
install -m 0755 "$HERE/guest/vm-bench-boot" "$root/usr/local/sbin/vm-bench-boot"
install -m 0644 "$HERE/guest/vm-bench.service" "$root/etc/systemd/system/vm-bench.service"
in_root systemctl enable vm-bench.service > /dev/null 2>&1
in_root systemctl mask getty@tty1.service serial-getty@ttyS0.service > /dev/null 2>&1
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
size_mb=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 600 ))
mkfs.ext4 -q -F -L vm-bench -E root_owner=0:0 -d "$root" "$work/out/rootfs.img" "${size_mb}M"
rm -rf "$OUT" && mv "$work/out" "$OUT"
log "image ready in $OUT ($((SECONDS - t0)) s, rootfs $(du -sm "$OUT/rootfs.img" | cut -f1) MB used on disk)"
