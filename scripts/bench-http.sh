#!/usr/bin/env bash
# stage06 against nginx, measured in the same run on the same machine: wrk
# against each in alternation (A B A B…), medians of ROUNDS rounds, for the
# rows below. Prints requests/s, p50 and p99 latency, and stage06/nginx.
#
#   scripts/bench-http.sh                   # split placement, the headline
#   PLACEMENT=shared scripts/bench-http.sh  # servers and wrk on every CPU
#   ROUNDS=5 SECONDS_PER_RUN=10 scripts/bench-http.sh
#   ROWS="2 3" STAGE06_FLAGS="--dispatch reuseport" scripts/bench-http.sh
#   BASELINE=../old/target/release/stage06-full scripts/bench-http.sh
#
# PLACEMENT says which CPUs each side gets (placement_setup in lib.sh):
#   split (the default): stage06 and nginx each on CPU 0 (taskset -c 0)
#     with one worker (nginx: worker_processes 1, worker_cpu_affinity 1),
#     wrk -t1 on CPU 1. Each server has one CPU of its own and the load
#     generator the other, so what is measured is the server, not how the
#     scheduler shares two CPUs between it and wrk. The script checks
#     after start that no process or thread of either server may run
#     anywhere but CPU 0, and stops if one can. Needs 2 CPUs (on one it
#     says `skipped: split placement needs 2 CPUs`); on more, still 0 and 1.
#       PLACEMENT=split ROWS=1 scripts/bench-http.sh
#   shared: both servers with WORKERS workers (default: the number of CPUs)
#     on every CPU, wrk too; each row is measured twice, with wrk -t1 and
#     with wrk -t2, and printed as two rows, since on shared CPUs wrk's
#     thread count moves the result more than the servers do.
#       PLACEMENT=shared WORKERS=2 ROWS="1 5" scripts/bench-http.sh
# Every table printed names its placement in its heading.
#
# Rows: 1 KiB keep-alive at 50 connections; the same with
# `Connection: close`; 64 KiB and 1 MiB keep-alive; 1 KiB at 1,000
# connections. Both servers get the same document root (files made in a
# temporary folder), the same number of workers, no access log, sendfile,
# and an open-file cache; nginx has Debian's packaged settings (sendfile,
# tcp_nopush: start_nginx in lib.sh lists every line and why).
# ROWS picks rows by number; STAGE06_FLAGS are added to stage06's flags;
# NGINX_EXTRA, directives such as "gzip on;", to nginx's http block.
# BASELINE, a stage06-full binary built from another commit, joins the
# alternation with the same flags (or BASELINE_FLAGS, when set) and the
# same placement: a change is measured against what it changed, in the
# same run (a second table gives this build / baseline). A flag is
# measured against its absence with this build as its own baseline:
#   BASELINE=target/release/stage06-full BASELINE_FLAGS= \
#       STAGE06_FLAGS="--pin on" scripts/bench-http.sh
# Ratios are per round (same round, same machine state), as min / median /
# max.
#
# With CSV=FILE, the measurements of every round also go to FILE (see
# csv_row in lib.sh), each row with its placement.
#
# Needs wrk and nginx: apt-get install wrk nginx-light
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool wrk "apt-get install wrk"
need_tool nginx "apt-get install nginx-light"
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
placement_setup
build_release stage06-full
ulimit -n 65536 2>/dev/null || true

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"
head -c 65536 /dev/urandom >"$tmp/root/64k.bin"
head -c 1048576 /dev/urandom >"$tmp/root/1m.bin"

# shellcheck disable=SC2086
start_server "$tmp/out" "${SERVER_WRAP[@]}" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" \
    --workers "$WORKERS" ${STAGE06_FLAGS:-}
check_placement "$SERVER_PID" stage06 "$WORKERS"
servers=(stage06 nginx)
if [ -n "${BASELINE:-}" ]; then
    # shellcheck disable=SC2086
    start_baseline "$tmp/baseline" --addr 127.0.0.1:0 --root "$tmp/root" \
        --workers "$WORKERS" ${BASELINE_FLAGS-${STAGE06_FLAGS:-}}
    check_placement "$BASELINE_PID" baseline "$WORKERS"
    servers=(stage06 baseline nginx)
