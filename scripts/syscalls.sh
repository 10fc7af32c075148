#!/usr/bin/env bash
# System calls per message: runs a stage while the load generator sends a
# fixed load, counts every system call the server makes (all its threads and
# processes), and prints a markdown table per echoed message.
#
#   scripts/syscalls.sh STAGE [SERVER FLAGS…]
#   scripts/syscalls.sh 02 --trigger et --listen-trigger et
#   CONNS=1 scripts/syscalls.sh 01 --mode threads
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
. "$(dirname "$0")/lib.sh"

if [ $# -lt 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit $(( $# < 1 ))
fi

stage=$(stage_dir "$1"); shift
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
build_release "$stage" echo-load

tmp=$(mktemp -d)
trap 'stop_server; rm -rf "$tmp"' EXIT

# The calls worth a row of their own; the rest are summed as "other".
calls=(read write recvfrom sendto readv writev recvmsg sendmsg sendfile64 epoll_wait
    epoll_pwait epoll_ctl accept accept4 close shutdown futex timerfd_settime
    rt_sigreturn rt_sigprocmask alarm setitimer mmap munmap brk clone3 wait4)
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
        start_server "$tmp/out" perf stat -x, -o "$tmp/counts" -e "$events" -- \
            "$BIN/$stage" --addr 127.0.0.1:0 "$@"
        ;;
    strace)
        start_server "$tmp/out" strace -f -c -o "$tmp/counts" "$BIN/$stage" --addr 127.0.0.1:0 "$@"
        ;;
    *) echo "TRACER is perf, strace or auto" >&2; exit 1 ;;
esac

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

# Normalise both tracers' output to "calls name" lines, "total" among them.
case $TRACER in
    perf)
        rows=$(awk -F, '!/^#/ && NF > 2 {
            name = $3; sub(/^raw_syscalls:sys_enter$/, "total", name); sub(/^syscalls:sys_enter_/, "", name)
            if ($1 ~ /^[0-9]+$/) print $1, name }' "$tmp/counts")
        ;;
    strace)
        # strace -c columns: % time, seconds, usecs/call, calls, [errors], name.
        rows=$(awk '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ { print $4, $NF }' "$tmp/counts")
        ;;
esac
total=$(awk '$2 == "total" { print $1 }' <<<"$rows")

echo "### System calls per $unit: $stage $*"
echo
machine_line
echo "Load: \`$loadcmd\` ($messages ${unit}s, $errors errors); counted with $TRACER"
echo
echo "| system call | calls | per $unit |"
echo "|---|---:|---:|"
grep -v ' total$' <<<"$rows" | sort -k1,1nr | awk -v m="$messages" -v t="$total" '
    { listed += $1 }
    $1 / m >= 0.005 { printf "| %s | %d | %.3f |\n", $2, $1, $1 / m; shown += $1 }
    END { if (t - shown > 0) printf "| (other) | %d | %.3f |\n", t - shown, (t - shown) / m }'
awk -v t="$total" -v m="$messages" 'BEGIN { printf "| **total** | %d | **%.2f** |\n", t, t / m }'
