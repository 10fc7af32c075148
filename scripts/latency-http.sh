#!/usr/bin/env bash
# Latency at a fixed request rate: stage06 and nginx (same root, same
# number of workers) under the same open-loop load from http-rate: RATE
# requests per second on 50 keep-alive connections, each request due at a
# time fixed in advance and its latency measured from then. Unlike wrk's
# closed loop, both servers get exactly the same load, so their
# percentiles can be compared. Servers in alternation, medians of ROUNDS.
#
#   scripts/latency-http.sh
#   RATES="20000 40000" ROUNDS=5 scripts/latency-http.sh
#   STAGE06_FLAGS="--steer hash" RATES=30000 scripts/latency-http.sh
#
# Environment: RATES (default "10000 30000 50000"), CONNS (default 50),
# SECONDS_PER_RUN (default 4), ROUNDS (default 3), WORKERS (default: the
# number of CPUs), STAGE06_FLAGS (added to stage06's flags). Needs nginx:
# apt-get install nginx-light
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool nginx "apt-get install nginx-light"
RATES=${RATES:-10000 30000 50000}
CONNS=${CONNS:-50}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-$(nproc)}
build_release stage06-full http-rate

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"
# shellcheck disable=SC2086
start_server "$tmp/out" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" --workers "$WORKERS" ${STAGE06_FLAGS:-}
start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx"

declare -A p50 p99 p999 lost
for round in $(seq 1 "$ROUNDS"); do
    for rate in $RATES; do
        for who in stage06 nginx; do
            addr=$SERVER_ADDR
            [ "$who" = nginx ] && addr=$NGINX_ADDR
            # rate connections sent answered p50 p90 p99 p999 max
            read -r _ _ sent answered a _ b c _ < <("$BIN/http-rate" --addr "$addr" --path /1k.bin \
                -c "$CONNS" --rate "$rate" -d "$SECONDS_PER_RUN" --format tsv)
            k=$who.$rate
            p50[$k]="${p50[$k]:-} $a"
            p99[$k]="${p99[$k]:-} $b"
            p999[$k]="${p999[$k]:-} $c"
            lost[$k]=$(( ${lost[$k]:-0} + sent - answered ))
            csv_row "$rate" "$who p50 µs" "$a" "$round"
            csv_row "$rate" "$who p99 µs" "$b" "$round"
            csv_row "$rate" "$who p99.9 µs" "$c" "$round"
            csv_row "$rate" "$who unanswered" "$(( sent - answered ))" "$round"
        done
    done
done

echo "### Latency at a fixed rate: stage06 and nginx (1 KiB file, $WORKERS workers each)"
echo
machine_line
echo "Load: \`http-rate -c $CONNS --rate RATE -d $SECONDS_PER_RUN\` (open loop, latency from each request's due time); servers in alternation, medians of $ROUNDS rounds."
echo
echo "| requests/s | stage06 p50 / p99 / p99.9 µs | nginx p50 / p99 / p99.9 µs | unanswered (stage06, nginx) |"
echo "|---:|---:|---:|---:|"
for rate in $RATES; do
    # shellcheck disable=SC2086
    printf '| %s | %s / %s / %s | %s / %s / %s | %s, %s |\n' "$rate" \
        "$(median ${p50[stage06.$rate]})" "$(median ${p99[stage06.$rate]})" "$(median ${p999[stage06.$rate]})" \
        "$(median ${p50[nginx.$rate]})" "$(median ${p99[nginx.$rate]})" "$(median ${p999[nginx.$rate]})" \
        "${lost[stage06.$rate]}" "${lost[nginx.$rate]}"
done
