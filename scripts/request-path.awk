# Instructions executed per source file in callgrind dumps of one
# process; used by scripts/request-path.sh.
#
#   awk -v src=DIR/ -f scripts/request-path.awk DUMP1 DUMP2 …
#
# prints `FILE IR1 IR2 …` (a count per dump, in order) for every file under
# DIR (FILE relative to DIR) with instructions in any of the dumps. A file's count is its self
# cost: the instructions whose debug info names one of its lines, inlined
# code included (callgrind writes that as `fi=`/`fe=` records), never the
# cost of the calls it makes (the line after `calls=` is the callee's
# inclusive cost). Instructions on line 0 (code the compiler made with no
# source line of its own, such as glue it puts under the crate's root
# file) belong to no file and are left out. The reading follows
# callgrind_annotate's: the current file is the last `fl=`, `fi=` or `fe=`;
# names are compressed as `(ID) NAME` the first time, `(ID)` after, in one
# table shared by `fl`, `fi`, `fe`, `cfi`, `cfl` and `jfi`; a position is
# a line number, `+N`/`-N` from the previous one, or `*` for the same.

FNR == 1 { part++; line = 0; cur = ""; skip = 0; delete names }

function name(v,   id, rest) {
    if (match(v, /^\([0-9]+\)/)) {
        id = substr(v, 2, RLENGTH - 2)
        rest = substr(v, RLENGTH + 1)
        sub(/^ /, "", rest)
        if (rest != "") names[id] = rest
        return names[id]
    }
    return v
}

/^(fl|fi|fe)=/ { cur = name(substr($0, 4)); next }
/^(cfi|cfl|jfi)=/ { name(substr($0, 5)); next }
/^calls=/ { skip = 1; next }
/^[0-9+*-]/ {
    if ($1 ~ /^\+/) line += substr($1, 2)
    else if ($1 ~ /^-/) line -= substr($1, 2)
    else if ($1 != "*") line = $1 + 0
    if (skip) { skip = 0; next }
    if (line != 0 && index(cur, src) == 1) {
        ir[substr(cur, length(src) + 1), part] += $2
    }
}

END {
    for (k in ir) {
        split(k, f, SUBSEP)
        seen[f[1]] = 1
    }
    for (file in seen) {
        printf "%s", file
        for (i = 1; i <= part; i++) printf " %d", ir[file, i]
        printf "\n"
    }
}
