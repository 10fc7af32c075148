# Turns the lab regions of one Rust source file into stubs; used by
# scripts/student-repo.sh and scripts/check-labs.sh. A region is
#
#     // LAB ID BEGIN: a one-line hint
#     …the reference code…
#     // LAB END
#
# and its code becomes one line, `todo!("ID: a one-line hint")`. The two
# marker lines stay, so a student finds every region of a lab with
# `grep -rn 'LAB ID'`, and check-labs.sh can put the reference code back
# one lab at a time. A region is a whole function body (or the whole tail
# of one), so the stub still compiles.
#
#   awk -f scripts/lab-stub.awk FILE                # every lab stubbed
#   awk -v keep=s4-heap -f scripts/lab-stub.awk FILE  # all but s4-heap
#
# A file that gets a stub also gets `#![allow(unused)]` after its opening
# `//!` comment: until the lab is done, its parameters, imports and helpers
# are unused, and the student repository should build without a warning.
# A marker out of place (a BEGIN inside a region, an END outside one, a
# region never closed, a hint with a quote or a backslash) is an error:
# the file name and line go to stderr and the exit status is 2.

function fail(msg) {
    printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
    failed = 1
    exit 2
}

{ lines[NR] = $0 }

/^[ \t]*\/\/ LAB [a-z0-9-]+ BEGIN: / {
    if (open != "") fail("LAB " $3 " begins inside LAB " open)
    open = $3
    hint = $0
    sub(/^[ \t]*\/\/ LAB [a-z0-9-]+ BEGIN: /, "", hint)
    if (hint ~ /["\\]/) fail("a hint may hold no quote and no backslash")
    indent = $0
    sub(/[^ \t].*$/, "", indent)
    # A format string: braces are doubled.
    gsub(/\{/, "{{", hint)
    gsub(/\}/, "}}", hint)
    begin[NR] = 1
    if (open != keep) {
        stub[NR] = indent "todo!(\"" open ": " hint "\")"
        stubbed = 1
    }
    next
}

/^[ \t]*\/\/ LAB END[ \t]*$/ {
    if (open == "") fail("LAB END outside a lab region")
    end[NR] = 1
    open = ""
    next
}

/^[ \t]*\/\/ LAB / { fail("not a LAB marker: use `// LAB ID BEGIN: hint` and `// LAB END`") }

open != "" && open != keep { drop[NR] = 1 }

END {
    if (failed) exit 2
    if (open != "") { FNR = NR; fail("LAB " open " is never closed") }
    # After the opening `//!` lines, where an inner attribute may stand.
    after = 0
    while (after < NR && lines[after + 1] ~ /^\/\/!/) after++
    for (i = 1; i <= NR; i++) {
        if (i == after + 1 && stubbed) {
            print "// Until the labs below are done, their todo!() stubs leave code unused;"
            print "// delete this line once they pass."
            print "#![allow(unused)]"
        }
        if (drop[i]) continue
        print lines[i]
        if (i in stub) print stub[i]
    }
}
