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
#
# Needs wrk: apt-get install wrk
. "$(dirname "$0")/lib.sh"

if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
need_tool wrk "apt-get install wrk"
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
WORKERS=${WORKERS:-$(nproc)}
build_release stage06-full

tmp=$(mktemp -d)
trap 'stop_server; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"

echo "### Buffer pools: allocations per 1,000 requests ($WORKERS workers)"
echo
machine_line
echo "Load: \`wrk -t2 -c50 -d${SECONDS_PER_RUN}s\` on a 1 KiB file; allocations counted by the workers' pools."
echo
echo "| buffers | load | requests | requests/s | buffers allocated | reused | allocated per 1,000 requests |"
echo "|---|---|---:|---:|---:|---:|---:|"
for buffers in pooled per-connection; do
    for load in keep-alive close; do
        extra=()
        [ "$load" = close ] && extra=(-H "Connection: close")
        start_server "$tmp/out" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" \
            --workers "$WORKERS" --buffers "$buffers"
        wrk -t2 -c50 -d"${SECONDS_PER_RUN}s" "${extra[@]}" "http://$SERVER_ADDR/1k.bin" >"$tmp/wrk" 2>&1
        stop_server
        requests=$(awk '/requests in/ { print $1 }' "$tmp/wrk")
        rps=$(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/wrk")
        read -r allocated reused < <(awk '/buffers allocated/ {
            gsub(",", ""); a += $5; r += $7 } END { print a + 0, r + 0 }' "$tmp/out.err")
        printf '| %s | %s | %s | %s | %s | %s | %.1f |\n' "$buffers" "$load" "$requests" "$rps" \
            "$allocated" "$reused" "$(awk -v a="$allocated" -v n="$requests" 'BEGIN { print (n > 0 ? a * 1000 / n : 0) }')"
    done
done
