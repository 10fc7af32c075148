#!/usr/bin/env bash
# stage05's dispatch modes on the same loads: how evenly connections spread
# over the workers, what it costs, and the thundering herd.
#
#   scripts/dispatch.sh
#   WORKERS=4 ROUNDS=3 scripts/dispatch.sh
#
# For each mode (pass, shared, shared --exclusive, reuseport):
# - persistent: echo-load with CONNS connections in ping-pong; messages/s,
#   p99, and the live connections per worker half-way (min–max);
# - churn: echo-load --churn with CHURNERS clients (connect, echo once,
#   close); connections/s, context switches of all server processes per
#   connection (wake-ups), and connections taken per worker (min–max).
# Medians over ROUNDS rounds; modes alternate within a round.
#
# Environment: WORKERS (default 4), CONNS (default 100), CHURNERS
# (default 1: one connection at a time, when idle workers show the herd), ROUNDS (default 3), SECONDS_PER_RUN (default 3).
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
WORKERS=${WORKERS:-4}
CONNS=${CONNS:-100}
CHURNERS=${CHURNERS:-1}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
stage=$(stage_dir 05)
build_release "$stage" echo-load

make_tmp
modes=("pass" "shared" "shared --exclusive" "reuseport")

# status FILE — asks the master for `workers PID:LIVE:TAKEN …` and prints
# the newest such line.
status() {
    kill -USR1 "$SERVER_PID"
    sleep 0.2
    grep '^workers ' "$1" | tail -n1
}
spread() { # FIELD(2=live,3=taken) LINE -> "min–max"
    tr ' ' '\n' <<<"${2#workers }" | awk -F: -v f="$1" '
        NR == 1 || $f < min { min = $f } NR == 1 || $f > max { max = $f }
        END { printf "%d–%d", min, max }'
}

declare -A rate p99 live conns wake taken
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!modes[@]}"; do
        # shellcheck disable=SC2086
        start_server "$tmp/out" "$BIN/$stage" --addr 127.0.0.1:0 --workers "$WORKERS" --dispatch ${modes[$i]}
        # Persistent connections, status taken half-way.
        "$BIN/echo-load" --addr "$SERVER_ADDR" -c "$CONNS" -d "$SECONDS_PER_RUN" --format tsv >"$tmp/load" &
        load=$!
        sleep "$(awk -v s="$SECONDS_PER_RUN" 'BEGIN { print s / 2 }')"
        line=$(status "$tmp/out")
        wait "$load"
        persistent=$(tail -n1 "$tmp/load")
        rate[$i]="${rate[$i]:-} $(cut -f5 <<<"$persistent")"
        p99[$i]="${p99[$i]:-} $(cut -f7 <<<"$persistent")"
        live[$i]="$(spread 2 "$line")"
        # Churn: connections accepted and handed out, one after another.
        before=$(status "$tmp/out")
        s0=$(tree_switches "$SERVER_PID")
        row=$("$BIN/echo-load" --addr "$SERVER_ADDR" -c "$CHURNERS" --churn -d "$SECONDS_PER_RUN" --format tsv | tail -n1)
        s1=$(tree_switches "$SERVER_PID")
        after=$(status "$tmp/out")
        n=$(cut -f4 <<<"$row")
        conns[$i]="${conns[$i]:-} $(cut -f5 <<<"$row")"
        wake[$i]="${wake[$i]:-} $(awk -v d=$(( s1 - s0 )) -v n="$n" 'BEGIN { printf "%.2f", (n > 0 ? d / n : 0) }')"
        # Connections taken per worker during the churn run.
        taken[$i]=$(paste <(tr ' ' '\n' <<<"${before#workers }") <(tr ' ' '\n' <<<"${after#workers }") |
            awk -F'[:\t]' 'NR == 1 || $6 - $3 < min { min = $6 - $3 } NR == 1 || $6 - $3 > max { max = $6 - $3 } END { printf "%d–%d", min, max }')
        stop_server
        csv_row "${modes[$i]}" "messages/s" "$(cut -f5 <<<"$persistent")" "$round"
        csv_row "${modes[$i]}" "p99 µs" "$(cut -f7 <<<"$persistent")" "$round"
        csv_row "${modes[$i]}" "connections/s (churn)" "$(cut -f5 <<<"$row")" "$round"
        csv_row "${modes[$i]}" "wake-ups per connection" "$(awk -v d=$(( s1 - s0 )) -v n="$n" 'BEGIN { printf "%.2f", (n > 0 ? d / n : 0) }')" "$round"
        if [ "$round" = "$ROUNDS" ]; then
            csv_row "${modes[$i]}" "live per worker" "${live[$i]}" "$round"
            csv_row "${modes[$i]}" "taken per worker (churn)" "${taken[$i]}" "$round"
        fi
    done
done

echo "### Dispatch modes: $WORKERS workers"
echo
machine_line
echo "Persistent: \`echo-load -c $CONNS\`; churn: \`echo-load --churn -c $CHURNERS\`; ${SECONDS_PER_RUN}s runs, medians of $ROUNDS rounds (spreads from the last round)."
echo
echo "| dispatch | messages/s | p99 µs | live per worker | connections/s (churn) | wake-ups per connection | taken per worker (churn) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for i in "${!modes[@]}"; do
    # shellcheck disable=SC2086
    printf '| %s | %.0f | %.0f | %s | %.0f | %s | %s |\n' "${modes[$i]}" \
        "$(median ${rate[$i]})" "$(median ${p99[$i]})" "${live[$i]}" \
        "$(median ${conns[$i]})" "$(median ${wake[$i]})" "${taken[$i]}"
done
