#!/usr/bin/env bash
# Proves every exercise well posed: for each reference solution in
# notes/solutions/exN.M.patch, in a scratch copy of the workspace, the
# exercise's test (exN_M_… in the stage's tests/exercises.rs, marked
# #[ignore]) must FAIL on the stage as shipped and PASS with the patch,
# and with the patch every target of the stage must still build.
#
#   scripts/check-exercises.sh            # every exercise
#   scripts/check-exercises.sh ex3.2      # one
#
# CI runs it, so an exercise can never silently become unsolvable, or
# pass without being done. A repository without notes/solutions/ (a
# student's, made by scripts/student-repo.sh) has nothing to check: the
# script says `skipped: no notes/solutions/` and exits 0.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
if [ ! -d "$ROOT/notes/solutions" ]; then
    echo "skipped: no notes/solutions/ (this repository has no reference solutions)"
    exit 0
fi
command -v git >/dev/null || { echo "needs git (to apply the patches)" >&2; exit 1; }

make_tmp
scratch=$tmp
# One scratch copy for all exercises, reverted after each, and one target
# folder kept between runs ($TARGET/exercises: beside the usual builds, as
# the copy's crates are not the repository's): its dependencies are built
# once, and each exercise rebuilds only its stage.
# The copy's files get the time of the copy (`--touch`), not their own:
# the target folder outlives the copy, and holds what the last run built,
# with the last solution applied; a source file older than that build
# would make cargo reuse it, and a test "as shipped" would run the solved
# stage.
tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./notes/book \
    --exclude=./stage06-full/www/big.bin -cf - . | tar -C "$scratch" --touch -xf -
export CARGO_TARGET_DIR="$TARGET/exercises"
# Without debug info and without incremental caches, that folder holds
# about 200 MB instead of 650: debug info made up most of every binary and
# library, and the caches another 40%. The run takes no longer (a cold
# run on 2 cores: 67 s of CPU instead of 78; 55 s instead of 64 on an idle
# machine): the stages are small crates, whose full rebuild costs about
# what an incremental one does. A failing
# test still names its assertion and line; panic locations need no debug
# info.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=0

patches=("$ROOT"/notes/solutions/ex*.patch)
if [ $# -gt 0 ]; then
    patches=()
    for id in "$@"; do patches+=("$ROOT/notes/solutions/$id.patch"); done
fi

run_test() { # CRATE FILTER
    (cd "$scratch" && cargo test --quiet -p "$1" --test exercises -- --ignored "$2" >"$scratch/.log" 2>&1)
}

failed=0
checked=0
for patch in "${patches[@]}"; do
    id=$(basename "$patch" .patch)             # ex3.2
    n=${id#ex}; stage=${n%%.*}                 # 3
    crate=$(basename "$(stage_dir "0$stage")")
    filter="ex${n/./_}_"                       # ex3_2_
    if run_test "$crate" "$filter"; then
        echo "FAIL $id: its test passes on the stage as shipped (or matches no test)"
        failed=1
    elif ! (cd "$scratch" && git apply "$patch"); then
        echo "FAIL $id: the solution no longer applies"
        failed=1
    else
        if run_test "$crate" "$filter"; then
            if grep -q "running 0 tests" "$scratch/.log" || ! grep -q "test result: ok. [1-9]" "$scratch/.log"; then
                echo "FAIL $id: no test named $filter… ran"
                failed=1
            elif ! (cd "$scratch" && cargo check --quiet -p "$crate" --all-targets >"$scratch/.log" 2>&1); then
                # The exercise's test builds only its own target; a
                # solution that breaks the stage's other tests (a field
                # added to a struct a unit test builds) would pass unseen.
                echo "FAIL $id: with the solution, the stage's other targets do not build:"
                grep -m1 -A6 '^error' "$scratch/.log"
                failed=1
            else
                echo "ok   $id: fails as shipped, passes with notes/solutions/$id.patch"
            fi
        else
            echo "FAIL $id: its test fails with the solution:"
            tail -n 30 "$scratch/.log"
            failed=1
        fi
        (cd "$scratch" && git apply -R "$patch")
    fi
    checked=$((checked + 1))
done
echo "$checked exercises checked"
exit "$failed"
