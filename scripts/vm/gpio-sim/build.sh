#!/bin/sh
# Build gpio-sim as an out-of-tree module for kernel KVER from the linux-source-6.1 package of the
# same version.  Runs inside the image's chroot (scripts/vm/build-image.sh), as root:
#   build.sh KVER SRC_DEB OUTDIR
set -eu
KVER=$1; SRC_DEB=$2; OUT=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# only three files are needed out of the 140 MB source tarball
dpkg-deb --fsys-tarfile "$SRC_DEB" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' \
  | tar -xJ -C "$work" --wildcards --strip-components=3 \
      '*/drivers/gpio/gpio-sim.c' '*/drivers/gpio/gpiolib.h' '*/kernel/irq/irq_sim.c'
cp "$here/Kbuild" "$work/"
# irq_to_desc() is not exported to modules; generic_handle_irq() does the same for a mapped irq
grep -q 'handle_simple_irq(irq_to_desc(' "$work/irq_sim.c"
sed -i 's/handle_simple_irq(irq_to_desc(\([a-z_]*\)))/generic_handle_irq(\1)/' "$work/irq_sim.c"
if grep -n 'irq_to_desc' "$work/irq_sim.c"; then echo "irq_sim.c: irq_to_desc left" >&2; exit 1; fi
make -s -C "/lib/modules/$KVER/build" M="$work" modules
install -D -m 0644 "$work/gpio-sim-oot.ko" "$OUT/gpio-sim-oot.ko"
