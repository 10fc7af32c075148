#!/usr/bin/env bash
# stage06 against nginx, measured in the same run on the same machine: wrk
# against each in alternation (A B A B…), medians of ROUNDS rounds, for the
# rows below. Prints requests/s, p50 and p99 latency, and stage06/nginx.
#
#   scripts/bench-http.sh
#   ROUNDS=5 SECONDS_PER_RUN=10 scripts/bench-http.sh
#   ROWS="2 3" STAGE06_FLAGS="--dispatch reuseport" scripts/bench-http.sh
#   BASELINE=../old/target/release/stage06-full scripts/bench-http.sh
#
# Rows: 1 KiB keep-alive at 50 connections; the same with
# `Connection: close`; 64 KiB and 1 MiB keep-alive; 1 KiB at 1,000
# connections. Both servers get the same document root (files made in a
# temporary folder), the same number of workers (WORKERS, default: the
# number of CPUs), no access log, sendfile, and an open-file cache; nginx
# has Debian's packaged settings (sendfile, tcp_nopush: start_nginx in
# lib.sh lists every line and why).
# ROWS picks rows by number; STAGE06_FLAGS are added to stage06's flags;
# NGINX_EXTRA, directives such as "gzip on;", to nginx's http block.
# BASELINE, a stage06-full binary built from another commit, joins the
# alternation with the same flags (or BASELINE_FLAGS, when set): a change
# is measured against what it changed, in the same run (a second table
# gives this build / baseline). A flag is measured against its absence with
# this build as its own baseline:
#   BASELINE=target/release/stage06-full BASELINE_FLAGS= \
#       STAGE06_FLAGS="--pin off" scripts/bench-http.sh
# Ratios are per round (same round, same machine state), as min / median /
# max.
#
# With CSV=FILE, the measurements of every round also go to FILE (see
# csv_row in lib.sh).
#
# Needs wrk and nginx: apt-get install wrk nginx-light
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
need_tool wrk "apt-get install wrk"
need_tool nginx "apt-get install nginx-light"
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
WORKERS=${WORKERS:-$(nproc)}
build_release stage06-full
ulimit -n 65536 2>/dev/null || true

make_tmp
mkdir -p "$tmp/root"
head -c 1024 /dev/urandom >"$tmp/root/1k.bin"
head -c 65536 /dev/urandom >"$tmp/root/64k.bin"
head -c 1048576 /dev/urandom >"$tmp/root/1m.bin"

# shellcheck disable=SC2086
start_server "$tmp/out" "$BIN/stage06-full" --addr 127.0.0.1:0 --root "$tmp/root" --workers "$WORKERS" \
    ${STAGE06_FLAGS:-}
servers=(stage06 nginx)
if [ -n "${BASELINE:-}" ]; then
    # shellcheck disable=SC2086
    start_baseline "$tmp/baseline" --addr 127.0.0.1:0 --root "$tmp/root" \
        --workers "$WORKERS" ${BASELINE_FLAGS-${STAGE06_FLAGS:-}}
    servers=(stage06 baseline nginx)
fi
start_nginx "$tmp/root" "$WORKERS" "$tmp/nginx"

rows=(
    "1 KiB, keep-alive, 50 conns|/1k.bin|50|"
    "1 KiB, Connection: close, 50 conns|/1k.bin|50|close"
    "64 KiB, keep-alive, 50 conns|/64k.bin|50|"
    "1 MiB, keep-alive, 50 conns|/1m.bin|50|"
    "1 KiB, keep-alive, 1000 conns|/1k.bin|1000|"
)
declare -A rps p50 p99 this_r this_p99
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!rows[@]}"; do
        [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $((i + 1)) "* ]] && continue
        IFS='|' read -r label path conns extra <<<"${rows[$i]}"
        for who in "${servers[@]}"; do
            case $who in
                stage06) addr=$SERVER_ADDR ;;
                baseline) addr=$BASELINE_ADDR ;;
                nginx) addr=$NGINX_ADDR ;;
            esac
            # wrk wants a space after the colon, or it sends no such header.
            headers=()
            [ "$extra" = close ] && headers=(-H "Connection: close")
            read -r r a b _ < <(wrk_run 2 all "http://$addr$path" "$conns" "$SECONDS_PER_RUN" "${headers[@]}")
            rps[$who.$i]="${rps[$who.$i]:-} $r"
            p50[$who.$i]="${p50[$who.$i]:-} $a"
            p99[$who.$i]="${p99[$who.$i]:-} $b"
            this_r[$who]=$r
            this_p99[$who]=$b
        done
        for who in "${servers[@]}"; do
            csv_row "$label" "$who req/s" "${this_r[$who]}" "$round"
        done
        csv_row "$label" "stage06 / nginx" "$(ratio "${this_r[stage06]}" "${this_r[nginx]}")" "$round"
        if [ -n "${BASELINE:-}" ]; then
            csv_row "$label" "stage06 / baseline" "$(ratio "${this_r[stage06]}" "${this_r[baseline]}")" "$round"
        fi
        for who in "${servers[@]}"; do
            csv_row "$label" "$who p99 µs" "${this_p99[$who]}" "$round"
        done
    done
done

echo "### stage06 against nginx ($WORKERS workers each)"
echo
machine_line
echo "stage06 flags: \`--workers $WORKERS${STAGE06_FLAGS:+ $STAGE06_FLAGS}\`; nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); wrk -t2, ${SECONDS_PER_RUN}s runs, medians of $ROUNDS rounds in alternation."
echo
echo "| load | stage06 req/s | nginx req/s | stage06 / nginx (min / median / max) | stage06 p50 / p99 µs | nginx p50 / p99 µs |"
echo "|---|---:|---:|---:|---:|---:|"
for i in "${!rows[@]}"; do
    [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $((i + 1)) "* ]] && continue
    IFS='|' read -r label _ <<<"${rows[$i]}"
    # shellcheck disable=SC2086
    s=$(median ${rps[stage06.$i]}); n=$(median ${rps[nginx.$i]})
    # shellcheck disable=SC2086
    printf '| %s | %.0f | %.0f | %s | %.0f / %.0f | %.0f / %.0f |\n' "$label" "$s" "$n" \
        "$(ratios "${rps[stage06.$i]}" "${rps[nginx.$i]}")" \
        "$(median ${p50[stage06.$i]})" "$(median ${p99[stage06.$i]})" \
        "$(median ${p50[nginx.$i]})" "$(median ${p99[nginx.$i]})"
done
[ -n "${BASELINE:-}" ] || exit 0
echo
echo "### this build against the baseline ($BASELINE${BASELINE_FLAGS+, flags \`$BASELINE_FLAGS\`})"
echo
echo "| load | this build req/s | baseline req/s | this build / baseline (min / median / max) |"
echo "|---|---:|---:|---:|"
for i in "${!rows[@]}"; do
    [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $((i + 1)) "* ]] && continue
    IFS='|' read -r label _ <<<"${rows[$i]}"
    # shellcheck disable=SC2086
    printf '| %s | %.0f | %.0f | %s |\n' "$label" "$(median ${rps[stage06.$i]})" \
        "$(median ${rps[baseline.$i]})" "$(ratios "${rps[stage06.$i]}" "${rps[baseline.$i]}")"
done
