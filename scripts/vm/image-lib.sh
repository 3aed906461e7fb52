# shellcheck shell=bash
# What the two VM bench images share, sourced by scripts/vm/build-image.sh (x86-64, scripts/vm-test)
# and scripts/vm/arm64/build-image.sh (arm64, scripts/vm-arm64).  Both image keys hash this file, so
# a change here rebuilds both images.
#
# The sourcing script sets, before it sources this file:
#   OUT             the output directory (rootfs.img, vmlinuz, initrd.img, kernel-version, packages.txt)
#   IMG_NAME        the guest's hostname, the rootfs label, and the name of its boot unit
#                   (IMG_NAME.service) and boot script (/usr/local/sbin/IMG_NAME-boot)
#   IMG_ARCH        Debian's architecture: amd64 or arm64 (kernel flavour, headers to purge)
#   IMG_FOREIGN     1: debootstrap --foreign --arch=IMG_ARCH, its second stage in the chroot through
#                   qemu-user-static and binfmt_misc; 0: a native debootstrap
#   IMG_CONSOLE     the serial console whose getty is masked (ttyS0, ttyAMA0)
#   IMG_LOG_TAG     what log lines start with
#   PACKAGES        what the guest keeps (kernel included); BUILD_ONLY, what only gpio-sim's build needs
#   INITRD_MODULES  the modules the initrd carries to mount the root (MODULES=list)
# and calls the steps below in order; between them it may add its own (x86-64: the pre-seeded venv).
# They share these globals: work (the build dir, removed on exit), root (the rootfs inside it),
# mounted (what mount_chroot mounted), KVER and HVER (the kernel's release and Debian version).
# Mirror: $EDGED_VM_MIRROR, else the Debian mirror apt uses on this host; security: $EDGED_VM_SECURITY_MIRROR.

SUITE=bookworm
IMG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)  # scripts/vm: gpio-sim/ is beside it

log() { printf '\033[1m[%s]\033[0m %s\n' "$IMG_LOG_TAG" "$*" >&2; }
in_root() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }

host_mirror() {
  # the first Debian (non-security) URI apt uses here, from one-line or deb822 sources
  local u
  u=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')
  echo "${u:-http://deb.debian.org/debian}"
}

cleanup() {
  # on exit: undo our mounts, then whatever debootstrap's second stage left mounted, then remove the
  # build dir without ever deleting across a mount (a bound /dev)
  local i
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
}

start_build() {
  # root check, the mirrors, the build dir beside OUT and its removal on exit
  [ "$(id -u)" -eq 0 ] || { echo "build-image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
  MIRROR=${EDGED_VM_MIRROR:-$(host_mirror)}
  MIRROR=${MIRROR%/}
  SECURITY=${EDGED_VM_SECURITY_MIRROR:-${MIRROR}-security}
  mkdir -p "$(dirname "$OUT")"
  work=$(mktemp -d "${OUT%/}.build.XXXXXX")
  root="$work/root"
  mounted=()
  trap cleanup EXIT
  t0=$SECONDS
}

bootstrap_rootfs() {
  # the minimal Debian rootfs: native, or foreign with its second stage run through qemu-user-static
  # (binfmt's F flag keeps the interpreter open: no qemu-*-static copy inside the rootfs is needed)
  local foreign=()
  [ "$IMG_FOREIGN" -eq 1 ] && foreign=(--foreign "--arch=$IMG_ARCH")
  log "debootstrap ${foreign[*]:+${foreign[*]} }$SUITE from $MIRROR"
  debootstrap "${foreign[@]}" --variant=minbase "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  if [ "$IMG_FOREIGN" -eq 1 ]; then
    log "first stage done in $((SECONDS - t0)) s; second stage through qemu-user-static"
    in_root /debootstrap/debootstrap --second-stage > "$work/second-stage.log" 2>&1 \
      || { tail -n 30 "$work/second-stage.log" >&2; tail -n 30 "$root/debootstrap/debootstrap.log" >&2 || true; exit 1; }
  fi
  log "debootstrap done in $((SECONDS - t0)) s"
}

mount_chroot() {
  # proc, sys, dev and dev/pts in the rootfs, recorded in mounted for pack_image and cleanup
  local m
  for m in proc sys dev dev/pts; do
    case $m in
      proc) mount -t proc proc "$root/proc" ;;
      sys) mount -t sysfs sys "$root/sys" ;;
      dev) mount --bind /dev "$root/dev" ;;
      dev/pts) mount --bind /dev/pts "$root/dev/pts" ;;
    esac
    mounted+=("$root/$m")
  done
}

