#!/usr/bin/env bash
# Grades the labs: runs the tests scripts/labs.txt lists for each lab and
# says, per lab, PASS or FAIL and how many of its tests passed.
#
#   scripts/grade.sh                  # every lab
#   scripts/grade.sh s2-drain s3-timers
#   scripts/grade.sh --list           # each lab's regions, hints and tests
#
# A lab passes when every one of its tests passes and at least one ran (a
# filter that matches no test must not pass). One line per lab:
#   PASS s1-pool: 6 of 6 tests passed
#   FAIL s2-drain: 2 of 13 tests passed; see target/grade/s2-drain.log
# The log (in CARGO_TARGET_DIR when set) holds cargo's whole output, with
# the failures and the commands to run them again one by one. A lab whose
# code does not compile fails saying so, with the compiler's first error:
#   FAIL s2-drain: does not compile; see target/grade/s2-drain.log
#       error[E0308]: mismatched types
#       …
# A lab whose tests fail prints, under its FAIL line, why they failed
# (up to six, by name): each one's name and the first lines of its panic
# message.
#   FAIL s2-drain: 12 of 13 tests passed; see target/grade/s2-drain.log
#       one_mib_in_one_write_comes_back_byte_exact panicked at stage02-epoll/tests/echo.rs:59:9:
#       et/lt: the echo stopped after 65536 of 1048576 bytes: …
# A run that
# takes longer than GRADE_TIMEOUT seconds (default 600) is stopped, so a
# stub that hangs fails its lab instead of hanging it. Exits 0 when every
# lab graded passed. With GRADE_FAIL_FAST=1, a lab stops at its first
# failing `cargo test` run (the count is then of the tests that ran), as
# check-labs.sh grades its mistakes: a fail is all it needs to know.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"

MANIFEST="$ROOT/scripts/labs.txt"
GRADE_TIMEOUT=${GRADE_TIMEOUT:-600}

# manifest — the manifest's runs, one "lab|crate|target|filters" line each,
# blanks trimmed.
manifest() {
    awk -F'|' '/^[ \t]*(#|$)/ { next }
        { for (i = 1; i <= NF; i++) { gsub(/^[ \t]+|[ \t]+$/, "", $i) }
          print $1 "|" $2 "|" $3 "|" $4 }' "$MANIFEST"
}

labs_in_order() {
    manifest | cut -d'|' -f1 | awk '!seen[$0]++'
}

list() {
    local lab crate target filters
    for lab in $(labs_in_order); do
        crate=$(manifest | awk -F'|' -v l="$lab" '$1 == l { print $2; exit }')
        echo "$lab ($crate): write every region marked // LAB $lab"
        (cd "$ROOT" && grep -rn --include='*.rs' "// LAB $lab BEGIN: " "$crate") |
            sed -E 's/^([^:]+:[0-9]+):[[:space:]]*\/\/ LAB [a-z0-9-]+ BEGIN: /  \1  /'
        echo "  graded by:"
        manifest | while IFS='|' read -r l crate target filters; do
            [ "$l" = "$lab" ] || continue
            echo "    cargo test -p $crate $target${filters:+ -- $filters}"
        done
    done
}

# first_error LOG — the compiler's first error in a cargo log: its
# `error[…]:` (or `error:`) line and what follows, up to the blank line that
# ends it (at most a dozen lines).
first_error() {
    awk '/^error(\[E[0-9]+\])?: / && !/^error: (could not compile|aborting|test failed)/ { on = 1 }
        on && /^[ \t]*$/ { exit }
        on { print; if (++n == 12) exit }' "$1"
}

