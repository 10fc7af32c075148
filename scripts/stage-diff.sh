#!/usr/bin/env bash
# Prints the diff between two stages' sources: the lesson of the second.
#
#   scripts/stage-diff.sh 02 03            # whole diff
#   scripts/stage-diff.sh 02 03 --stat     # which files changed, and how much
#   scripts/stage-diff.sh --stat 02 03     # flags go anywhere
#   scripts/stage-diff.sh 05 06 --all      # everything, not only the lesson
#
# Crate names (stage02-epoll, stage02_epoll…) are replaced by `stageNN` on
# both sides first, and the lines that mark a lab's regions
# (`// LAB ID BEGIN: hint`, `// LAB END`) are left out, so the diff shows
# only what the lesson changed.
#
# By default it leaves out what is not the lesson: the exercises' tests
# (tests/exercises.rs), the command-line tests (tests/cli.rs), the demo
# site's browser test (tests/browser.rs), examples/ (measuring tools), and
# the name, version and description lines of Cargo.toml. `--all` puts them
# back. Only Rust sources and Cargo.toml are compared, either way.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
stat=
all=
stages=()
for arg in "$@"; do
    case $arg in
        --stat) stat=1 ;;
        --all) all=1 ;;
        -*) echo "unknown flag: $arg" >&2; usage "$0" >&2; exit 1 ;;
        *) stages+=("$arg") ;;
    esac
done
if [ ${#stages[@]} -ne 2 ]; then
    usage "$0" >&2
    exit 1
fi
a=$(stage_dir "${stages[0]}")
b=$(stage_dir "${stages[1]}")

# lesson FILE — true when FILE (relative to a stage, as ./path) is part of
# the lesson; with --all, every file is.
lesson() {
    [ -n "$all" ] && return 0
    case $1 in
        ./tests/exercises.rs | ./tests/cli.rs | ./tests/browser.rs | ./examples/*) return 1 ;;
    esac
    return 0
}

make_tmp
for d in "$a" "$b"; do
    mkdir -p "$tmp/$d"
    (cd "$ROOT/$d" && find . -path ./target -prune -o -type f \( -name '*.rs' -o -name Cargo.toml \) -print) |
        while read -r f; do
            lesson "$f" || continue
            mkdir -p "$tmp/$d/$(dirname "$f")"
            # stage02-epoll / stage02_epoll -> stageNN; a stage's lab
            # markers are not what the next stage changed.
            sed -E -e "s/stage[0-9]{2}[-_][a-z0-9_-]*[a-z0-9]/stageNN/g" \
                -e '/^[[:space:]]*\/\/ LAB ([a-z0-9-]+ BEGIN: .*|END[[:space:]]*)$/d' \
                "$ROOT/$d/$f" >"$tmp/$d/$f"
            if [ -z "$all" ] && [ "$f" = ./Cargo.toml ]; then
                # A stage's name, version and description differ by
                # definition; its dependencies are part of the lesson.
                sed -i -E '/^(name|version|description) *=/d' "$tmp/$d/$f"
            fi
        done
done
cd "$tmp"
if [ -n "$stat" ]; then
    git --no-pager diff --no-index --stat=100 "$a" "$b" || true
else
    git --no-pager diff --no-index "$a" "$b" || true
fi
