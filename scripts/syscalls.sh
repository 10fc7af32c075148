#!/usr/bin/env bash
# System calls per message: runs a stage while the load generator sends a
# fixed load, counts every system call the server makes (all its threads and
# processes), and prints a markdown table per echoed message.
#
#   scripts/syscalls.sh STAGE [SERVER FLAGS…]
#   scripts/syscalls.sh 02 --trigger et --listen-trigger et
#   CONNS=1 scripts/syscalls.sh 01 --mode threads
#   scripts/syscalls.sh http            # stage06 and nginx, per request
#
# Environment: CONNS (default 10), MESSAGES per connection (default 2000),
# SIZE in bytes (default 64), TRACER (perf, strace or auto; default auto).
# CHURN=SECONDS: instead, CONNS clients connect, echo once and close for
# that many seconds (`echo-load --churn`), and the table is per connection.
#
# perf (Debian: apt-get install linux-perf) counts kernel tracepoints and
# barely slows the server. strace (apt-get install strace) stops the server
# at every call, which slows it so much that a client's next message is
# often already waiting: it changes the very batching being measured. The
# script uses perf when it works and says which one it used.
#
# `http` mode: stage06-full and nginx (same root, same number of workers,
# see lib.sh) under the same wrk load, per request. Environment: SIZE of
# the file (default 1024), CONNS (default 50), SECONDS_PER_RUN (default 3),
# CLOSE=1 for `Connection: close` (then per connection), WORKERS (default:
# the number of CPUs), STAGE06_FLAGS (added to stage06's flags),
# HTTP_SERVERS=stage06 to leave nginx out (its column then reads 0). Needs wrk
# and nginx: apt-get install wrk nginx-light
#
# With CSV=FILE the per-unit figures also go to FILE (csv_row in lib.sh),
# in a column named CSV_COLUMN (default "per message" or "per connection";
# in http mode "CSV_COLUMN, stage06" and "CSV_COLUMN, nginx", or only
# CSV_COLUMN with HTTP_SERVERS=stage06).
. "$(dirname "$0")/lib.sh"

script_start 1 "$@"

mode=$1; shift
given_size=${SIZE:-}
given_conns=${CONNS:-}
CONNS=${CONNS:-10}
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-64}
TRACER=${TRACER:-auto}
if [ "$TRACER" = auto ]; then
    if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
        TRACER=perf
    elif command -v strace >/dev/null; then
        TRACER=strace
        echo "perf cannot count syscalls here; using strace (see --help for its bias)" >&2
    else
        echo "need perf or strace: apt-get install linux-perf strace" >&2
        exit 1
    fi
fi
# The calls worth a row of their own; the rest are summed as "other".
calls=(read write recvfrom sendto readv writev recvmsg sendmsg sendfile64 epoll_wait
    epoll_pwait epoll_ctl accept accept4 close shutdown futex timerfd_settime
    rt_sigreturn rt_sigprocmask alarm setitimer mmap munmap brk clone3 wait4
    openat openat2 statx newfstatat fstat pread64 setsockopt io_uring_enter)
# tracer_args OUTFILE — the command that runs a server under the tracer.
tracer_args() {
    local events c dir
    case $TRACER in
        perf)
            events=raw_syscalls:sys_enter
            for c in "${calls[@]}"; do
                for dir in /sys/kernel/tracing /sys/kernel/debug/tracing; do
                    if [ -d "$dir/events/syscalls/sys_enter_$c" ]; then
                        events+=",syscalls:sys_enter_$c"
                        break
                    fi
                done
            done
            # perf follows every thread and child process of the server.
            echo perf stat -x, -o "$1" -e "$events" --
            ;;
        strace) echo strace -f -c -o "$1" ;;
        *) echo "TRACER is perf, strace or auto" >&2; exit 1 ;;
    esac
}

# count_rows OUTFILE — both tracers' output as "calls name" lines, "total"
# among them.
count_rows() {
    case $TRACER in
        perf)
            awk -F, '!/^#/ && NF > 2 {
                name = $3; sub(/^raw_syscalls:sys_enter$/, "total", name); sub(/^syscalls:sys_enter_/, "", name)
                if ($1 ~ /^[0-9]+$/) print $1, name }' "$1"
            ;;
        strace)
            # strace -c columns: % time, seconds, usecs/call, calls, [errors], name.
            awk '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ { print $4, $NF }' "$1"
            ;;
    esac
}

