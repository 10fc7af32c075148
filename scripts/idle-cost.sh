#!/usr/bin/env bash
# What idle clients cost an echo server: its resident memory and thread
# count before and while N clients are connected and silent (each has done
# one round trip). Prints a markdown table. Figures are summed over the
# server and its child processes (stage05's workers): RSS counts a page
# shared by several processes once in each, PSS divides it among them.
#
#   scripts/idle-cost.sh STAGE [SERVER FLAGS…]
#   scripts/idle-cost.sh 01 --mode threads
#   N=10000 scripts/idle-cost.sh 02
#
# Environment: N (default 1000).
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 1 "$@"
stage=$(stage_dir "$1"); shift
N=${N:-1000}
build_release "$stage" echo-load
ulimit -n $(( N + 1024 )) 2>/dev/null || { echo "cannot raise the descriptor limit to $((N + 1024))" >&2; exit 1; }

make_tmp
start_server "$tmp/out" "$BIN/$stage" --addr 127.0.0.1:0 "$@"
sleep 0.2
sum_field() { # FIELD -> sum over the server's processes
    local total=0 p
    for p in $(tree_pids "$SERVER_PID"); do total=$(( total + $(proc_field "$p" "$1") )); done
    echo "$total"
}
sum_pss() {
    local total=0 p
    for p in $(tree_pids "$SERVER_PID"); do
        total=$(( total + $(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup") ))
    done
    echo "$total"
}
procs0=$(tree_pids "$SERVER_PID" | wc -l)
rss0=$(sum_field VmRSS)
pss0=$(sum_pss)
thr0=$(sum_field Threads)

"$BIN/echo-load" --addr "$SERVER_ADDR" -c "$N" --idle -d 30 >"$tmp/load" &
load=$!
for _ in $(seq 1 600); do
    grep -q '^connected' "$tmp/load" && break
    kill -0 "$load" 2>/dev/null || { echo "echo-load failed" >&2; exit 1; }
    sleep 0.05
done
sleep 0.5
rss1=$(sum_field VmRSS)
pss1=$(sum_pss)
thr1=$(sum_field Threads)
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true

echo "### Idle clients: $stage $*"
echo
machine_line
echo
echo "| | processes | RSS KiB | PSS KiB | threads |"
echo "|---|---:|---:|---:|---:|"
echo "| no clients | $procs0 | $rss0 | $pss0 | $thr0 |"
echo "| $N idle clients | $procs0 | $rss1 | $pss1 | $thr1 |"
awk -v a="$rss0" -v b="$rss1" -v c="$pss0" -v d="$pss1" -v n="$N" \
    'BEGIN { printf "| per client | | %.1f | %.1f | |\n", (b - a) / n, (d - c) / n }'

col=${CSV_COLUMN:-$stage $*}
csv_row "processes" "$col" "$procs0"
csv_row "threads, no clients" "$col" "$thr0"
csv_row "threads, $N idle clients" "$col" "$thr1"
csv_row "RSS KiB, no clients" "$col" "$rss0"
csv_row "RSS KiB, $N idle clients" "$col" "$rss1"
csv_row "RSS KiB per client" "$col" "$(awk -v a="$rss0" -v b="$rss1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')"
csv_row "PSS KiB per client" "$col" "$(awk -v a="$pss0" -v b="$pss1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')"
