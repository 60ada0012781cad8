#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The applied kernel tree under build/: base commit, series, export, check.
#
#   tree.sh sync     create the tree if needed and bring it to patches/
#   tree.sh export   write the tree's commits since base to patches/
#   tree.sh check    fail unless patches/ and the tree agree
#   tree.sh reset    throw the tree's commits away and apply patches/ again
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# Where the tree's last agreed state is recorded (hash of its export).
STAMP=$BUILD/series.stamp
COVER_SRC=$TOP/cover-letter.txt

fixed_env() {
	export GIT_AUTHOR_NAME=$BASE_IDENT_NAME GIT_AUTHOR_EMAIL=$BASE_IDENT_EMAIL
	export GIT_COMMITTER_NAME=$BASE_IDENT_NAME GIT_COMMITTER_EMAIL=$BASE_IDENT_EMAIL
	export GIT_AUTHOR_DATE=$BASE_DATE GIT_COMMITTER_DATE=$BASE_DATE
}

# Unpack the base into $TREE and make the deterministic base commit.
create_base() {
	local src tmp
	tmp=$BUILD/linux.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	if [ -n "${LINUX_TREE:-}" ]; then
		[ -f "$LINUX_TREE/Makefile" ] || die "LINUX_TREE=$LINUX_TREE is not a kernel tree"
		log "copying the kernel tree $LINUX_TREE"
		rsync -a --exclude=.git "$LINUX_TREE/" "$tmp/"
		echo "tree $(realpath "$LINUX_TREE") (user override, not verified)" > "$BASE_USED"
	else
		src=$("$TOP/scripts/base.sh")
		log "unpacking $(basename "$src")"
		tar -xJf "$src" -C "$tmp" --strip-components=1
	fi
	# Debian's packaging rule ignores every top-level entry ("/*" then
	# "!/debian/"): with it, new files are invisible to git. Drop it.
	python3 - "$tmp/.gitignore" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
new = re.sub(r'\n#\n# Debian packaging:[^\n]*\n(#[^\n]*\n)*#\n/\*\n!/debian/\n', '\n', text)
open(path, 'w').write(new)
PY
	! grep -qx '/\*' "$tmp/.gitignore" || die "could not drop the Debian .gitignore stanza"
	# The base commit depends on the content only (fixed identity, date and
	# message), so the same base gives the same id by any route: download,
	# LINUX_TARBALL or LINUX_TREE. build/base-version says which was taken.
	git -C "$tmp" init -q -b series
	git -C "$tmp" config core.abbrev 12
	(fixed_env; git -C "$tmp" add -A && git -C "$tmp" commit -q -m "Linux 7.3.4 base")
	git -C "$tmp" tag "$BASE_TAG"
	rm -rf "$TREE"
	mv "$tmp" "$TREE"
	log "base commit $(tgit rev-parse --short=12 HEAD)"
}

series_list() {
	[ -f "$PATCHES/series" ] || return 0
	grep -v '^[[:space:]]*\(#\|$\)' "$PATCHES/series" || true
}

apply_series() {
	local p out
	tgit reset -q --hard "$BASE_TAG"
	while read -r p; do
		[ -f "$PATCHES/$p" ] || die "series names $p, which is not in patches/"
		if ! out=$(tgit am -q --whitespace=nowarn "$PATCHES/$p" 2>&1); then
			tgit am --abort >/dev/null 2>&1 || true
			printf 'error: patch %s does not apply:\n%s\n' "$p" \
				"$(printf '%s\n' "$out" | grep -E '^(error|Patch failed|Applying)' | head -20)" >&2
			exit 1
		fi
	done < <(series_list)
	log "applied $(series_list | wc -l) patches"
}

# Export the tree's commits since base to directory $1.
export_to() {
	local out=$1 n
	mkdir -p "$out"
	n=$(tgit rev-list --count "$BASE_TAG..HEAD")
	if [ "$n" -gt 0 ]; then
		tgit -c core.abbrev=12 -c diff.noprefix=false -c format.signature= \
			format-patch -q --zero-commit --no-signature --numbered \
			--cover-letter --base="$BASE_TAG" --no-renames \
			-o "$out" "$BASE_TAG..HEAD" >/dev/null
		fill_cover "$out"/0000-cover-letter.patch
	fi
	(cd "$out" && find . -name '0*.patch' ! -name '0000-*' | sed 's|^\./||' | sort) > "$out/series"
}

