#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Install the Debian packages the harness needs, or say how to.
set -euo pipefail

PKGS=(build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils file
      rsync git python3 qemu-system-x86 busybox-static libcap-dev
      libnuma-dev gnuplot-nox shellcheck python3-ply python3-git)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	printf 'Missing packages. Run as root:\n  %s\n' "$cmd" >&2
	exit 1
fi
printf '==> installing: %s\n' "${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