# failures LOG — why the failing tests of a cargo test log failed, each
# as "NAME panicked at FILE:LINE:COL:" and up to five lines of its
# message: the panic of the test's own thread (a panic in another thread
# it started, such as a server's worker, stands in if the test thread
# never panicked itself). Up to six tests, by name, so that what is
# printed does not depend on which test happened to finish first. Nothing
# if no test panicked (a test binary that crashed or was stopped:
# cargo's own error line says so instead).
failures() {
    awk -v q="'" '
        function flush() {
            if (name == "") return
            if (own != "") print own
            else if (other != "") print other
            name = ""
        }
        /^---- .* stdout ----$/ { flush(); name = $2; own = ""; other = ""; grab = ""; next }
        name == "" { next }
        /^failures:$/ { flush(); next }
        /^thread .* panicked at / {
            at = substr($0, index($0, " panicked at "))
            grab = ""
            if ($0 ~ "^thread " q name q "( [(][0-9]+[)])? panicked at ") {
                grab = "own"; own = name at; n = 0
            } else if (other == "") {
                grab = "other"; other = name ": " $0; n = 0
            }
            next
        }
        grab != "" && (/^$/ || /^note: / || /^--- / || /^stack backtrace:/ || ++n > 5) { grab = ""; next }
        grab == "own" { own = own "\037" substr($0, 1, 200) }
        grab == "other" { other = other "\037" substr($0, 1, 200) }
        END { flush() }' "$1" | LC_ALL=C sort | head -n 6 | tr '\037' '\n'
    if ! grep -q '^---- .* stdout ----$' "$1"; then
        grep -m1 -E "^error: test failed|process didn.t exit successfully" "$1" || true
    fi
}

# grade LAB — runs the lab's tests; prints its line, returns 1 if it failed.
grade() {
    local lab=$1 log="$TARGET/grade/$1.log" ran=0 passed=0 failed=0 l crate target filters
    local -a filter_args
    mkdir -p "$TARGET/grade"
    : >"$log"
    while IFS='|' read -r l crate target filters; do
        [ "$l" = "$lab" ] || continue
        read -r -a filter_args <<<"$filters"
        # shellcheck disable=SC2086
        echo "\$ cargo test -p $crate $target${filters:+ -- $filters}" >>"$log"
        # Word splitting of $target (`--test echo`) is wanted here.
        # shellcheck disable=SC2086
        if ! (cd "$ROOT" && CARGO_TERM_COLOR=never timeout --kill-after=10 "$GRADE_TIMEOUT" \
            cargo test -p "$crate" $target -- "${filter_args[@]}" >>"$log" 2>&1); then
            failed=1
            [ "${GRADE_FAIL_FAST:-0}" = 1 ] && break
        fi
    done < <(manifest)
    # Every test binary says how many tests it runs, and how many passed
    # if it got to the end (one that crashed or was stopped does not).
    ran=$(awk '/^running [0-9]+ tests?$/ { n += $2 } END { print n + 0 }' "$log")
    passed=$(awk '/^test result: / { sub(/^.*: (ok|FAILED)\. /, ""); n += $1 } END { print n + 0 }' "$log")
    if [ "$failed" = 0 ] && [ "$ran" -gt 0 ] && [ "$passed" = "$ran" ]; then
        echo "PASS $lab: $passed of $ran tests passed"
        return 0
    fi
    if grep -q '^error: could not compile' "$log"; then
        echo "FAIL $lab: does not compile; see $log"
        first_error "$log" | sed 's/^/    /'
    elif [ "$ran" = 0 ]; then
        echo "FAIL $lab: no test ran (does scripts/labs.txt name tests that exist?); see $log"
    else
        echo "FAIL $lab: $passed of $ran tests passed; see $log"
        failures "$log" | sed 's/^/    /'
    fi
    return 1
}

if [ "${1:-}" = --list ]; then
    list
    exit 0
fi

labs=("$@")
if [ ${#labs[@]} = 0 ]; then
    mapfile -t labs < <(labs_in_order)
fi
known=" $(labs_in_order | tr '\n' ' ') "
status=0
for lab in "${labs[@]}"; do
    if [[ $known != *" $lab "* ]]; then
        echo "no lab $lab in scripts/labs.txt (there are:$known)" >&2
        exit 1
    fi
    grade "$lab" || status=1
done
exit "$status"
