#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Fetch the pinned base tarball into the cache, verify it and print its path.
#
# The tarball comes from Debian's linux-source-7.3 binary package, downloaded
# with apt-get through a private apt configuration (own sources list and lists
# directory): the system's apt sources are not touched and nothing is
# installed. LINUX_TARBALL=<path> skips all of this and uses that tarball.
# The base actually used is written to $BUILD/base-version.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

mkdir -p "$BUILD"
record() { printf '%s\n' "$1" > "$BASE_USED"; }

if [ -n "${LINUX_TARBALL:-}" ]; then
	[ -f "$LINUX_TARBALL" ] || die "LINUX_TARBALL=$LINUX_TARBALL: no such file"
	record "tarball $(realpath "$LINUX_TARBALL") (user override, not verified)"
	realpath "$LINUX_TARBALL"
	exit 0
fi

tarball=$CACHE/$BASE_PKG-$BASE_VERSION.tar.xz
if [ -f "$tarball" ] && echo "$BASE_TAR_SHA256  $tarball" | sha256sum -c --quiet - 2>/dev/null; then
	record "$BASE_PKG $BASE_VERSION"
	echo "$tarball"
	exit 0
fi

apt_dir=$CACHE/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
# Same mirror as the system's Debian sources, other suite.
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
	/etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 ~ /\/debian / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
	/etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || die "cannot find a Debian mirror in the system's apt sources"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $BASE_SUITE main" \
	> "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
	  -o "Dir::Etc::SourceParts=/dev/null"
	  -o "Dir::State::Lists=$apt_dir/lists"
	  -o "Dir::Cache=$apt_dir/cache"
	  -o "APT::Sandbox::User=root"
	  -o "Debug::NoLocking=1")

log "updating the private apt lists ($BASE_SUITE)"
apt-get -qq "${apt_opts[@]}" update
version=$BASE_VERSION
if ! apt-cache "${apt_opts[@]}" madison "$BASE_PKG" | grep -qF "| $BASE_VERSION |"; then
	version=$(apt-cache "${apt_opts[@]}" madison "$BASE_PKG" | awk -F' *\\| *' '$2 ~ /^7\.3\./ { print $2 }' |
		sort -V | tail -1)
	[ -n "$version" ] || die "$BASE_PKG: no 7.3.x version in $BASE_SUITE"
	warn "pinned $BASE_PKG $BASE_VERSION has left the archive; using $version (UNVERIFIED BASE)"
fi

log "downloading $BASE_PKG $version"
(cd "$apt_dir/debs" && apt-get -qq "${apt_opts[@]}" download "$BASE_PKG=$version")
deb=$(ls "$apt_dir/debs/${BASE_PKG}_${version/:/%3a}_"*.deb)
if [ "$version" = "$BASE_VERSION" ]; then
	echo "$BASE_DEB_SHA256  $deb" | sha256sum -c --quiet - || die "$deb: SHA256 mismatch"
fi

tarball=$CACHE/$BASE_PKG-$version.tar.xz
dpkg-deb --fsys-tarfile "$deb" | tar -xO "$BASE_TAR_MEMBER" > "$tarball.tmp"
if [ "$version" = "$BASE_VERSION" ]; then
	echo "$BASE_TAR_SHA256  $tarball.tmp" | sha256sum -c --quiet - ||
		die "$BASE_TAR_MEMBER in $deb: SHA256 mismatch"
	record "$BASE_PKG $version"
else
	record "$BASE_PKG $version (NOT THE PINNED $BASE_VERSION)"
fi
mv "$tarball.tmp" "$tarball"
rm -f "$deb"
echo "$tarball"
