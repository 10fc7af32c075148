# Helpers shared by the scripts in this folder. Source it; do not run it.
#
#   . "$(dirname "$0")/lib.sh"

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/release"

# stage_dir 3 | 03 | stage03 | stage03-timer-list  ->  stage03-timer-list
stage_dir() {
    local arg=$1 n
    case $arg in
        stage[0-9][0-9]-*) n=${arg:5:2} ;;
        stage[0-9][0-9]) n=${arg:5:2} ;;
        [0-9][0-9]) n=$arg ;;
        [0-9]) n=0$arg ;;
        *) echo "not a stage: $arg (use 01…06 or a crate name)" >&2; return 1 ;;
    esac
    local dir
    dir=$(cd "$ROOT" && ls -d stage"$n"-* 2>/dev/null | head -n1) || true
    [ -n "$dir" ] || { echo "no stage $n in $ROOT" >&2; return 1; }
    echo "$dir"
}

# Builds the release binaries of the given packages (quietly).
build_release() {
    local args=()
    for p in "$@"; do args+=(-p "$p"); done
    (cd "$ROOT" && cargo build --release --quiet "${args[@]}")
}

# One line describing this machine, for the head of every table.
machine_line() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
    printf 'Machine: %s, %s cores, %s; %s; commit %s\n' \
        "${cpu:-unknown cpu}" "$(nproc)" "$(uname -sr)" "$(date -u +%Y-%m-%d)" \
        "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)"
}

# start_server OUTFILE CMD...  — starts CMD (which must take --addr) on a
# free port, waits for its `listening on ADDR` line, and sets SERVER_PID and
# SERVER_ADDR. The server's stdout goes to OUTFILE.
start_server() {
    local out=$1; shift
    "$@" >"$out" 2>"$out.err" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        if grep -q '^listening on ' "$out" 2>/dev/null; then
            SERVER_ADDR=$(sed -n 's/^listening on //p' "$out" | head -n1)
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "server did not start: $*" >&2
    cat "$out.err" >&2 || true
    return 1
}

# stop_server — SIGTERM, then SIGKILL if it lingers; waits for it.
stop_server() {
    [ -n "${SERVER_PID:-}" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# proc_field PID FIELD — a number from /proc/PID/status (VmRSS is in kB).
proc_field() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# median of the numbers given as arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# tree_pids PID — PID and its children (a prefork server's workers).
tree_pids() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}

# tree_switches PID — context switches of PID and its children so far.
tree_switches() {
    local total=0 p v n
    for p in $(tree_pids "$1"); do
        v=$(proc_field "$p" voluntary_ctxt_switches 2>/dev/null || echo 0)
        n=$(proc_field "$p" nonvoluntary_ctxt_switches 2>/dev/null || echo 0)
        total=$(( total + ${v:-0} + ${n:-0} ))
    done
    echo "$total"
}
