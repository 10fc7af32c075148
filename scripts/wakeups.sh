#!/usr/bin/env bash
# Wake-ups of an idle server: context switches per second, read from
# /proc/PID/status, with no clients and then with N idle clients connected.
# A process that sleeps in epoll_wait and is never woken makes none.
#
#   scripts/wakeups.sh STAGE [SERVER FLAGS…]
#   scripts/wakeups.sh 03 --tick-ms 100
#   N=100 SECONDS_PER_RUN=5 scripts/wakeups.sh 04
#
# Environment: N idle clients (default 100), SECONDS_PER_RUN (default 5).
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 1 "$@"
stage=$(stage_dir "$1"); shift
N=${N:-100}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
build_release "$stage" echo-load

make_tmp
start_server "$tmp/out" "$BIN/$stage" --addr 127.0.0.1:0 "$@"

switches() {
    echo $(( $(proc_field "$SERVER_PID" voluntary_ctxt_switches) + $(proc_field "$SERVER_PID" nonvoluntary_ctxt_switches) ))
}
per_second() {
    local a b
    sleep 0.5
    a=$(switches)
    sleep "$SECONDS_PER_RUN"
    b=$(switches)
    awk -v d=$(( b - a )) -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%.1f", d / s }'
}

idle=$(per_second)
"$BIN/echo-load" --addr "$SERVER_ADDR" -c "$N" --idle -d $(( SECONDS_PER_RUN + 5 )) >"$tmp/load" &
load=$!
for _ in $(seq 1 200); do
    grep -q '^connected' "$tmp/load" && break
    sleep 0.05
done
with=$(per_second)
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true

echo "### Idle wake-ups: $stage $*"
echo
machine_line
echo
echo "| | wake-ups per second |"
echo "|---|---:|"
echo "| no clients | $idle |"
echo "| $N idle clients | $with |"
csv_row "no clients" "${CSV_COLUMN:-$stage $*}" "$idle"
csv_row "$N idle clients" "${CSV_COLUMN:-$stage $*}" "$with"
