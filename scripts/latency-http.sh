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
#   PLACEMENT=shared STAGE06_FLAGS="--dispatch reuseport --steer cpu" RATES=30000 scripts/latency-http.sh
#
# PLACEMENT says which CPUs each side gets (placement_setup in lib.sh):
#   split (the default): stage06 and nginx each on CPU 0 (taskset -c 0)
#     with one worker (nginx: worker_cpu_affinity 1 too), http-rate on
#     CPU 1, so a request never waits for the generator to get off the
#     server's CPU; every process and thread of both servers is checked
#     after start to be allowed on CPU 0 alone. Needs 2 CPUs (on one it
#     says `skipped: split placement needs 2 CPUs`); on more, still 0
#     and 1.
#       PLACEMENT=split RATES=10000 scripts/latency-http.sh
#   shared: both servers with WORKERS workers (default: the number of
#     CPUs) and http-rate, all on every CPU.
#       PLACEMENT=shared WORKERS=2 RATES=10000 scripts/latency-http.sh
# The table printed names its placement in its heading.
#
# Environment: RATES (default "10000 30000 50000"), CONNS (default 50),
# SECONDS_PER_RUN (default 4), ROUNDS (default 3), PLACEMENT (default
# split), WORKERS (shared placement only; default: the number of CPUs),
# STAGE06_FLAGS (added to stage06's flags). Needs nginx:
# apt-get install nginx-light
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh),
# each row with its placement.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool nginx "apt-get install nginx-light"
RATES=${RATES:-10000 30000 50000}
CONNS=${CONNS:-50}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
ROUNDS=${ROUNDS:-3}
placement_setup
build_release stage06-full http-rate

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"
# shellcheck disable=SC2086
start_server "$tmp/out" "${SERVER_WRAP[@]}" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" \
    --workers "$WORKERS" ${STAGE06_FLAGS:-}
check_placement "$SERVER_PID" stage06 "$WORKERS"
start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx" "${SERVER_WRAP[@]}"
check_placement "$NGINX_PID" nginx "$WORKERS"

declare -A p50 p99 p999 lost
for round in $(seq 1 "$ROUNDS"); do
    for rate in $RATES; do
        for who in stage06 nginx; do
            addr=$SERVER_ADDR
            [ "$who" = nginx ] && addr=$NGINX_ADDR
            # rate connections sent answered p50 p90 p99 p999 max
            read -r _ _ sent answered a _ b c _ < <("${LOAD_WRAP[@]}" "$BIN/http-rate" --addr "$addr" --path /1k.bin \
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

checked=
if [ "$PLACEMENT" = split ]; then
    checked="; every process and thread of each server checked allowed on CPU $SERVER_CPUS alone"
fi
echo "### Latency at a fixed rate: stage06 and nginx (1 KiB file), $(placement_text http-rate)"
echo
machine_line
echo "Load: \`http-rate -c $CONNS --rate RATE -d $SECONDS_PER_RUN\` (open loop, latency from each request's due time); stage06 flags: \`--workers $WORKERS${STAGE06_FLAGS:+ $STAGE06_FLAGS}\`; nginx with Debian's packaged settings$checked; servers in alternation, medians of $ROUNDS rounds."
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
