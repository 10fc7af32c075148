#!/usr/bin/env bash
# Proves every lab well posed, as CI runs it:
# 1. the reference passes each lab's grading tests (scripts/grade.sh);
# 2. a student repository (scripts/student-repo.sh) builds, every target,
#    without a warning;
# 3. in it, each lab's grading tests fail, and at least one of them ran
#    (a filter that matches nothing would pass);
# 4. each lab passes there with only its own regions put back: its tests
#    grade its regions and nothing else;
# 5. there, with every region put back and no #![allow(unused)], as for
#    a student who has done every lab, clippy -D warnings passes;
# 6. each listed mistake fails its lab, saying so: a mistake is a wrong
#    answer a student is likely to write, kept as a patch against this
#    reference in scripts/lab-mistakes/LAB/NN-short-name.patch (left out
#    of a student repository), which opens with two header lines:
#        # mistake: what the student got wrong, in one line
#        # says: text the failing grade must print, naming the mistake
#        diff --git a/… b/…    (as `git diff` writes it)
#    Applied to a scratch copy of this tree, the patch must change code
#    inside lab regions only, and scripts/grade.sh LAB must FAIL there
#    with the `says` text in what it prints (its FAIL line and the first
#    failure's message under it: what a student sees).
#
#   scripts/check-labs.sh              # every lab in scripts/labs.txt
#   scripts/check-labs.sh s4-heap      # one (or several)
#
# The student repository is made once, in a scratch folder, and built in
# $TARGET/labs (beside the usual builds; CARGO_TARGET_DIR when set),
# without debug info or incremental caches, as check-exercises.sh does: a
# lab put back rebuilds only its stage. A stub that makes a server hang
# fails its test after testkit's PATIENCE, and grade.sh stops a run that
# takes longer than GRADE_TIMEOUT seconds, so nothing here can hang CI.
# The mistakes share one more scratch copy and one target folder,
# $TARGET/mistakes, built the same way: each mistake rebuilds only the
# stage it patches, never the dependencies.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
STUB="$ROOT/scripts/lab-stub.awk"

