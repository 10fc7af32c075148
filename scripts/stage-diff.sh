#!/usr/bin/env bash
# Prints the diff between two stages' sources: the lesson of the second.
#
#   scripts/stage-diff.sh 02 03            # whole diff
#   scripts/stage-diff.sh 02 03 --stat     # which files changed, and how much
#
# Crate names (stage02-epoll, stage02_epoll…) are replaced by `stageNN` on
# both sides first, so the diff shows only what the lesson changed.
. "$(dirname "$0")/lib.sh"

if [ $# -lt 2 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    usage "$0"
    exit $(( $# < 2 ))
fi
a=$(stage_dir "$1")
b=$(stage_dir "$2")
stat=${3:-}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in "$a" "$b"; do
    mkdir -p "$tmp/$d"
    (cd "$ROOT/$d" && find . -path ./target -prune -o -type f \( -name '*.rs' -o -name Cargo.toml \) -print) |
        while read -r f; do
            mkdir -p "$tmp/$d/$(dirname "$f")"
            # stage02-epoll / stage02_epoll -> stageNN
            sed -E "s/stage[0-9]{2}[-_][a-z0-9_-]*[a-z0-9]/stageNN/g" "$ROOT/$d/$f" >"$tmp/$d/$f"
        done
done
cd "$tmp"
if [ "$stat" = --stat ]; then
    git --no-pager diff --no-index --stat=100 "$a" "$b" || true
else
    git --no-pager diff --no-index "$a" "$b" || true
fi
