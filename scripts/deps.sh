#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Install the Debian packages the harness needs, or say how to.
set -euo pipefail

PKGS=(build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils file
      rsync git python3 qemu-system-x86 busybox-static libcap-dev
      libnuma-dev gnuplot-nox shellcheck python3-ply python3-git)

# checkpatch.pl runs scripts/spdxcheck.py with the first python3 on PATH,
# which needs ply and GitPython. When that python3 is not Debian's (a
# pyenv one, say), let it find Debian's python3-ply and python3-git: a
# .pth file appends their directory to its path, after its own packages.
debian_modules_for_python3() {
	local py site
	py=$(command -v python3) || return 0
	[ "$(readlink -f "$py")" = "$(readlink -f /usr/bin/python3)" ] && return 0
	python3 -c 'import ply, git' 2>/dev/null && return 0
	/usr/bin/python3 -c 'import ply, git' 2>/dev/null || return 0
	site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	[ -w "$site" ] || return 0
	echo /usr/lib/python3/dist-packages > "$site/debian-dist-packages.pth"
	printf '==> %s: Debian python3 modules added after its own (for spdxcheck.py)\n' "$py" >&2
}

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	debian_modules_for_python3
	exit 0
fi

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	printf 'Missing packages. Run as root:\n  %s\n' "$cmd" >&2
	exit 1
fi
printf '==> installing: %s\n' "${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
debian_modules_for_python3
