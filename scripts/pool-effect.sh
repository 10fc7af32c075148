#!/usr/bin/env bash
# What stage06's buffer pools save: buffer allocations per 1,000 requests
# and requests/s, with --buffers pooled (the default) and per-connection,
# under a keep-alive load and a Connection: close load. In per-connection
# mode nothing is reused: a connection owns its read buffer for life, and
# response buffers are allocated for each response and freed after it.
# Memory per idle connection for both is measured by
# `SERVERS="stage06 stage06-per-connection" scripts/idle-memory.sh`.
#
#   scripts/pool-effect.sh
#   ROUNDS=5 SECONDS_PER_RUN=5 scripts/pool-effect.sh
#
# Needs wrk: apt-get install wrk
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool wrk "apt-get install wrk"
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-$(nproc)}
build_release stage06-full

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"

declare -A rps requests allocated reused
for round in $(seq 1 "$ROUNDS"); do
    for load in keep-alive close; do
        # Alternate the two designs within a round: the machine's noise
        # then falls on both alike.
        for buffers in pooled per-connection; do
            extra=()
            [ "$load" = close ] && extra=(-H "Connection: close")
            start_server "$tmp/out" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" \
                --workers "$WORKERS" --buffers "$buffers"
            wrk -t2 -c50 -d"${SECONDS_PER_RUN}s" "${extra[@]}" "http://$SERVER_ADDR/1k.bin" >"$tmp/wrk" 2>&1
            stop_server
            k=$buffers.$load
            requests[$k]=$(( ${requests[$k]:-0} + $(awk '/requests in/ { print $1 }' "$tmp/wrk") ))
            rps[$k]="${rps[$k]:-} $(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/wrk")"
            read -r a r < <(awk '/buffers allocated/ {
                gsub(",", ""); a += $5; r += $7 } END { print a + 0, r + 0 }' "$tmp/out.err")
            allocated[$k]=$(( ${allocated[$k]:-0} + a ))
            reused[$k]=$(( ${reused[$k]:-0} + r ))
            n=$(awk '/requests in/ { print $1 }' "$tmp/wrk")
            csv_row "$buffers, $load" "requests/s" "$(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/wrk")" "$round"
            csv_row "$buffers, $load" "allocated per 1,000 requests" \
                "$(awk -v a="$a" -v n="$n" 'BEGIN { printf "%.1f", (n > 0 ? a * 1000 / n : 0) }')" "$round"
            csv_row "$buffers, $load" "reused per 1,000 requests" \
                "$(awk -v a="$r" -v n="$n" 'BEGIN { printf "%.0f", (n > 0 ? a * 1000 / n : 0) }')" "$round"
        done
    done
done

echo "### Buffer pools: allocations per 1,000 requests ($WORKERS workers)"
echo
machine_line
echo "Load: \`wrk -t2 -c50 -d${SECONDS_PER_RUN}s\` on a 1 KiB file, $ROUNDS rounds in alternation (requests/s: median; counts: summed); allocations counted by the workers' pools."
echo
echo "| buffers | load | requests | requests/s | buffers allocated | reused | allocated per 1,000 requests |"
echo "|---|---|---:|---:|---:|---:|---:|"
for buffers in pooled per-connection; do
    for load in keep-alive close; do
        k=$buffers.$load
        # shellcheck disable=SC2086
        printf '| %s | %s | %s | %s | %s | %s | %.1f |\n' "$buffers" "$load" "${requests[$k]}" \
            "$(median ${rps[$k]})" "${allocated[$k]}" "${reused[$k]}" \
            "$(awk -v a="${allocated[$k]}" -v n="${requests[$k]}" 'BEGIN { print (n > 0 ? a * 1000 / n : 0) }')"
    done
done