install_packages() {
  # apt in the chroot (no daemons started, no recommends), a small initrd (INITRD_MODULES only),
  # PACKAGES and BUILD_ONLY installed; sets KVER and HVER from the kernel that came with them
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
  cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nDpkg::Use-Pty "false";\n' \
    > "$root/etc/apt/apt.conf.d/90vm-bench"
  mkdir -p "$root/etc/initramfs-tools/conf.d"
  printf 'MODULES=list\nCOMPRESS=gzip\n' > "$root/etc/initramfs-tools/conf.d/vm-bench.conf"
  printf '%s\n' "${INITRD_MODULES[@]}" > "$root/etc/initramfs-tools/modules"
  log "apt-get install ${PACKAGES[*]} ${BUILD_ONLY[*]}"
  in_root apt-get update -qq
  in_root apt-get install -y -qq -o Dpkg::Options::=--force-confold "${PACKAGES[@]}" "${BUILD_ONLY[@]}" \
    > "$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }
  KVER=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
  # shellcheck disable=SC2016  # dpkg-query's own ${Version}
  HVER=$(in_root dpkg-query -W -f '${Version}' "linux-headers-$KVER")
  log "packages installed ($((SECONDS - t0)) s)"
}

build_gpio_sim() {
  # gpio-sim-oot.ko for KVER from the same version's linux-source (Debian's kernels lack gpio-sim),
  # built in the chroot by scripts/vm/gpio-sim/build.sh; its vermagic must match the kernel
  log "kernel $KVER (linux $HVER): building gpio-sim out of tree"
  in_root sh -c "cd /tmp && apt-get download -qq linux-source-6.1=$HVER"
  rm -rf "$root/tmp/gpio-sim" && cp -r "$IMG_LIB_DIR/gpio-sim" "$root/tmp/gpio-sim"
  # shellcheck disable=SC2012  # one file, named by Debian
  in_root sh /tmp/gpio-sim/build.sh "$KVER" "$(cd "$root" && ls tmp/linux-source-6.1_*.deb | sed 's|^|/|')" \
    "/lib/modules/$KVER/updates"
  in_root depmod -a "$KVER"
  in_root modinfo -F vermagic "/lib/modules/$KVER/updates/gpio-sim-oot.ko" | grep -q "^$KVER " \
    || { echo "gpio-sim-oot.ko: vermagic does not match $KVER" >&2; exit 1; }
  log "gpio-sim built ($((SECONDS - t0)) s)"
}

strip_build_tools() {
  # BUILD_ONLY and the kernel headers they pulled in purged (with IMG_AUTOREMOVE=1, their other
  # dependencies too), apt's caches and lists, docs, man pages, locales and policy-rc.d removed
  log "configuring the guest"
  in_root apt-get purge -y -qq "${BUILD_ONLY[@]}" "linux-headers-$KVER" "linux-headers-${KVER%-"$IMG_ARCH"}-common" \
    "linux-kbuild-${KVER%%.*}.$(echo "$KVER" | cut -d. -f2)" > /dev/null 2>&1 || true
  if [ "${IMG_AUTOREMOVE:-0}" -eq 1 ]; then
    in_root apt-get autoremove -y -qq --purge > /dev/null 2>&1 || true
  fi
  in_root apt-get clean
  rm -rf "$root"/tmp/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d"
}

finish_guest() {
  # hostname, hosts, fstab; the boot script and unit from DIR ($1: IMG_NAME-boot, IMG_NAME.service),
  # enabled; the gettys masked; root without a password; the package list for packages.txt
  local units=$1
  echo "$IMG_NAME" > "$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$IMG_NAME" > "$root/etc/hosts"
  printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$root/etc/fstab"
  install -m 0755 "$units/$IMG_NAME-boot" "$root/usr/local/sbin/$IMG_NAME-boot"
  install -m 0644 "$units/$IMG_NAME.service" "$root/etc/systemd/system/$IMG_NAME.service"
  in_root systemctl enable "$IMG_NAME.service" > /dev/null 2>&1
  in_root systemctl mask getty@tty1.service "serial-getty@$IMG_CONSOLE.service" > /dev/null 2>&1
  in_root passwd -d root > /dev/null
  # shellcheck disable=SC2016  # dpkg-query's own fields
  in_root dpkg-query -W -f '${Package} ${Version}\n' > "$work/packages.txt"
}

pack_image() {
  # unmount, take the kernel and initrd out, pack the rootfs with mkfs.ext4 -d (no loop mount) at
  # 1.3 times its size plus $1 MiB of free space, and move the result to OUT in one step
  local spare_mb=$1 size_mb i
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[$i]}"; done
  mounted=()
  log "packing rootfs.img (mkfs.ext4 -d)"
  mkdir -p "$work/out"
  cp -L "$root/boot/vmlinuz-$KVER" "$work/out/vmlinuz"
  cp -L "$root/boot/initrd.img-$KVER" "$work/out/initrd.img"
  echo "$KVER" > "$work/out/kernel-version"
  mv "$work/packages.txt" "$work/out/packages.txt"
  size_mb=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + spare_mb ))
  mkfs.ext4 -q -F -L "$IMG_NAME" -E root_owner=0:0 -d "$root" "$work/out/rootfs.img" "${size_mb}M"
  rm -rf "$OUT" && mv "$work/out" "$OUT"
  log "image ready in $OUT ($((SECONDS - t0)) s, rootfs $(du -sm "$OUT/rootfs.img" | cut -f1) MB used on disk)"
}
