#!/usr/bin/env bash
# What idle clients cost an echo server: its resident memory (RSS) and
# thread count before and while N clients are connected and silent (each
# has done one round trip). Prints a markdown table.
#
#   scripts/idle-cost.sh STAGE [SERVER FLAGS…]
#   scripts/idle-cost.sh 01 --mode threads
#   N=10000 scripts/idle-cost.sh 02
#
# Environment: N (default 1000).
. "$(dirname "$0")/lib.sh"

if [ $# -lt 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit $(( $# < 1 ))
fi
stage=$(stage_dir "$1"); shift
N=${N:-1000}
build_release "$stage" echo-load
ulimit -n $(( N + 1024 )) 2>/dev/null || { echo "cannot raise the descriptor limit to $((N + 1024))" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'stop_server; rm -rf "$tmp"' EXIT
start_server "$tmp/out" "$BIN/$stage" --addr 127.0.0.1:0 "$@"
sleep 0.2
rss0=$(proc_field "$SERVER_PID" VmRSS)
thr0=$(proc_field "$SERVER_PID" Threads)

"$BIN/echo-load" --addr "$SERVER_ADDR" -c "$N" --idle -d 30 >"$tmp/load" &
load=$!
for _ in $(seq 1 600); do
    grep -q '^connected' "$tmp/load" && break
    kill -0 "$load" 2>/dev/null || { echo "echo-load failed" >&2; exit 1; }
    sleep 0.05
done
sleep 0.5
rss1=$(proc_field "$SERVER_PID" VmRSS)
thr1=$(proc_field "$SERVER_PID" Threads)
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true

echo "### Idle clients: $stage $*"
echo
machine_line
echo
echo "| | RSS KiB | threads |"
echo "|---|---:|---:|"
echo "| no clients | $rss0 | $thr0 |"
echo "| $N idle clients | $rss1 | $thr1 |"
awk -v a="$rss0" -v b="$rss1" -v n="$N" 'BEGIN { printf "| per client | %.1f | |\n", (b - a) / n }'
