#!/usr/bin/env bash
# Memory per connection: the resident memory (RSS, and PSS, which shares
# pages fairly between processes) of all of a server's processes before and
# after N connections, in two cases: `idle`, each made one request and then
# stays idle (keep-alive); `partial`, each sent one byte of a request head
# and waits (a slow client). For stage06 under each model and, when
# installed, nginx (same root, same number of workers), in the same run.
#
#   scripts/idle-memory.sh
#   N=3000 CASES=partial scripts/idle-memory.sh
#   SERVERS="stage06 stage06-per-connection" scripts/idle-memory.sh
#
# Environment: N (default 10000), WORKERS (default: the number of CPUs),
# CASES (default "idle partial"), SERVERS (default "stage06
# stage06-proactor-sim stage06-uring nginx"; stage06-MODEL runs stage06
# with --model MODEL, stage06-per-connection with --buffers
# per-connection). Needs nginx for its row: apt-get install nginx-light
#
# With CSV=FILE, the measurements also go to FILE (csv_row in lib.sh).
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
N=${N:-10000}
WORKERS=${WORKERS:-$(nproc)}
SERVERS=${SERVERS:-stage06 stage06-proactor-sim stage06-uring nginx}
CASES=${CASES:-idle partial}
build_release stage06-full http-idle
# The client and each server process hold N descriptors apiece.
hard=$(ulimit -Hn)
want=$(( N + 1024 ))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    echo "N=$N needs a descriptor limit of $want; the hard limit is $hard" >&2
    exit 1
fi
ulimit -n "$want"

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"

sum_kib() { # PID FIELD(VmRSS|Pss)
    local total=0 p v
    for p in $(tree_pids "$1"); do
        if [ "$2" = Pss ]; then
            v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup")
        else
            v=$(proc_field "$p" "$2")
        fi
        total=$(( total + ${v:-0} ))
    done
    echo "$total"
}

measure() { # CASE LABEL PID ADDR
    local case=$1 label=$2 pid=$3 addr=$4 r0 p0 r1 p1 load partial=()
    [ "$case" = partial ] && partial=(--partial)
    sleep 0.5
    r0=$(sum_kib "$pid" VmRSS); p0=$(sum_kib "$pid" Pss)
    "$BIN/http-idle" --addr "$addr" -c "$N" --path /1k.bin -d 60 "${partial[@]}" >"$tmp/idle" &
    load=$!
    for _ in $(seq 1 1200); do
        grep -q '^connected' "$tmp/idle" && break
        kill -0 "$load" 2>/dev/null || { echo "http-idle failed against $label" >&2; return 1; }
        sleep 0.05
    done
    sleep 1
    r1=$(sum_kib "$pid" VmRSS); p1=$(sum_kib "$pid" Pss)
    kill "$load" 2>/dev/null || true
    wait "$load" 2>/dev/null || true
    local rk pk
    rk=$(awk -v a="$r0" -v b="$r1" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }')
    pk=$(awk -v a="$p0" -v b="$p1" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }')
    printf '| %s | %s | %d | %d | %d | %d | %s | %s |\n' "$case" "$label" "$r0" "$r1" "$p0" "$p1" "$rk" "$pk"
    csv_row "$label" "$case: RSS KiB/conn" "$rk"
    csv_row "$label" "$case: PSS KiB/conn" "$pk"
}

rows=()
for case in $CASES; do
    for who in $SERVERS; do
        case $who in
            stage06*)
                flags=()
                case $who in
                    stage06-per-connection) flags=(--buffers per-connection) ;;
                    stage06-*) flags=(--model "${who#stage06-}") ;;
                esac
                # Timeouts past the measurement, for both cases.
                start_server "$tmp/out" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" \
                    --workers "$WORKERS" --max-conns $(( N + 100 )) --keepalive-timeout 120 \
                    --header-timeout 120 "${flags[@]}"
                rows+=("$(measure "$case" "$who" "$SERVER_PID" "$SERVER_ADDR")")
                stop_server
                ;;
            nginx)
                start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx"
                # nginx's keepalive_timeout (15 s, lib.sh) and
                # client_header_timeout (60 s) outlast the measurement.
                rows+=("$(measure "$case" nginx "$NGINX_PID" "$NGINX_ADDR")")
                stop_nginx
                ;;
            *) echo "unknown server $who" >&2; exit 1 ;;
        esac
    done
done

echo "### Memory per connection: $N connections, $WORKERS workers"
echo
machine_line
echo "Cases: idle, each made one request and stays idle (keep-alive); partial, each sent one byte of a request head."
echo
echo "| case | server | RSS KiB before | after | PSS KiB before | after | RSS KiB per connection | PSS KiB per connection |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