# Put the subject and blurb of cover-letter.txt into the generated cover
# letter, and date it like the newest patch so the export is deterministic.
fill_cover() {
	local cover=$1
	python3 - "$cover" "$COVER_SRC" "$(tgit log -1 --format=%aD)" <<'PY'
import sys
cover, src, date = sys.argv[1:]
text = open(cover).read()
subject, blurb = 'Linux 7.3.4 live update series', ''
try:
    lines = open(src).read().split('\n')
    subject, blurb = lines[0].strip(), '\n'.join(lines[1:]).strip('\n')
except FileNotFoundError:
    pass
text = text.replace('*** SUBJECT HERE ***', subject).replace('*** BLURB HERE ***', blurb)
out = []
for line in text.split('\n'):
    out.append('Date: ' + date if line.startswith('Date: ') and not out[-1:] == [''] else line)
open(cover, 'w').write('\n'.join(out))
PY
}

export_hash() {
	local tmp
	tmp=$(mktemp -d)
	export_to "$tmp"
	hash_dir "$tmp"
	rm -rf "$tmp"
}

# Hash of a series directory: the series file and every patch, in name order.
hash_dir() {
	find "$1" -maxdepth 1 -type f \( -name series -o -name '*.patch' \) -print0 |
		sort -z | xargs -0 -r cat | sha256sum | cut -d' ' -f1
}

patches_hash() { hash_dir "$PATCHES"; }

require_clean() {
	[ -z "$(tgit status --porcelain --untracked-files=no)" ] ||
		die "$TREE has uncommitted changes; commit them first"
}

cmd_sync() {
	[ -d "$TREE/.git" ] || create_base
	local tree_h patches_h
	tree_h=$(export_hash)
	patches_h=$(patches_hash)
	if [ "$tree_h" = "$patches_h" ]; then
		echo "$tree_h" > "$STAMP"
		return 0
	fi
	# The tree has work that patches/ does not: never throw it away.
	if [ "$(tgit rev-list --count "$BASE_TAG..HEAD")" -gt 0 ] &&
	   [ "$tree_h" != "$(cat "$STAMP" 2>/dev/null)" ]; then
		die "$TREE has commits that are not in patches/: run 'make export' (or 'make reset-tree' to discard them)"
	fi
	require_clean
	apply_series
	export_hash > "$STAMP"
}

cmd_export() {
	require_clean
	local tmp
	tmp=$(mktemp -d)
	export_to "$tmp"
	rm -f "$PATCHES"/*.patch "$PATCHES/series"
	mkdir -p "$PATCHES"
	cp "$tmp"/* "$PATCHES"/
	rm -rf "$tmp"
	patches_hash > "$STAMP"
	log "exported $(series_list | wc -l) patches to patches/"
}

cmd_check() {
	[ -d "$TREE/.git" ] || die "no tree at $TREE: run 'make tree'"
	local tmp
	tmp=$(mktemp -d)
	export_to "$tmp"
	if ! diff -ru "$PATCHES" "$tmp" > "$tmp.diff"; then
		sed -n 1,40p "$tmp.diff" >&2
		rm -rf "$tmp" "$tmp.diff"
		die "patches/ and $TREE disagree: 'make export' or 'make reset-tree'"
	fi
	rm -rf "$tmp" "$tmp.diff"
	log "patches/ and the tree agree ($(series_list | wc -l) patches)"
}

cmd_reset() {
	[ -d "$TREE/.git" ] || create_base
	apply_series
	export_hash > "$STAMP"
}

case "${1:-}" in
sync) cmd_sync ;;
export) cmd_export ;;
check) cmd_check ;;
reset) cmd_reset ;;
*) die "usage: $0 sync|export|check|reset" ;;
esac