fi
start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx" "${SERVER_WRAP[@]}"
check_placement "$NGINX_PID" nginx "$WORKERS"

rows=(
    "1 KiB, keep-alive, 50 conns|/1k.bin|50|"
    "1 KiB, Connection: close, 50 conns|/1k.bin|50|close"
    "64 KiB, keep-alive, 50 conns|/64k.bin|50|"
    "1 MiB, keep-alive, 50 conns|/1m.bin|50|"
    "1 KiB, keep-alive, 1000 conns|/1k.bin|1000|"
)
# The rows measured, as "ROW-INDEX.WRK-THREADS": ROWS picks the rows, and
# shared placement measures each with every thread count in WRK_THREADS.
cases=()
for i in "${!rows[@]}"; do
    [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $((i + 1)) "* ]] && continue
    for t in $WRK_THREADS; do cases+=("$i.$t"); done
done
# label CASE — the row's label; under shared placement with wrk's threads
# (split has only -t1, which the heading says).
label() {
    local l
    IFS='|' read -r l _ <<<"${rows[${1%.*}]}"
    if [ "$PLACEMENT" = shared ]; then l="$l, wrk -t${1#*.}"; fi
    echo "$l"
}

# CSV_ROW (csv_row in lib.sh) names the one row a run measures for its
# CSV; under shared placement that row is measured with each wrk thread
# count, so each gets the count added, as the label does.
# CSV_ROW_PREFIX goes before every row's name, so that runs of several
# configurations can share one CSV (measure-all.sh's dispatch-placement).
csv_name=${CSV_ROW:-}
unset CSV_ROW
csv_label() { # CASE
    printf '%s' "${CSV_ROW_PREFIX:-}"
    if [ -z "$csv_name" ]; then
        label "$1"
    elif [ "$PLACEMENT" = shared ]; then
        echo "$csv_name, wrk -t${1#*.}"
    else
        echo "$csv_name"
    fi
}

# busy_jiffies CPU: the CPU's busy and total time so far, in USER_HZ ticks
# (/proc/stat: user nice system idle iowait irq softirq steal). Idle and
# iowait are not busy, and neither is steal: on a virtual machine it is
# time the host gave another guest, which this server did not spend.
busy_jiffies() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat
}

