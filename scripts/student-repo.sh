#!/usr/bin/env bash
# Makes a student repository from this one: every lab region becomes a
# todo!() stub, the instructor's material stays out, and a README says how
# to work and how to grade. The labs are listed in scripts/labs.txt; a
# region is marked in the source with `// LAB ID BEGIN: hint` … `// LAB END`.
#
#   scripts/student-repo.sh OUT            # OUT: a new (or empty) folder
#   scripts/student-repo.sh --update OUT   # a new version, on top of OUT's
#
# What goes in is this working tree (committed or not, git-ignored files
# excepted), less the instructor's material: notes/solutions/ (the
# exercises' reference patches), scripts/lab-mistakes/ (the labs' wrong
# answers, which name the traps), the instructor guide
# (notes/src/instructor-guide.md, and its line in SUMMARY.md), and the
# scripts that need the reference code (this one, check-labs.sh,
# lab-stub.awk). README.md becomes a student's README; .ci/run becomes a
# student's CI: format, clippy, build, scripts/grade.sh, every test, the
# book. In OUT, `cargo build --workspace --all-targets` builds without a
# warning, and each lab's tests fail until the lab is done.
#
# OUT is a git repository with one commit, "starter from COMMIT". With
# --update, OUT (such a repository) gets this version as one more commit;
# students who cloned it take it with `git pull` and merge as usual.
. "$(dirname "$0")/lib.sh"

script_start 1 "$@"
update=0
if [ "$1" = --update ]; then
    update=1
    shift
