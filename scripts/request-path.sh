#!/usr/bin/env bash
# Which files of stage06-full/src run code while the server serves one GET
# of / (the demo site's index), and how many: the number behind the budget
# "a default GET crosses at most 18 source files" (STYLE.md, point 11b).
#
#   scripts/request-path.sh                    # defaults: Reactor, --dispatch pass
#   scripts/request-path.sh -- --model uring   # server flags after --
#   COUNTS=1 scripts/request-path.sh           # and instructions per file
#
# How. The server (a debug build, see below) runs under valgrind's
# callgrind, with its defaults but --addr 127.0.0.1:0, counting nothing
# while it starts. Once every process is idle, callgrind_control turns
# counting on in the master and in each worker, and has each process dump
# its counts three times: twice with the server idle, and once after one
# GET / has been sent, its whole response read, and the server has gone
# idle again. The connection stays open until then: its close is not
# counted, nor are start-up and shut-down. A file is crossed by the
# request when more instructions ran on its lines in that last period
# than in either idle one. The answer is per process: the master (which,
# under --dispatch pass, accepts the connection and passes it on), each
# worker that took part, and the files of all of them together.
#
# Why the idle periods: callgrind_control reaches a process asleep in a
# system call through ptrace, which wakes it (EINTR) for one idle turn of
# its loop after each command, the dump before the request included. The
# Reactor's turn runs the same instructions every time; the io_uring
# worker's is one loop turn or two, and formats the Date when a new second
# has begun: hence the larger of the two idle counts. A worker that ran
# no file beyond those of its idle turns took no part.
#
# What counts as crossed: at least one instruction that the debug info
# puts on a line of the file ran in that process, code inlined from the
# file included. Code of std, nix or libc run on the file's behalf counts
# for those, not for the file. Line 0 (code the compiler made with no
# source line, such as glue it files under lib.rs) is nobody's. The rest
# of the loop turn after the response's last byte left (re-arming the
# connection's timer, the worker's load report to the master, the master
# reading it) counts: it is work done for this request.
#
# A debug build (the dev profile) by default: every function the source
# calls is called, so a file counts when its code runs. The release
# build (PROFILE=release) keeps line tables that name the file of inlined
# code, but folds some small functions into their callers' instructions:
# accept.rs (Refused: the empty queue's next deadline, asked every turn)
# drops out of its count that way.
#
# No warm-up request: the first GET of a fresh server is the one a reader
# follows, and its one-time work (the file cache's first open of
# index.html, the pools' first buffers) runs in files the request crosses
# anyway; with WARMUP=/hello.txt and `-- --workers 1`, the counts change
# but not the files. WARMUP=PATH sends a GET of PATH first, on its own
# connection, before counting starts; the master gives it to the
# least-loaded worker, so add `-- --workers 1` to warm the one measured.
#
# Environment: PROFILE (dev or release; default dev), REQUEST_PATH
# (default /), WARMUP=PATH, COUNTS=1 (each file's instructions in the
# request's period and in the idle ones), KEEP=DIR (keeps callgrind's
# files, for callgrind_annotate), TIMEOUT (seconds to wait, after the
# build, for the server to start, settle and answer; default 120).
#
# Needs valgrind (apt-get install valgrind); without it, says `skipped:`
# and exits 0. Takes seconds once built. Not run by CI: a measurement.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
if [ "${1:-}" = -- ]; then shift; fi

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    echo "skipped: valgrind is missing (apt-get install valgrind)"
    exit 0
fi
PROFILE=${PROFILE:-dev}
REQUEST_PATH=${REQUEST_PATH:-/}
TIMEOUT=${TIMEOUT:-120}
SRC="$ROOT/stage06-full/src/"

case $PROFILE in
    dev)
        (cd "$ROOT" && cargo build --quiet -p stage06-full)
        server="$TARGET/debug/stage06-full"
        ;;
    release)
        build_release stage06-full
        server="$BIN/stage06-full"
        ;;
    *) echo "PROFILE is dev or release" >&2; exit 1 ;;
esac

