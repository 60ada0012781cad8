#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Make build/initramfs-<flavour>.cpio: busybox, the guest init, the kexec
# helper, every binary of lanes.conf and bench.conf and the kernel itself
# (for kexec). Written with the kernel's own usr/gen_init_cpio. Then the
# extra parts that lanes name ("+<extra>" in lanes.conf), each in
# build/initramfs-extra-<extra>.cpio, made by the function <extra>_entries
# below; run.py appends one to the flavour's initramfs for those lanes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

flavour=${1:-test}
kout=$(kernel_dir "$flavour")
cpio=$(initramfs_of "$flavour")
list=${cpio%.cpio}.list
busybox=$(command -v busybox) || die "busybox not found (Debian: busybox-static)"
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static (Debian: busybox-static)"

"$TOP/scripts/selftests.sh"
make -s -f "$TOP/guest/Makefile" SRC="$TOP/guest" OUT="$BUILD/guest" \
	HDRS="-isystem $HEADERS" TREE="$TREE" "$BUILD/guest/kexec-file"

# A kernel with modules (configs/modules.config): every module it built goes
# flat into /lib/modules, and next to each <file>.ko a <file>.deps that
# lists the files to load for it, in order, its dependencies (from modpost's
# MODULE_INFO(depends, ...)) first. guest/init and the tests load from it.
module_entries() {
	local moddir=$BUILD/modules-$flavour o file name
	local -A file_of=()
	mkdir -p "$moddir"
	echo "dir /lib 0755 0 0"
	echo "dir /lib/modules 0755 0 0"
	while read -r o; do
		o=${o%.o}
		o=${o%.ko}
		file=${o##*/}
		file_of[${file//-/_}]=$o
		echo "file /lib/modules/$file.ko $kout/$o.ko 0644 0 0"
	done < "$kout/modules.order"
	load_order() {
		local deps d
		deps=$(sed -n 's/^MODULE_INFO(depends, "\(.*\)");$/\1/p' "$kout/${file_of[$1]}.mod.c")
		for d in ${deps//,/ }; do
			load_order "$d"
		done
		echo "${file_of[$1]##*/}"
	}
	for name in "${!file_of[@]}"; do
		file=${file_of[$name]##*/}
		load_order "$name" | awk '!seen[$0]++' > "$moddir/$file.deps.new"
		# Keep the old file when nothing changed: the initramfs is rebuilt
		# only when a file in it is newer.
		if cmp -s "$moddir/$file.deps.new" "$moddir/$file.deps"; then
			rm "$moddir/$file.deps.new"
		else
			mv "$moddir/$file.deps.new" "$moddir/$file.deps"
		fi
		echo "file /lib/modules/$file.deps $moddir/$file.deps 0644 0 0"
	done | sort
}

{
	for d in /bin /dev /proc /sys /tmp /boot /tests; do
		echo "dir $d 0755 0 0"
	done
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "file /init $TOP/guest/init 0755 0 0"
	echo "file /bin/busybox $busybox 0755 0 0"
	echo "file /bin/kexec-file $BUILD/guest/kexec-file 0755 0 0"
	echo "file /boot/bzImage $kout/$KIMAGE 0644 0 0"
	# The unpatched base, for the cross-version lanes (xver-up, xver-down).
	base=$(kernel_image base)
	if [ "$flavour" != base ] && [ -f "$base" ]; then
		echo "file /boot/bzImage-base $base 0644 0 0"
	fi
	if grep -q '^CONFIG_MODULES=y' "$kout/.config"; then
		module_entries
	fi
	all_binaries | cut -d/ -f1 | sort -u | sed 's|.*|dir /tests/& 0755 0 0|'
	all_binaries | while read -r b; do
		echo "file /tests/$b $SELFTESTS/$b 0755 0 0"
	done
} > "$list.new"

# write_cpio <cpio>: write <cpio> from the list <cpio minus .cpio>.list.new,
# only when the list or a file in it changed.
write_cpio() {
	local cpio=$1 list=${1%.cpio}.list
	if [ -f "$cpio" ] && cmp -s "$list.new" "$list" && ! has_newer "$list" "$cpio"; then
		rm -f "$list.new"
		return 0
	fi
	mv "$list.new" "$list"
	"$kout/usr/gen_init_cpio" "$list" > "$cpio.tmp"
	mv "$cpio.tmp" "$cpio"
	log "initramfs: $cpio ($(du -h "$cpio" | cut -f1))"
}

# has_newer <list> <file>: a file that <list> packs is newer than <file>.
has_newer() {
	local f
	while read -r f; do
		[ "$f" -nt "$2" ] && return 0
	done < <(awk '$1 == "file" { print $3 }' "$1")
	return 1
}
write_cpio "$cpio"

# The extra part "qemu" (lane qemu-kexec): Debian's qemu-system-x86_64 as
# installed on this machine, the shared libraries it links (at the paths
# ldd finds them, so that it runs unchanged), the firmware a "pc" machine
# loads, and the inner guest image.
qemu_entries() {
	local qemu dirs f
	qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (Debian: qemu-system-x86)"
	make -s -f "$TOP/guest/Makefile" SRC="$TOP/guest" OUT="$BUILD/guest" \
		"$BUILD/guest/inner-guest.elf"
	{
		echo /usr/bin/qemu-system-x86_64
		ldd "$qemu" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
		echo /usr/share/qemu-kexec/guest.elf
		echo /usr/share/seabios/bios-256k.bin
		for f in kvmvapic.bin linuxboot_dma.bin multiboot_dma.bin; do
			echo "/usr/share/qemu/$f"
		done
	} > "$BUILD/qemu-files"
	dirs=$(xargs -n1 dirname < "$BUILD/qemu-files" | sort -u |
		awk '{ p = ""; n = split($0, a, "/"); for (i = 2; i <= n; i++) { p = p "/" a[i]; print p } }' |
		awk '!seen[$0]++')
	for f in $dirs; do
		echo "dir $f 0755 0 0"
	done
	while read -r f; do
		case $f in
		/usr/share/qemu-kexec/guest.elf) echo "file $f $BUILD/guest/inner-guest.elf 0644 0 0" ;;
		/usr/bin/qemu-system-x86_64) echo "file $f $(readlink -f "$qemu") 0755 0 0" ;;
		*) echo "file $f $(readlink -f "$f") 0755 0 0" ;;
		esac
	done < "$BUILD/qemu-files"
}

for extra in $(all_extras); do
	declare -F "${extra}_entries" >/dev/null || die "lanes.conf: no initramfs part +$extra"
	ecpio=$(extra_initramfs "$extra")
	"${extra}_entries" > "${ecpio%.cpio}.list.new"
	write_cpio "$ecpio"
done