if [ "$mode" = http ]; then
    need_tool wrk "apt-get install wrk"
    need_tool nginx "apt-get install nginx-light"
    SIZE=${given_size:-1024}
    CONNS=${given_conns:-50}
    SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
    WORKERS=${WORKERS:-$(nproc)}
    build_release stage06-full
    make_tmp
    mkdir -p "$tmp/root"
    head -c "$SIZE" /dev/urandom >"$tmp/root/file.bin"
    headers=()
    unit=request
    if [ "${CLOSE:-}" = 1 ]; then
        headers=(-H "Connection: close")
        unit=connection
    fi
    declare -A per total_of requests_of
    servers=${HTTP_SERVERS:-stage06 nginx}
    for who in $servers; do
        # shellcheck disable=SC2046
        if [ "$who" = stage06 ]; then
            start_server "$tmp/out" $(tracer_args "$tmp/$who.counts") \
                "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" --workers "$WORKERS" \
                ${STAGE06_FLAGS:-}
            addr=$SERVER_ADDR
        else
            start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx" $(tracer_args "$tmp/$who.counts")
            addr=$NGINX_ADDR
        fi
        requests=$(wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" "${headers[@]}" "http://$addr/file.bin" |
            awk '/requests in/ { print $1 }')
        if [ "$who" = stage06 ]; then
            pkill -TERM -P "$SERVER_PID" 2>/dev/null || true
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=
        else
            stop_nginx
        fi
        requests_of[$who]=$requests
        while read -r n name; do
            if [ "$name" = total ]; then
                total_of[$who]=$n
            else
                per[$name.$who]=$n
            fi
        done < <(count_rows "$tmp/$who.counts")
    done
    echo "### System calls per $unit: stage06${STAGE06_FLAGS:+ $STAGE06_FLAGS} and nginx, a $SIZE-byte file"
    echo
    machine_line
    shown=""
    [ "${CLOSE:-}" = 1 ] && shown=" -H 'Connection: close'"
    echo "Load: \`wrk -t2 -c$CONNS -d${SECONDS_PER_RUN}s$shown\` against each, $WORKERS workers each" \
        "(${requests_of[stage06]} and ${requests_of[nginx]:-no} ${unit}s); counted with $TRACER"
    echo
    echo "| system call | stage06 | nginx |"
    echo "|---|---:|---:|"
    listed_a=0; listed_b=0
    for name in "${calls[@]}"; do
        listed_a=$(( listed_a + ${per[$name.stage06]:-0} )); listed_b=$(( listed_b + ${per[$name.nginx]:-0} ))
    done
    per[other.stage06]=$(( total_of[stage06] - listed_a ))
    per[other.nginx]=$(( total_of[nginx] - listed_b ))
    per[total.stage06]=${total_of[stage06]}
    per[total.nginx]=${total_of[nginx]:-0}
    # One line per call that either server makes at least once per 200
    # units: "name a b", per unit; then (other) and the total.
    for name in "${calls[@]}" other total; do
        awk -v n="$name" -v a="${per[$name.stage06]:-0}" -v b="${per[$name.nginx]:-0}" \
            -v ra="${requests_of[stage06]}" -v rb="${requests_of[nginx]:-1}" '
            BEGIN { if (n == "total" || a / ra >= 0.005 || b / rb >= 0.005) printf "%s %.2f %.2f\n", n, a / ra, b / rb }'
    done >"$tmp/table"
    while read -r name a b; do
        case $name in
            other) printf '| (other) | %s | %s |\n' "$a" "$b" ;;
            total) printf '| **total** | **%s** | **%s** |\n' "$a" "$b" ;;
            *) printf '| %s | %s | %s |\n' "$name" "$a" "$b" ;;
        esac
        label=$name
        [ "$name" = other ] && label="(other)"
        if [ "$servers" = stage06 ]; then
            csv_row "$label" "${CSV_COLUMN:-stage06}" "$a"
        else
            csv_row "$label" "${CSV_COLUMN:+$CSV_COLUMN, }stage06" "$a"
            csv_row "$label" "${CSV_COLUMN:+$CSV_COLUMN, }nginx" "$b"
        fi
    done <"$tmp/table"
    exit 0
fi

stage=$(stage_dir "$mode")
build_release "$stage" echo-load

make_tmp

# shellcheck disable=SC2046
start_server "$tmp/out" $(tracer_args "$tmp/counts") "$BIN/$stage" --addr 127.0.0.1:0 "$@"

if [ -n "${CHURN:-}" ]; then
    load=$("$BIN/echo-load" --addr "$SERVER_ADDR" -c "$CONNS" -s "$SIZE" --churn -d "$CHURN" --format tsv | tail -n1)
    unit=connection
    loadcmd="echo-load --churn -c $CONNS -s $SIZE -d $CHURN"
else
    load=$("$BIN/echo-load" --addr "$SERVER_ADDR" -c "$CONNS" -m "$MESSAGES" -s "$SIZE" -d 120 --format tsv | tail -n1)
    unit=message
    loadcmd="echo-load -c $CONNS -m $MESSAGES -s $SIZE"
fi
messages=$(cut -f4 <<<"$load")
errors=$(cut -f8 <<<"$load")
# End the server itself (the tracer's child, not the tracer: it must live to
# write its counts).
pkill -TERM -P "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=

rows=$(count_rows "$tmp/counts")
total=$(awk '$2 == "total" { print $1 }' <<<"$rows")

echo "### System calls per $unit: $stage $*"
echo
machine_line
echo "Load: \`$loadcmd\` ($messages ${unit}s, $errors errors); counted with $TRACER"
echo
echo "| system call | calls | per $unit |"
echo "|---|---:|---:|"
# "name calls per-unit" for each call made at least once per 200 units,
# sorted by count; then (other) and the total.
{
    grep -v ' total$' <<<"$rows" | sort -k1,1nr | awk -v m="$messages" -v t="$total" '
        $1 / m >= 0.005 { printf "%s %d %.3f\n", $2, $1, $1 / m; shown += $1 }
        END { if (t - shown > 0) printf "(other) %d %.3f\n", t - shown, (t - shown) / m }'
    awk -v t="$total" -v m="$messages" 'BEGIN { printf "total %d %.2f\n", t, t / m }'
} >"$tmp/table"
while read -r name n per; do
    if [ "$name" = total ]; then
        printf '| **total** | %s | **%s** |\n' "$n" "$per"
    else
        printf '| %s | %s | %s |\n' "$name" "$n" "$per"
    fi
    csv_row "$name" "${CSV_COLUMN:-per $unit}" "$per"
done <"$tmp/table"