labs=("$@")
if [ ${#labs[@]} = 0 ]; then
    mapfile -t labs < <(awk -F'|' '!/^[ \t]*(#|$)/ { gsub(/[ \t]/, "", $1); if (!seen[$1]++) print $1 }' \
        "$ROOT/scripts/labs.txt")
fi

failed=0
fail() {
    echo "FAIL $*"
    failed=1
}
# step TITLE — starts a step; elapsed — the step's own time so far.
step() {
    echo "--- $*"
    step_started=$SECONDS
}
elapsed() { echo "$(( SECONDS - step_started )) s"; }
started=$SECONDS

step "1. the reference passes every lab"
if ! "$ROOT/scripts/grade.sh" "${labs[@]}"; then
    fail "the reference does not pass its own labs"
    exit 1
fi
echo "     (this step: $(elapsed))"

make_tmp
student="$tmp/student"
step "2. a student repository builds without a warning"
"$ROOT/scripts/student-repo.sh" "$student" >/dev/null
export CARGO_TARGET_DIR="$TARGET/labs"
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=0
if ! (cd "$student" && cargo build --workspace --all-targets >"$tmp/build.log" 2>&1); then
    tail -n 40 "$tmp/build.log"
    fail "the student repository does not build"
    exit 1
fi
if grep -E '^(warning|error)' "$tmp/build.log"; then
    fail "the student repository builds with warnings (above)"
fi
for lab in "${labs[@]}"; do
    grep -q "^| $lab |" "$student/README.md" || fail "$lab: not in the student README's table of labs"
done
echo "ok   it builds ($(elapsed))"

step "3. each lab's tests fail in it"
for lab in "${labs[@]}"; do
    line=$("$student/scripts/grade.sh" "$lab") && status=0 || status=$?
    if [ "$status" = 0 ]; then
        echo "     $line"
        fail "$lab: its tests pass with its regions stubbed"
    elif [[ $line =~ ^FAIL\ $lab:\ ([0-9]+\ of\ [1-9][0-9]*\ tests\ passed) ]]; then
        # grade.sh's FAIL is what this step wants: said as such.
        echo "ok   $lab fails, as it must with its regions stubbed (${BASH_REMATCH[1]})"
    else
        echo "     $line"
        fail "$lab: none of its tests ran"
    fi
done
echo "     (this step: $(elapsed))"

step "4. each lab passes with only its regions put back"
for lab in "${labs[@]}"; do
    mapfile -t files < <(cd "$ROOT" && grep -rl --include='*.rs' "// LAB $lab BEGIN: " stage*/)
    for f in "${files[@]}"; do
        awk -v keep="$lab" -f "$STUB" "$ROOT/$f" >"$student/$f"
    done
    line=$("$student/scripts/grade.sh" "$lab") && status=0 || status=$?
    echo "     $line"
    [ "$status" = 0 ] || fail "$lab: its tests fail with its own regions put back"
    for f in "${files[@]}"; do
        awk -f "$STUB" "$ROOT/$f" >"$student/$f"
    done
done
echo "     (this step: $(elapsed))"

step "5. with every region put back, clippy finds nothing"
# The reference code in every region and no #![allow(unused)] (the
# stubber adds none to a file with nothing stubbed): what a student has
# once every lab is done and each allow deleted, as the README asks.
mapfile -t files < <(cd "$ROOT" && grep -rlE --include='*.rs' '^[[:space:]]*// LAB [a-z0-9-]+ BEGIN: ' stage*/)
for f in "${files[@]}"; do
    lab=$(grep -m1 -oE '// LAB [a-z0-9-]+ BEGIN: ' "$ROOT/$f" | cut -d' ' -f3)
    awk -v keep="$lab" -f "$STUB" "$ROOT/$f" >"$student/$f"
    if grep -q '^#!\[allow(unused)\]' "$student/$f"; then
        fail "$f: holds the regions of more than one lab; this step puts back only $lab's"
    fi
done
if (cd "$student" && cargo clippy --workspace --all-targets -- -D warnings >"$tmp/clippy.log" 2>&1); then
    echo "ok   cargo clippy --workspace --all-targets -- -D warnings passes ($(elapsed))"
else
    grep -E -A8 '^(warning|error)' "$tmp/clippy.log" | head -n 40
    fail "with every region put back and no #![allow(unused)], clippy warns (above)"
fi

step "6. each listed mistake fails its lab, saying so"
# A copy of the working tree, as check-exercises.sh makes one: files
# stamped with the time of the copy (`--touch`), so that what the last
# run built in the kept target folder is never taken for up to date.
mistakes_tree="$tmp/mistakes"
mkdir -p "$mistakes_tree"
tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./notes/book \
    --exclude=./stage06-full/www/big.bin -cf - . | tar -C "$mistakes_tree" --touch -xf -
export CARGO_TARGET_DIR="$TARGET/mistakes"
# header FIELD PATCH — the text after "# FIELD: " on the patch's first such line.
header() { sed -n "s/^# $1: //p" "$2" | head -n 1; }
# outside_regions PATCH — the files the patch changes outside lab regions:
# with every region stubbed, a patched file must equal the reference.
outside_regions() {
    local f
    (cd "$mistakes_tree" && git apply --numstat "$1") | cut -f3 | while read -r f; do
        cmp -s <(awk -f "$STUB" "$ROOT/$f" 2>/dev/null) <(awk -f "$STUB" "$mistakes_tree/$f" 2>/dev/null) ||
            echo "$f"
    done
}
mistakes=0
for lab in "${labs[@]}"; do
    shopt -s nullglob
    patches=("$ROOT/scripts/lab-mistakes/$lab"/*.patch)
    shopt -u nullglob
    for patch in "${patches[@]}"; do
        name="$lab/$(basename "$patch" .patch)"
        mistakes=$((mistakes + 1))
        says=$(header says "$patch")
        if [ -z "$(header mistake "$patch")" ] || [ -z "$says" ]; then
            fail "$name: no '# mistake: ' or no '# says: ' line at its top"
            continue
        fi
        if ! (cd "$mistakes_tree" && git apply "$patch" 2>"$tmp/apply.log"); then
            fail "$name: the patch no longer applies: $(head -n 1 "$tmp/apply.log")"
            continue
        fi
        t0=$SECONDS
        outside=$(outside_regions "$patch")
        out=$(GRADE_FAIL_FAST=1 "$mistakes_tree/scripts/grade.sh" "$lab" 2>&1) && status=0 || status=$?
        t=$(( SECONDS - t0 ))
        if [ -n "$outside" ]; then
            fail "$name: changes code outside the lab regions, in $(echo "$outside" | tr '\n' ' ')"
        elif [ "$status" = 0 ]; then
            echo "     $out"
            fail "$name: its lab passes with the mistake ($t s)"
        elif [[ $out != *"$says"* ]]; then
            printf '%s\n' "$out" | sed 's/^/     /'
            fail "$name: fails, but what grade.sh prints (above) does not say \"$says\" ($t s)"
        else
            echo "ok   $name fails, saying \"$says\" ($t s)"
        fi
        (cd "$mistakes_tree" && git apply -R "$patch")
    done
done
echo "     ($mistakes mistakes; this step: $(elapsed))"

[ "$failed" = 0 ] && echo "ok   ${#labs[@]} labs checked in $(( SECONDS - started )) s"
exit "$failed"
