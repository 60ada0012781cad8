# shellcheck shell=bash disable=SC2034 # the settings are used by the sourcing scripts
# SPDX-License-Identifier: GPL-2.0
# Common settings and helpers for the harness scripts. Source it; do not run it.
#
# Every path the harness uses is defined here, once. The Python scripts
# read them through scripts/paths.py, the Makefile through $(shell).

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
TREE=${TREE:-$BUILD/linux}
CACHE=${LUO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/luo-series}
PATCHES=$TOP/patches
JOBS=${JOBS:-$(nproc)}
# The base that build/linux was made from (base.sh, tree.sh).
BASE_USED=$BUILD/base-version
SELFTESTS=$BUILD/selftests
RESULTS=${RESULTS:-$BUILD/results}
# The boots' logs, one directory per flavour (make soak keeps each run's apart).
LOGS=${LOGS:-$BUILD/logs}
# A kernel's image, in its build directory.
KIMAGE=arch/x86/boot/bzImage

# Kernel flavours (their configurations: kernel.sh): the ones `make test`
# runs, and the one whose UAPI headers build every test binary.
TEST_FLAVOURS=test,debug
HEADERS_FLAVOUR="test"

# Where each flavour's products are.
kernel_dir() { echo "$BUILD/kernel-$1"; }
kernel_image() { echo "$(kernel_dir "$1")/$KIMAGE"; }
initramfs_of() { echo "$BUILD/initramfs-$1.cpio"; }
# A part that a lane adds to its flavour's initramfs ("+<name>" in
# lanes.conf), the same for every flavour.
extra_initramfs() { echo "$BUILD/initramfs-extra-$1.cpio"; }
logs_dir() { echo "$LOGS/$1"; }
HEADERS=$(kernel_dir "$HEADERS_FLAVOUR")/usr/include

# The pinned base: Debian's linux-source-7.3 binary package.
BASE_PKG=linux-source-7.3
BASE_VERSION=7.3.4-1~bpo13+1
BASE_DEB_SHA256=703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3
BASE_TAR_MEMBER=./usr/src/linux-source-7.3.tar.xz
BASE_TAR_SHA256=76df1affb19f24926949369be1d74b60071c963c598ce8780bddd4bbf0fc3bc4
BASE_SUITE=trixie-backports

# Identity and dates of the base commit, fixed so that its id is the same
# on every machine.
BASE_IDENT_NAME="Linux 7.3.4 (Debian linux-source-7.3)"
BASE_IDENT_EMAIL="base@localhost"
BASE_DATE="2026-01-01T00:00:00Z"
BASE_TAG=base

# Every binary a lane of lanes.conf (or of $LANES_CONF) or bench.conf runs,
# once.
all_binaries() {
	{
		LANES_CONF=${LANES_CONF:-lanes.conf} "$TOP/scripts/lanes.py" binaries
		LANES_CONF=bench.conf "$TOP/scripts/lanes.py" binaries
	} | awk '!seen[$0]++'
}

# Every extra initramfs part a lane of lanes.conf (or $LANES_CONF) names.
all_extras() {
	LANES_CONF=${LANES_CONF:-lanes.conf} "$TOP/scripts/lanes.py" extras
}

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '\n*** WARNING: %s ***\n\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# git in the kernel tree, with a fixed identity for commits the harness makes.
tgit() { git -C "$TREE" "$@"; }

# make in a kernel tree, $KTREE ($TREE if empty), out of tree in $KOUT: a
# script sets them (the environment does not).
KTREE=""
KOUT=""
kmake() { make -s -C "${KTREE:-$TREE}" O="$KOUT" ARCH=x86_64 -j"$JOBS" "$@"; }