fi
[ $# = 1 ] || { usage "$0" >&2; exit 1; }
out=$1
STUB="$ROOT/scripts/lab-stub.awk"

if [ "$update" = 1 ]; then
    [ -d "$out/.git" ] || { echo "--update needs a repository made by this script: $out has no .git" >&2; exit 1; }
elif [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
    echo "$out exists and is not empty (to make a new version of it, use --update)" >&2
    exit 1
fi

# The instructor's material, as patterns of paths in the repository.
left_out='^(notes/solutions/|notes/src/instructor-guide\.md$|scripts/(student-repo\.sh|check-labs\.sh|lab-stub\.awk)$|scripts/lab-mistakes/|README\.md$|\.ci/run$)'

# Every lab has regions, and every region belongs to a lab of the manifest.
manifest_labs=$(awk -F'|' '!/^[ \t]*(#|$)/ { gsub(/[ \t]/, "", $1); print $1 }' "$ROOT/scripts/labs.txt" | sort -u)
region_labs=$(cd "$ROOT" && grep -rhoE --include='*.rs' '^[[:space:]]*// LAB [a-z0-9-]+ BEGIN: ' stage*/ |
    awk '{ print $3 }' | sort -u)
if [ "$manifest_labs" != "$region_labs" ]; then
    echo "scripts/labs.txt and the LAB regions disagree:" >&2
    diff <(echo "$manifest_labs") <(echo "$region_labs") | sed -n 's/^< /  in labs.txt, no region: /p; s/^> /  a region, not in labs.txt: /p' >&2
    exit 1
fi

make_tmp
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -co --exclude-standard) >"$tmp/all"
    commit=$(git -C "$ROOT" describe --always --dirty)
else
    (cd "$ROOT" && find . -path ./target -prune -o -path ./notes/book -prune -o -type f -print | sed 's|^\./||') >"$tmp/all"
    commit=unknown
fi
grep -Ev "$left_out" "$tmp/all" | while read -r f; do
    # Listed by git but deleted in the working tree: not copied.
    [ -e "$ROOT/$f" ] && printf '%s\n' "$f"
done >"$tmp/files"

if [ "$update" = 1 ]; then
    find "$out" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
fi
mkdir -p "$out"
tar -C "$ROOT" -cf - -T "$tmp/files" | tar -C "$out" -xf -

# The stubs: the labs are in the stages (elsewhere, as in a test of the
# stubber, a marker is only text).
(cd "$out" && grep -rlE --include='*.rs' '^[[:space:]]*// LAB [a-z0-9-]+ BEGIN: ' stage*/) | while read -r f; do
    awk -f "$STUB" "$out/$f" >"$tmp/stubbed"
    cat "$tmp/stubbed" >"$out/$f"
done

# The book without the instructor's chapter.
grep -v 'instructor-guide\.md' "$ROOT/notes/src/SUMMARY.md" >"$out/notes/src/SUMMARY.md"

mkdir -p "$out/.ci"
cat >"$out/.ci/run" <<'RUN'
#!/usr/bin/env bash
# What CI runs on this repository: the format, clippy, the build, the
# labs' grade, every test, the book. It stays red until every lab passes;
# scripts/grade.sh says which do.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
step() { printf '\n=== %s\n' "$*"; }

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "scripts/grade.sh (every lab's tests)"
scripts/grade.sh

step "cargo test --workspace"
cargo test --workspace

step "mdbook build notes"
if ! command -v mdbook >/dev/null; then
    cargo install --locked mdbook
fi
mdbook build notes
RUN
chmod +x "$out/.ci/run"

{
    cat <<'README'
# Growing a Linux web server in Rust: your repository

Six stages grow a blocking echo server into a prefork HTTP/1.1 server on
Linux system calls (epoll, timerfd, signalfd, `SCM_RIGHTS`). Each stage is
a crate that builds, runs and tests on its own, and each has a chapter in
the book in `notes/` (`mdbook serve notes`, or read `notes/src/*.md`).

In every stage, the mechanism the stage teaches is yours to write: the
lab. Its places in the source are marked `// LAB ID BEGIN: hint` …
`// LAB END` and hold `todo!("ID: hint")` for now; everything around them
is complete. Until a lab is done its stage's servers panic or hang, and
its tests fail: they grade your work.

| lab | stage | you write | chapter |
|---|---|---|---|
| s1-pool | `stage01-blocking` | the thread pool | `notes/src/stage01-blocking.md` |
| s2-drain | `stage02-epoll` | the edge-triggered drain, writing, and interest changes | `notes/src/stage02-epoll.md` |
| s3-timers | `stage03-timer-list` | the sorted timer list and the self-pipe signal handler | `notes/src/stage03-timer-list.md` |
| s4-heap | `stage04-min-heap` | the min-heap of timers, and expiry that checks the generation | `notes/src/stage04-min-heap.md` |
| s5-pass | `stage05-prefork` | descriptor passing with `SCM_RIGHTS` and the least-loaded choice | `notes/src/stage05-prefork.md` |
| s6-parser | `stage06-full` | the incremental request parser | `notes/src/stage06-full.md` |

## How to work

1. Read the stage's chapter; its "Labs" section says what the lab asks
   and what to watch for.
2. `scripts/grade.sh --list` shows every region of every lab, its hint,
   and the tests that grade it (the list is at the end of this file too).
3. Write the regions. Keep the two marker lines around each. A file with
   a stub starts with `#![allow(unused)]`, so that the stubs build without
   warnings: delete it once the file's labs pass (with the reference
   solution every import is then used; if yours leaves one unused,
   `cargo clippy` names it: delete that too).
4. Grade a lab with `scripts/grade.sh s2-drain`, or every lab with
   `scripts/grade.sh`. It prints PASS or FAIL and how many tests passed;
   the log it names holds the failures. Run one test as cargo runs any,
   for example `cargo test -p stage02-epoll --test echo -- one_mib`.
5. Commit as you go, with any `proptest-regressions/` folder your runs
   make: a property test that fails saves the failing case's seed there
   and replays it first on every later run, yours and CI's (what runs
   build, `target/` and `notes/book/`, is ignored). `.ci/run` is what CI
   runs on this repository: the format, clippy, the grade, every test,
   the book.

The labs do not depend on each other; do them in any order, though the
book reads best in stage order. A later stage keeps an earlier stage's
mechanism (stage05's heap is stage04's): reading it is allowed, copying it
teaches you nothing, and the grade is not all of your mark, because the
code is read too.

## Exercises

Every chapter ends with exercises (`ex1.1` … `ex6.4`, each marked easy,
medium or hard). Each has an ignored test in the stage's
`tests/exercises.rs` that passes once the exercise is done:
`cargo test -p stage03-timer-list --test exercises -- --ignored ex3_2`.
Do an exercise on a stage whose lab is done: its test needs a working
stage.

## The labs' regions and tests

```text
README
    (cd "$out" && scripts/grade.sh --list)
    echo '```'
} >"$out/README.md"

if command -v git >/dev/null; then
    name=$(git -C "$ROOT" config user.name || echo starter)
    email=$(git -C "$ROOT" config user.email || echo starter@localhost)
    [ -d "$out/.git" ] || git -C "$out" init -q -b main
    git -C "$out" add -A
    if git -C "$out" diff --cached --quiet 2>/dev/null && [ "$update" = 1 ]; then
        echo "$out: nothing changed since its last version"
        exit 0
    fi
    message="starter from $commit"
    [ "$update" = 1 ] && message="starter updated from $commit"
    git -C "$out" -c user.name="$name" -c user.email="$email" commit -qm "$message"
fi
echo "$out: a student repository, from $commit"