declare -A rps p50 p99 this_r this_p99 this_cpu this_load
for round in $(seq 1 "$ROUNDS"); do
    for k in "${cases[@]}"; do
        IFS='|' read -r _ path conns extra <<<"${rows[${k%.*}]}"
        lab=$(csv_label "$k")
        for who in "${servers[@]}"; do
            case $who in
                stage06) addr=$SERVER_ADDR ;;
                baseline) addr=$BASELINE_ADDR ;;
                nginx) addr=$NGINX_ADDR ;;
            esac
            # wrk wants a space after the colon, or it sends no such header.
            headers=()
            [ "$extra" = close ] && headers=(-H "Connection: close")
            [ "$PLACEMENT" = split ] && read -r sb st < <(busy_jiffies "$SERVER_CPUS") &&
                read -r lb lt < <(busy_jiffies "$LOAD_CPUS")
            read -r r a b n < <(wrk_run "${k#*.}" "$LOAD_CPUS" "http://$addr$path" "$conns" \
                "$SECONDS_PER_RUN" "${headers[@]}")
            if [ "$PLACEMENT" = split ]; then
                # One CPU each, everything the server's CPU did was for this
                # server: its own work and the kernel's for its traffic. Per
                # request, that does not depend on how fast wrk asks, where
                # requests/s stops at what wrk's one CPU can send.
                read -r sb2 st2 < <(busy_jiffies "$SERVER_CPUS")
                read -r lb2 lt2 < <(busy_jiffies "$LOAD_CPUS")
                this_cpu[$who]=$(awk -v b=$((sb2 - sb)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
                    'BEGIN { printf "%.2f", (n > 0 ? b * 1e6 / hz / n : 0) }')
                this_load[$who]=$(awk -v b=$((lb2 - lb)) -v t=$((lt2 - lt)) \
                    'BEGIN { printf "%.0f%%", (t > 0 ? 100 * b / t : 0) }')
            fi
            rps[$who.$k]="${rps[$who.$k]:-} $r"
            p50[$who.$k]="${p50[$who.$k]:-} $a"
            p99[$who.$k]="${p99[$who.$k]:-} $b"
            this_r[$who]=$r
            this_p99[$who]=$b
        done
        for who in "${servers[@]}"; do
            csv_row "$lab" "$who req/s" "${this_r[$who]}" "$round"
        done
        csv_row "$lab" "stage06 / nginx" "$(ratio "${this_r[stage06]}" "${this_r[nginx]}")" "$round"
        if [ -n "${BASELINE:-}" ]; then
            csv_row "$lab" "stage06 / baseline" "$(ratio "${this_r[stage06]}" "${this_r[baseline]}")" "$round"
        fi
        for who in "${servers[@]}"; do
            csv_row "$lab" "$who p99 µs" "${this_p99[$who]}" "$round"
        done
        if [ "$PLACEMENT" = split ]; then
            for who in "${servers[@]}"; do
                csv_row "$lab" "$who CPU µs / request" "${this_cpu[$who]}" "$round"
            done
            csv_row "$lab" "CPU / request, nginx / stage06" \
                "$(ratio "${this_cpu[nginx]}" "${this_cpu[stage06]}")" "$round"
            if [ -n "${BASELINE:-}" ]; then
                csv_row "$lab" "CPU / request, stage06 / baseline" \
                    "$(ratio "${this_cpu[stage06]}" "${this_cpu[baseline]}")" "$round"
            fi
            csv_row "$lab" "wrk's CPU busy, beside stage06" "${this_load[stage06]}" "$round"
        fi
    done
done

if [ "$PLACEMENT" = split ]; then
    where=$(placement_text "wrk -t1")
    checked="; every process and thread of each server checked allowed on CPU $SERVER_CPUS alone"
else
    where=$(placement_text "wrk -t1 and -t2 (a row each)")
    checked=
fi
echo "### stage06 against nginx, $where"
echo
machine_line
echo "stage06 flags: \`--workers $WORKERS${STAGE06_FLAGS:+ $STAGE06_FLAGS}\`; nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (Debian's packaged settings, worker_processes $WORKERS)$checked; ${SECONDS_PER_RUN}s runs, medians of $ROUNDS rounds in alternation."
echo
echo "| load | stage06 req/s | nginx req/s | stage06 / nginx (min / median / max) | stage06 p50 / p99 µs | nginx p50 / p99 µs |"
echo "|---|---:|---:|---:|---:|---:|"
for k in "${cases[@]}"; do
    # shellcheck disable=SC2086
    s=$(median ${rps[stage06.$k]}); n=$(median ${rps[nginx.$k]})
    # shellcheck disable=SC2086
    printf '| %s | %.0f | %.0f | %s | %.0f / %.0f | %.0f / %.0f |\n' "$(label "$k")" "$s" "$n" \
        "$(ratios "${rps[stage06.$k]}" "${rps[nginx.$k]}")" \
        "$(median ${p50[stage06.$k]})" "$(median ${p99[stage06.$k]})" \
        "$(median ${p50[nginx.$k]})" "$(median ${p99[nginx.$k]})"
done
[ -n "${BASELINE:-}" ] || exit 0
echo
echo "### this build against the baseline ($BASELINE${BASELINE_FLAGS+, flags \`$BASELINE_FLAGS\`}), $where"
echo
echo "| load | this build req/s | baseline req/s | this build / baseline (min / median / max) |"
echo "|---|---:|---:|---:|"
for k in "${cases[@]}"; do
    # shellcheck disable=SC2086
    printf '| %s | %.0f | %.0f | %s |\n' "$(label "$k")" "$(median ${rps[stage06.$k]})" \
        "$(median ${rps[baseline.$k]})" "$(ratios "${rps[stage06.$k]}" "${rps[baseline.$k]}")"
done
