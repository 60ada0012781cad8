#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build one kernel flavour out of tree: build/kernel-<flavour>.
#
#   kernel.sh <flavour>    flavours: test (configs/test.config +
#                          configs/kunit.config),
#                          debug (test's fragments + configs/debug.config,
#                          KVM as modules: configs/modules.config),
#                          base (test's configuration, on the unpatched base:
#                          a git worktree of the tree at tag "base"),
#                          prod and base-prod (test and base, with
#                          configs/prod.config applied last: for benchmarks)
#
# The configuration is allnoconfig plus the flavour's fragments plus every
# selftest suite's own "config" fragment. After olddefconfig, every option
# requested must have survived; the ones that did not are named. Nothing is
# rebuilt when the tree, its working copy and the configuration are unchanged.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

flavour=${1:-test}
# Fragments that override the suites' own, applied last.
overrides=()
case $flavour in
test) fragments=("$TOP/configs/test.config" "$TOP/configs/kunit.config") ;;
prod) fragments=("$TOP/configs/test.config") ;;
base|base-prod)
	fragments=("$TOP/configs/test.config")
	if [ ! -d "$BUILD/linux-base" ]; then
		tgit worktree add -q --detach "$BUILD/linux-base" "$BASE_TAG"
	fi
	TREE=$BUILD/linux-base
	;;
debug) fragments=("$TOP/configs/test.config" "$TOP/configs/kunit.config" "$TOP/configs/debug.config") ;;
*) die "unknown kernel flavour '$flavour'" ;;
esac
case $flavour in
*prod) overrides=("$TOP/configs/prod.config") ;;
debug) overrides=("$TOP/configs/modules.config") ;;
esac
# The suites' kselftest config fragments; "=m" becomes "=y" (a flavour that
# wants modules says so in its overrides).
SUITES=(liveupdate memfd kvm)
suite_fragments() {
	local s f
	for s in "${SUITES[@]}"; do
		for f in "$TREE/tools/testing/selftests/$s/config" \
			 "$TREE/tools/testing/selftests/$s/config.x86_64"; do
			[ -f "$f" ] && sed 's/=m$/=y/' "$f"
		done
	done
	return 0
}

out=$(kernel_dir "$flavour")
KOUT=$out
mkdir -p "$out"

wanted=$out/wanted.config
# One line per symbol; a later fragment overrides an earlier one.
{ cat "${fragments[@]}"; suite_fragments; cat "${overrides[@]}" /dev/null; } | grep -E '^(CONFIG_|# CONFIG_)' |
	awk '{ s = $0; sub(/^# /, "", s); sub(/[= ].*/, "", s); if (!(s in v)) o[n++] = s; v[s] = $0 }
	     END { for (i = 0; i < n; i++) print v[o[i]] }' > "$wanted.new"

stamp=$out/build.stamp
state=$( { tgit rev-parse HEAD; tgit diff HEAD; cat "$wanted.new"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/$KIMAGE" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$state" ]; then
	log "kernel-$flavour is up to date"
	exit 0
fi

if ! cmp -s "$wanted.new" "$wanted" || [ ! -f "$out/.config" ]; then
	log "configuring kernel-$flavour"
	kmake KCONFIG_ALLCONFIG="$wanted.new" allnoconfig >/dev/null
	kmake olddefconfig >/dev/null
	lost=()
	while read -r line; do
		case $line in
		"# CONFIG_"*) sym=${line#\# }; sym=${sym%% *}
			grep -q "^$sym=" "$out/.config" && lost+=("$sym (wanted off)") ;;
		*) grep -qxF "$line" "$out/.config" || lost+=("$line") ;;
		esac
	done < "$wanted.new"
	if [ ${#lost[@]} -gt 0 ]; then
		printf 'error: requested options did not survive olddefconfig:\n' >&2
		printf '  %s\n' "${lost[@]}" >&2
		exit 1
	fi
	mv "$wanted.new" "$wanted"
fi
rm -f "$wanted.new"

log "building kernel-$flavour (bzImage, headers, gen_init_cpio)"
kmake bzImage
if grep -q '^CONFIG_MODULES=y' "$out/.config"; then
	# The .ko files stay in the build directory; initramfs.sh takes them.
	kmake modules
fi
kmake headers >/dev/null
echo "$state" > "$stamp"
log "kernel-$flavour: $out/$KIMAGE"
