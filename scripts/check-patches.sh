#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Check the series patch by patch, as a maintainer would before applying:
# checkpatch.pl --strict on every patch, and every commit builds on its own
# (bzImage of the test configuration, or the selftests it touches), with
# W=1 clean on the kernel C files it touches. Builds happen in a worktree of the tree at build/linux-check and
# in build/kernel-check, reused between runs.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

wt=$BUILD/linux-check
out=$(kernel_dir check)
KTREE=$wt KOUT=$out
config=$(kernel_dir test)/.config
[ -f "$config" ] || die "build the test kernel first"
[ -d "$wt" ] || tgit worktree add -q --detach "$wt" "$BASE_TAG"
mkdir -p "$out"

log "checkpatch --strict"
# checkpatch runs spdxcheck.py, which needs the system python3 with ply.
# FILE_PATH_CHANGES ("does MAINTAINERS need updating?") is still ignored:
# the series' new files are covered by existing F: patterns (to be fixed).
(cd "$TREE" && PATH=/usr/bin:$PATH ./scripts/checkpatch.pl --strict --quiet --no-summary \
	--ignore FILE_PATH_CHANGES -g "$BASE_TAG..HEAD") ||
	die "checkpatch has remarks"

# A commit that only touches selftests builds those; the others build the
# kernel.
build_selftests() {
	local suite
	for suite in $(git -C "$wt" diff --name-only "$1^" "$1" -- tools/testing/selftests |
		       cut -d/ -f4 | sort -u); do
		make -s -C "$wt/tools/testing/selftests/$suite" OUTPUT="$out/selftests/$suite" \
			KHDR_INCLUDES="-isystem $HEADERS" >/dev/null 2>"$out/build.err" ||
			return 1
	done
}

failed=0
# CHECK_FROM=<commit> builds only the commits after it (checkpatch still
# reads the whole series).
for c in $(tgit rev-list --reverse "${CHECK_FROM:-$BASE_TAG}..HEAD"); do
	subject=$(tgit log -1 --format=%s "$c")
	git -C "$wt" checkout -q --detach "$c"
	if [ -z "$(git -C "$wt" diff --name-only "$c^" "$c" -- . ':!tools/testing/selftests')" ]; then
		if build_selftests "$c"; then
			printf 'ok   selftests build: %s\n' "$subject"
		else
			printf 'FAIL selftests build: %s\n' "$subject"; sed -n 1,20p "$out/build.err"; failed=1
		fi
		continue
	fi
	# Start from the final configuration at every commit: an option that a
	# commit introduces would otherwise be lost at the commits before it.
	cp "$config" "$out/.config"
	if ! kmake olddefconfig >/dev/null || ! kmake bzImage >/dev/null 2>"$out/build.err"; then
		printf 'FAIL build: %s\n' "$subject"; sed -n 1,20p "$out/build.err"; failed=1; continue
	fi
	# virt/kvm/ is built as part of arch/x86/kvm/ on x86: W=1 on that
	# directory (it has no W=1 warnings of its own).
	objs=$(git -C "$wt" diff --name-only "$c^" "$c" -- '*.c' |
		grep -v '^tools/' | sed 's/\.c$/.o/; s|^virt/kvm/.*|arch/x86/kvm/|' |
		sort -u || true)
	if [ -n "$objs" ]; then
		# The build's status and its warnings are two checks: in one
		# pipeline, pipefail made a failed build look clean.
		# shellcheck disable=SC2086 # one word per object
		if ! kmake W=1 $objs > "$out/w1.log" 2>&1; then
			printf 'FAIL W=1 build: %s\n' "$subject"; sed -n 1,20p "$out/w1.log"
			failed=1; continue
		fi
		if grep -E 'warning:|error:' "$out/w1.log"; then
			printf 'FAIL W=1: %s\n' "$subject"; failed=1; continue
		fi
	fi
	printf 'ok   builds, W=1 clean: %s\n' "$subject"
done
exit $failed
