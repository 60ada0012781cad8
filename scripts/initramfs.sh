#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Make build/initramfs-<flavour>.cpio: busybox, the guest init, the kexec
# helper, every binary of lanes.conf and bench.conf and the kernel itself
# (for kexec). Written with the kernel's own usr/gen_init_cpio.
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

# Rebuild only when the list or a file in it changed.
up_to_date() {
	local f
	[ -f "$cpio" ] && cmp -s "$list.new" "$list" || return 1
	while read -r f; do
		[ "$f" -nt "$cpio" ] && return 1
	done < <(awk '$1 == "file" { print $3 }' "$list")
	return 0
}
if up_to_date; then
	rm -f "$list.new"
	exit 0
fi
mv "$list.new" "$list"
"$kout/usr/gen_init_cpio" "$list" > "$cpio.tmp"
mv "$cpio.tmp" "$cpio"
log "initramfs: $cpio ($(du -h "$cpio" | cut -f1))"
