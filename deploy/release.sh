#!/usr/bin/env bash
# Release binaries of the commit checked out (HEAD): every command under
# cmd/ for linux and darwin on amd64 and arm64 (kez-load for linux only), static (CGO_ENABLED=0),
# -trimpath, into $1 (default dist/) as <command>-<os>-<arch>, with
# SHA256SUMS. The version comes from the build information the go command
# stamps (tag or pseudo-version, commit, commit time): the build runs in a
# clean clone of HEAD, because the go command stamps no VCS information in
# a git worktree (.git is a file there), and so that a release is exactly
# a commit; uncommitted changes are left out, with a note.
set -euo pipefail

out=$(realpath -m "${1:-dist}")
platforms=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}
go=${GO:-go}
top=$(git rev-parse --show-toplevel)
rev=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	echo "release: note: uncommitted changes are not in the release, which builds commit $rev" >&2
fi

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git clone -q --shared --no-checkout "$top" "$src/kez"
git -C "$src/kez" checkout -q --detach "$rev"

rm -rf "$out"
mkdir -p "$out"
cmds=$(cd "$src/kez" && ls -d cmd/*/ | xargs -n1 basename)
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	echo "release: $os/$arch"
	mkdir -p "$src/bin/$os-$arch"
	these=""
	for c in $cmds; do
		# kez-load spawns and measures a stack through Linux's /proc and
		# Pdeathsig: a Linux tool.
		if [ "$c" = kez-load ] && [ "$os" != linux ]; then continue; fi
		these="$these ./cmd/$c"
	done
	(cd "$src/kez" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$go" build -buildvcs=true -trimpath \
		-o "$src/bin/$os-$arch/" $these)
	for c in $these; do
		c=${c#./cmd/}
		mv "$src/bin/$os-$arch/$c" "$out/$c-$os-$arch"
	done
done
(cd "$out" && sha256sum -- * >SHA256SUMS)

# Every binary must name the commit it was built from.
for f in "$out"/kez-*; do
	got=$("$go" version -m "$f" | awk '$1 == "build" && $2 ~ /^vcs.revision=/ { sub(/^vcs.revision=/, "", $2); print $2 }')
	if [ "$got" != "$rev" ]; then
		echo "release: $f names commit '${got}', not $rev" >&2
		exit 1
	fi
done
native="$("$go" env GOOS)-$("$go" env GOARCH)"
echo "release: $out (commit $rev)"
for c in $cmds; do
	if [ -x "$out/$c-$native" ]; then
		"$out/$c-$native" --version
	fi
done
