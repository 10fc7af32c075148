#!/usr/bin/env bash
# Reactor, simulated Proactor and io_uring Proactor on the same server:
# stage06-full with --model reactor, proactor-sim and uring, under the same
# wrk load on a 1 KiB file, servers in alternation, medians of ROUNDS
# rounds. Prints requests/s and p99 at 50 and 1,000 connections, and, from
# one more run per model at 50 connections counted with perf, system calls
# and context switches per request (all processes and threads).
#
#   scripts/bench-models.sh
#   ROUNDS=5 SECONDS_PER_RUN=5 THREADS=8 scripts/bench-models.sh
#
# Environment: ROUNDS (default 3), SECONDS_PER_RUN (default 3), WORKERS
# (default: the number of CPUs), THREADS (proactor-sim's pool per worker,
# default 4). Needs wrk (apt-get install wrk) and, for the last two
# columns, perf (apt-get install linux-perf). Where io_uring is not
# allowed, the uring row says so.
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool wrk "apt-get install wrk"
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
WORKERS=${WORKERS:-$(nproc)}
THREADS=${THREADS:-4}
build_release stage06-full
ulimit -n 65536 2>/dev/null || true

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"

models=(reactor proactor-sim uring)
# The server checks io_uring before its other flags: an invalid
# --max-conns is refused only where io_uring works.
probe=$("$BIN/stage06-full" --model uring --max-conns 0 --addr 127.0.0.1:0 2>&1 || true)
if grep -q 'io_uring is not available' <<<"$probe"; then
    unavailable=$(head -n1 <<<"$probe")
    models=(reactor proactor-sim)
fi
flags() { # MODEL
    echo --addr 127.0.0.1:0 --root "$tmp/root" --workers "$WORKERS" --model "$1" --threads "$THREADS"
}

declare -A rps p99
for round in $(seq 1 "$ROUNDS"); do
    for conns in 50 1000; do
        for model in "${models[@]}"; do
            # shellcheck disable=SC2046
            start_server "$tmp/out" "$BIN/stage06-full" $(flags "$model")
            read -r r _ b _ < <(wrk_run 2 all "http://$SERVER_ADDR/1k.bin" "$conns" "$SECONDS_PER_RUN")
            stop_server
            rps[$model.$conns]="${rps[$model.$conns]:-} $r"
            p99[$model.$conns]="${p99[$model.$conns]:-} $b"
            csv_row "$model" "req/s, $conns conns" "$r" "$round"
            csv_row "$model" "p99 µs, $conns conns" "$b" "$round"
        done
    done
done

declare -A calls switches
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
    for model in "${models[@]}"; do
        # shellcheck disable=SC2046
        start_server "$tmp/out" perf stat -x, -o "$tmp/counts" -e raw_syscalls:sys_enter,context-switches -- \
            "$BIN/stage06-full" $(flags "$model")
        read -r _ _ _ requests < <(wrk_run 2 all "http://$SERVER_ADDR/1k.bin" 50 "$SECONDS_PER_RUN")
        pkill -TERM -P "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        calls[$model]=$(awk -F, -v n="$requests" '$3 == "raw_syscalls:sys_enter" { printf "%.2f", $1 / n }' "$tmp/counts")
        switches[$model]=$(awk -F, -v n="$requests" '$3 == "context-switches" { printf "%.3f", $1 / n }' "$tmp/counts")
        csv_row "$model" "system calls / request" "${calls[$model]}"
        csv_row "$model" "context switches / request" "${switches[$model]}"
    done
fi

echo "### Reactor vs Proactor: stage06-full --model (1 KiB file, $WORKERS workers; the server and wrk share all $(nproc) CPUs)"
echo
machine_line
echo "wrk -t2, ${SECONDS_PER_RUN}s runs, models in alternation, medians of $ROUNDS rounds; proactor-sim with --threads $THREADS per worker. System calls and context switches per request: perf, one run at 50 connections."
echo
echo "| model | req/s, 50 conns | p99 µs, 50 | req/s, 1000 conns | p99 µs, 1000 | system calls / request | context switches / request |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for model in "${models[@]}"; do
    # shellcheck disable=SC2086
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$model" \
        "$(median ${rps[$model.50]})" "$(median ${p99[$model.50]})" \
        "$(median ${rps[$model.1000]})" "$(median ${p99[$model.1000]})" \
        "${calls[$model]:-n/a}" "${switches[$model]:-n/a}"
done
if [ -n "${unavailable:-}" ]; then
    echo "| uring | $unavailable | | | | | |"
fi
