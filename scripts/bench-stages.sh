#!/usr/bin/env bash
# The ladder: the same echo load on every echo stage that exists, so the
# notes can show what each step bought. Prints a markdown table: messages/s,
# p50 and p99 round-trip latency (medians over rounds), and messages/s as a
# ratio to the first row.
#
#   scripts/bench-stages.sh                  # 10 and 1000 connections
#   CONNS="10" ROUNDS=5 SECONDS_PER_RUN=5 scripts/bench-stages.sh
#   scripts/bench-stages.sh 02 03 04         # only the rows of these stages
#
# Environment: CONNS (list, default "10 1000"), SIZE (default 64),
# ROUNDS (default 3), SECONDS_PER_RUN (default 3).
# Rounds alternate between servers (A B C A B C…), so a noisy moment on a
# shared machine hurts every row alike; the median drops the outliers.
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
only=" $* "
CONNS=${CONNS:-10 1000}
SIZE=${SIZE:-64}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}

# label | stage | flags. Later stages add their rows here.
configs=(
    "stage01 threads|01|--mode threads"
    "stage01 pool (4)|01|--mode pool --threads 4"
    "stage02 LT|02|--trigger lt --listen-trigger lt"
    "stage02 ET|02|--trigger et --listen-trigger et"
    "stage03 (list, tick)|03|"
    "stage04 (heap, timerfd)|04|"
    "stage05 pass (2 workers)|05|--workers 2 --dispatch pass"
    "stage05 shared (2 workers)|05|--workers 2 --dispatch shared"
    "stage05 reuseport (2 workers)|05|--workers 2 --dispatch reuseport"
)

selected=()
packages=(echo-load)
for c in "${configs[@]}"; do
    IFS='|' read -r label stage flags <<<"$c"
    [ "$only" = "  " ] || [[ $only == *" $stage "* ]] || continue
    dir=$(stage_dir "$stage" 2>/dev/null) || continue
    selected+=("$label|$dir|$flags")
    packages+=("$dir")
done
build_release "${packages[@]}"
ulimit -n 65536 2>/dev/null || true

make_tmp

declare -A rate p50 p99 served
for conns in $CONNS; do
    for round in $(seq 1 "$ROUNDS"); do
        for i in "${!selected[@]}"; do
            IFS='|' read -r label dir flags <<<"${selected[$i]}"
            # shellcheck disable=SC2086
            start_server "$tmp/out" "$BIN/$dir" --addr 127.0.0.1:0 $flags
            line=$("$BIN/echo-load" --addr "$SERVER_ADDR" -c "$conns" -s "$SIZE" \
                -d "$SECONDS_PER_RUN" --format tsv | tail -n1)
            stop_server
            key="$conns.$i"
            rate[$key]="${rate[$key]:-} $(cut -f5 <<<"$line")"
            p50[$key]="${p50[$key]:-} $(cut -f6 <<<"$line")"
            p99[$key]="${p99[$key]:-} $(cut -f7 <<<"$line")"
            served[$key]="${served[$key]:-} $(cut -f9 <<<"$line")"
            csv_row "$label" "messages/s, $conns conns" "$(cut -f5 <<<"$line")" "$round"
            csv_row "$label" "p50 µs, $conns conns" "$(cut -f6 <<<"$line")" "$round"
            csv_row "$label" "p99 µs, $conns conns" "$(cut -f7 <<<"$line")" "$round"
            csv_row "$label" "served, $conns conns" "$(cut -f9 <<<"$line")" "$round"
        done
    done
done

echo "### Echo ladder: $SIZE-byte messages, ping-pong"
echo
machine_line
echo "Each cell: median of $ROUNDS runs of ${SECONDS_PER_RUN}s, servers in alternation."
echo
echo "| server | connections | served | messages/s | p50 µs | p99 µs | vs first row |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for conns in $CONNS; do
    base=
    for i in "${!selected[@]}"; do
        IFS='|' read -r label dir flags <<<"${selected[$i]}"
        key="$conns.$i"
        # shellcheck disable=SC2086
        r=$(median ${rate[$key]})
        # shellcheck disable=SC2086
        a=$(median ${p50[$key]})
        # shellcheck disable=SC2086
        b=$(median ${p99[$key]})
        # shellcheck disable=SC2086
        s=$(median ${served[$key]})
        base=${base:-$r}
        printf '| %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f× |\n' "$label" "$conns" "$s" "$r" "$a" "$b" \
            "$(awk -v r="$r" -v b="$base" 'BEGIN { print (b > 0 ? r / b : 0) }')"
    done
done