make_tmp
# The worker processes, once the server is up; stopped at exit with it.
workers=()
stop_all() {
    local p
    if [ -n "${conn:-}" ]; then exec {conn}>&-; fi
    conn=
    if [ -n "${SERVER_PID:-}" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        # A worker outlives its master only briefly (it stops at the
        # channel's EOF); one still there is stopped, if it is still ours.
        for p in "${workers[@]}"; do
            if grep -qa stage06-full "/proc/$p/cmdline" 2>/dev/null; then
                kill -KILL "$p" 2>/dev/null || true
            fi
        done
    fi
}
trap 'stop_all; cleanup' EXIT

deadline=$(( SECONDS + TIMEOUT ))
# give_up_unless_time WHAT — exits, saying what it waited for, once
# TIMEOUT seconds have passed.
give_up_unless_time() {
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "no answer after ${TIMEOUT}s: still waiting for $1" >&2
        echo "(valgrind runs the server tens of times slower; TIMEOUT=SECONDS allows more)" >&2
        if [ -s "$tmp/server.err" ]; then
            echo "the server's stderr:" >&2
            tail -n 20 "$tmp/server.err" >&2
        fi
        exit 1
    fi
}
left() {
    local s=$(( deadline - SECONDS ))
    echo $(( s > 1 ? s : 1 ))
}

# wait_idle WHAT — returns once no thread of the server's processes is
# runnable and none has used CPU time for 0.3 s (under valgrind, a process
# is busy for milliseconds where it would take microseconds).
wait_idle() {
    local before after p t busy
    before=$(tree_ticks "$SERVER_PID")
    while :; do
        sleep 0.3
        after=$(tree_ticks "$SERVER_PID")
        busy=
        for p in $(tree_pids "$SERVER_PID"); do
            for t in /proc/"$p"/task/*/stat; do
                # The state is the field after the name, which may hold
                # spaces: read it after the closing parenthesis.
                case $(sed 's/.*) //' "$t" 2>/dev/null | cut -d' ' -f1) in
                    R) busy=1 ;;
                esac
            done
        done
        if [ -z "$busy" ] && [ "$after" = "$before" ]; then return 0; fi
        before=$after
        give_up_unless_time "$1"
    done
}

# control COMMAND… — a callgrind_control command to the master and every
# worker, bounded by the time left.
control() {
    if ! timeout "$(left)" callgrind_control --vgdb-prefix="$tmp/vgdb" "$@" \
        "$SERVER_PID" "${workers[@]}" >>"$tmp/control.out" 2>&1; then
        echo "callgrind_control $* failed (vgdb needs ptrace to reach a process asleep in a system call):" >&2
        tail -n 5 "$tmp/control.out" >&2
        exit 1
    fi
}

# dump N — every process's counts so far go to $tmp/cg.PID.N, and its
# counters restart from zero.
dump() {
    local p
    control --dump
    for p in "$SERVER_PID" "${workers[@]}"; do
        until [ -s "$tmp/cg.$p.$1" ]; do
            sleep 0.1
            give_up_unless_time "callgrind's dump $1 of process $p"
        done
    done
}

# get PATH [HEADER] — on the connection open on descriptor $conn: sends a
# GET of PATH with curl's default headers (and HEADER), reads the whole
# response (its head, then Content-Length bytes), and sets STATUS and
# LENGTH.
get() {
    local line
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: curl/8\r\nAccept: */*\r\n%s\r\n' \
        "$1" "$SERVER_ADDR" "${2:+$2$'\r\n'}" >&"$conn"
    STATUS=
    LENGTH=
    while :; do
        if ! IFS= read -r -t "$(left)" line <&"$conn"; then
            give_up_unless_time "the response to GET $1"
            echo "the server closed the connection before the end of the response to GET $1" >&2
            exit 1
        fi
        line=${line%$'\r'}
        [ -n "$line" ] || break
        if [ -z "$STATUS" ]; then STATUS=${line#HTTP/1.1 }; fi
        case ${line,,} in
            content-length:*) LENGTH=${line#*:}; LENGTH=${LENGTH// /} ;;
        esac
    done
    if [ -z "$LENGTH" ]; then
        echo "the response to GET $1 has no Content-Length: $STATUS" >&2
        exit 1
    fi
    if [ "$(timeout "$(left)" head -c "$LENGTH" <&"$conn" | wc -c)" -ne "$LENGTH" ]; then
        give_up_unless_time "the body of the response to GET $1"
        echo "the body of the response to GET $1 is shorter than its Content-Length $LENGTH" >&2
        exit 1
    fi
}

: >"$tmp/server.out"
# --trace-children: a forked worker is counted without it, but valgrind
# then turns off the worker's gdbserver, which callgrind_control talks to.
# The server does not exec, so the flag does nothing else here. Its own
# --vgdb-prefix keeps other valgrind runs on the machine out of reach.
valgrind --tool=callgrind --instr-atstart=no --trace-children=yes \
    --vgdb-prefix="$tmp/vgdb" --callgrind-out-file="$tmp/cg.%p" \
    "$server" --addr 127.0.0.1:0 "$@" >"$tmp/server.out" 2>"$tmp/server.err" &
SERVER_PID=$!
master=$SERVER_PID
# The master prints `listening on` once every worker is ready.
until grep -q '^listening on ' "$tmp/server.out"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the server did not start: stage06-full --addr 127.0.0.1:0 $*" >&2
        grep -v '^==' "$tmp/server.err" >&2 || true
        exit 1
    fi
    sleep 0.1
    give_up_unless_time "the server to start under valgrind"
done
SERVER_ADDR=$(sed -n 's/^listening on //p' "$tmp/server.out" | head -n1)
read -r -a workers <<<"$(pgrep -P "$SERVER_PID" | tr '\n' ' ')"
wait_idle "the server to settle after starting"

if [ -n "${WARMUP:-}" ]; then
    exec {conn}<>"/dev/tcp/${SERVER_ADDR%:*}/${SERVER_ADDR##*:}"
    get "$WARMUP" "Connection: close"
    exec {conn}>&-
    conn=
    wait_idle "the server to settle after the warm-up GET $WARMUP"
fi

# Counting on, then two idle periods (dumps 1 and 2); each command's own
# wake-up lands in the period after it.
control --instr=on
wait_idle "the server to settle after counting was turned on"
dump 1
wait_idle "the server to settle after dump 1"
dump 2
wait_idle "the server to settle after dump 2"

# The request, and its period (dump 3).
exec {conn}<>"/dev/tcp/${SERVER_ADDR%:*}/${SERVER_ADDR##*:}"
get "$REQUEST_PATH"
wait_idle "the server to settle after GET $REQUEST_PATH"
dump 3
stop_all
if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$tmp"/cg.* "$KEEP"/
fi

# counts PID — `FILE IDLE1 IDLE2 REQUEST` for each file of stage06-full/src
# that process ran in any of its three periods, sorted.
counts() {
    awk -v src="$SRC" -f "$ROOT/scripts/request-path.awk" \
        "$tmp/cg.$1.1" "$tmp/cg.$1.2" "$tmp/cg.$1.3" | sort
}
# crossed — from counts: the files with more instructions in the request's
# period than in either idle period (the io_uring worker's idle wake-up is
# one loop turn or two, and formats the Date when a new second has begun),
# if the process took part at all: if it ran a file that it ran in neither
# idle period. (A worker that did not, and whose wake-up in the request's
# period happened to be its larger kind, would otherwise be listed.) With
# COUNTS=1, each file's counts follow it.
crossed() {
    awk -v counts="${COUNTS:-}" '
        { hi = $2 > $3 ? $2 : $3; lo = $2 > $3 ? $3 : $2 }
        $4 <= hi { next }
        hi == 0 { took_part = 1 }
        counts == "" { out[++n] = $1; next }
        lo == hi { out[++n] = $1 "=" $4 "-" hi; next }
        { out[++n] = $1 "=" $4 "-" lo ".." hi }
        END { if (took_part) for (i = 1; i <= n; i++) print out[i] }'
}

flags=${*:-defaults: --model reactor --dispatch pass}
printf 'files of stage06-full/src crossed by one GET %s (%s; %s build; workers: %s):\n' \
    "$REQUEST_PATH" "$flags" "$PROFILE" "${#workers[@]}"
if [ -n "${COUNTS:-}" ]; then
    echo "  (FILE=R-I: R instructions ran on its lines in the request's period, I in each idle one)"
fi
: >"$tmp/all"
idle=0
for p in "$master" "${workers[@]}"; do
    counts "$p" | crossed >"$tmp/files"
    if [ "$p" = "$master" ]; then
        who=master
        [ -s "$tmp/files" ] || echo nothing >"$tmp/files"
    elif [ -s "$tmp/files" ]; then
        who="worker (pid $p)"
    else
        idle=$(( idle + 1 ))
        continue
    fi
    echo "  $who: $(tr '\n' ' ' <"$tmp/files" | sed 's/ $//')"
    cat "$tmp/files" >>"$tmp/all"
done
if [ "$idle" -gt 0 ]; then
    echo "  other workers: $idle, which ran nothing for it"
fi
echo "  together: $(sed -e 's/=.*//' -e '/^nothing$/d' "$tmp/all" | sort -u | wc -l) files"
echo "  (the response: $STATUS, $LENGTH bytes)"
