#!/usr/bin/env bash
# Who does the work of a large response on loopback: the server, inside
# its `sendfile`, or the client, whose reads send the ACKs that release the
# rest of the file. One wrk load (CONNS keep-alive connections asking for a
# SIZE file) against stage06 (and BASELINE, a stage06-full binary built
# from another commit) and nginx in alternation, ROUNDS rounds. Per
# request: the CPU time of the server's processes and of wrk, and their
# context switches (wrk switches when nothing is readable or when the
# server preempts it), counted from /proc over the middle of each run.
#
#   scripts/who-sends.sh
#   BASELINE=../old/target/release/stage06-full scripts/who-sends.sh
#   SIZE=65536 STAGE06_FLAGS="--dispatch reuseport" scripts/who-sends.sh
#
# Environment: SIZE (default 1048576), CONNS (default 50), ROUNDS (default
# 3), SECONDS_PER_RUN (default 5), WORKERS (default: the number of CPUs),
# STAGE06_FLAGS (added to stage06's flags), BASELINE_FLAGS (the
# baseline's, when they differ). With CSV=FILE, every round's
# figures also go to FILE (csv_row in lib.sh), a row per server.
#
# Needs wrk and nginx: apt-get install wrk nginx-light
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool wrk "apt-get install wrk"
SIZE=${SIZE:-1048576}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
WORKERS=${WORKERS:-$(nproc)}
build_release stage06-full
ulimit -n 65536 2>/dev/null || true

make_tmp
mkdir -p "$tmp/root"
head -c "$SIZE" /dev/urandom >"$tmp/root/file.bin"
# shellcheck disable=SC2086
start_server "$tmp/out" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" \
    --workers "$WORKERS" ${STAGE06_FLAGS:-}
servers=(stage06 nginx)
declare -A addr pid
addr[stage06]=$SERVER_ADDR; pid[stage06]=$SERVER_PID
if [ -n "${BASELINE:-}" ]; then
    # shellcheck disable=SC2086
    start_baseline "$tmp/baseline" --addr 127.0.0.1:0 --root "$tmp/root" \
        --workers "$WORKERS" ${BASELINE_FLAGS-${STAGE06_FLAGS:-}}
    addr[baseline]=$BASELINE_ADDR; pid[baseline]=$BASELINE_PID
    servers=(stage06 baseline nginx)
fi
start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx"
addr[nginx]=$NGINX_ADDR; pid[nginx]=$NGINX_PID

# The window counted: the run less a second at each end, where wrk's
# connections open and close.
window=$(( SECONDS_PER_RUN - 2 ))
tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
declare -A rps scpu wcpu ssw wsw
for round in $(seq 1 "$ROUNDS"); do
    for who in "${servers[@]}"; do
        # wrk_run in the background: $! is the subshell that runs wrk and
        # the awk that reads its report, so tree_ticks and tree_switches
        # of it count wrk (the subshell and awk only wait until the end).
        wrk_run 2 all "http://${addr[$who]}/file.bin" "$CONNS" "$SECONDS_PER_RUN" >"$tmp/wrk" &
        w=$!
        sleep 1
        s0=$(tree_ticks "${pid[$who]}"); x0=$(tree_switches "${pid[$who]}")
        w0=$(tree_ticks "$w"); y0=$(tree_switches "$w")
        sleep "$window"
        s1=$(tree_ticks "${pid[$who]}"); x1=$(tree_switches "${pid[$who]}")
        w1=$(tree_ticks "$w"); y1=$(tree_switches "$w")
        wait "$w"
        read -r r _ <"$tmp/wrk"
        n=$(( ${r:-0} * window ))
        [ "$n" -gt 0 ] || { echo "no requests answered by $who" >&2; exit 1; }
        rps[$who]="${rps[$who]:-} $r"
        scpu[$who]="${scpu[$who]:-} $(( (s1 - s0) * tick_us / n ))"
        wcpu[$who]="${wcpu[$who]:-} $(( (w1 - w0) * tick_us / n ))"
        ssw[$who]="${ssw[$who]:-} $(awk -v d=$(( x1 - x0 )) -v n="$n" 'BEGIN { printf "%.2f", d / n }')"
        wsw[$who]="${wsw[$who]:-} $(awk -v d=$(( y1 - y0 )) -v n="$n" 'BEGIN { printf "%.2f", d / n }')"
        csv_row "$who" "req/s" "$r" "$round"
        csv_row "$who" "server CPU µs / request" "${scpu[$who]##* }" "$round"
        csv_row "$who" "wrk CPU µs / request" "${wcpu[$who]##* }" "$round"
        csv_row "$who" "server switches / request" "${ssw[$who]##* }" "$round"
        csv_row "$who" "wrk switches / request" "${wsw[$who]##* }" "$round"
    done
done

echo "### Who does the work of a $SIZE-byte response ($WORKERS workers each; the servers and wrk share all $(nproc) CPUs)"
echo
machine_line
echo "stage06 flags: \`--workers $WORKERS${STAGE06_FLAGS:+ $STAGE06_FLAGS}\`; wrk -t2 -c$CONNS, ${SECONDS_PER_RUN}s runs, counted over the middle ${window}s, medians of $ROUNDS rounds in alternation."
echo
echo "| server | req/s | server CPU µs / request | wrk CPU µs / request | server switches / request | wrk switches / request |"
echo "|---|---:|---:|---:|---:|---:|"
for who in "${servers[@]}"; do
    # shellcheck disable=SC2086
    printf '| %s | %s | %s | %s | %s | %s |\n' "$who" "$(median ${rps[$who]})" \
        "$(median ${scpu[$who]})" "$(median ${wcpu[$who]})" \
        "$(median ${ssw[$who]})" "$(median ${wsw[$who]})"
done
