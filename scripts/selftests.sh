#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build every test binary that lanes.conf and bench.conf name, statically
# (the initramfs has no libc), against the UAPI headers of the patched test
# kernel ($HEADERS_FLAVOUR). The same binaries run on every kernel flavour,
# so that a benchmark compares kernels and not builds.
#
# Output: build/selftests/<suite>/<name>.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

out=$SELFTESTS
[ -d "$HEADERS" ] || die "no headers in $HEADERS: build the kernel first"
hdrs="-isystem $HEADERS"

declare -A by_suite
while read -r b; do
	by_suite[${b%%/*}]+=" ${b#*/}"
done < <(all_binaries)

for suite in $(printf '%s\n' "${!by_suite[@]}" | sort); do
	# shellcheck disable=SC2086 # word splitting of the list is intended
	set -- ${by_suite[$suite]}
	mkdir -p "$out/$suite"
	if [ "$suite" = harness ]; then
		for name; do
			make -s -f "$TOP/guest/Makefile" SRC="$TOP/guest" OUT="$out/harness" \
				HDRS="$hdrs" TREE="$TREE" "$out/harness/$name"
		done
		continue
	fi
	log "building selftests/$suite: $*"
	make -s -C "$TREE/tools/testing/selftests/$suite" OUTPUT="$out/$suite" \
		KHDR_INCLUDES="$hdrs" USERLDFLAGS=-static \
		"${@/#/$out/$suite/}" >/dev/null
done
