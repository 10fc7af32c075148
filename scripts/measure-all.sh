#!/usr/bin/env bash
# Every measured table in the book, from one commit: runs the measuring
# scripts with CSV=FILE (csv_row in lib.sh) into notes/data/NAME.csv, then
# renders the tables (notes/src/measured/NAME.md, which the chapters
# include) and the Benchmarks chapter's charts (notes/src/img/charts/)
# with `cargo run -p charts`. CI checks that the committed tables and
# charts are what the committed CSV files give (`charts --check`).
#
#   scripts/measure-all.sh                  # every table, about 30 minutes
#   scripts/measure-all.sh --list           # the tables, one per line
#   scripts/measure-all.sh latency-http wakeups    # only these
#   PLACEMENT=shared scripts/measure-all.sh bench-http-pass latency-http
#
# PLACEMENT (split or shared, default split; placement_setup in lib.sh)
# is passed to the scripts that take one, bench-http.sh and
# latency-http.sh, for the tables bench-http-pass, -reuseport, -shared,
# -level, -levers and latency-http:
#   split: each server on CPU 0 with one worker, the load generator on
#     CPU 1; the book's tables are these (notes/data/NAME.csv). On a
#     machine with one CPU those tables say `skipped: split placement
#     needs 2 CPUs` and the others are measured.
#       PLACEMENT=split scripts/measure-all.sh bench-http-pass
#   shared: servers and generator on every CPU, bench-http's rows under
#     wrk -t1 and -t2; written beside the split tables, as
#     NAME-placement-shared (notes/data/NAME-placement-shared.csv, then
#     notes/src/measured/NAME-placement-shared.md), so that a shared run
#     never replaces a table the book shows.
#       PLACEMENT=shared scripts/measure-all.sh latency-http
# bench-http-steer is always shared: --steer chooses among workers, and
# split has one. The rows of every table bench-http.sh or latency-http.sh
# measures carry their placement (a `placement` column), and the table's
# notes say what it was. The other scripts take no placement: their
# servers and load generators share every CPU.
#
# Each table's cells are medians with their min–max over ROUNDS rounds
# (default 3): scripts with rounds of their own alternate the servers
# within each round; the others are run once per round. Every table names
# the commit it measured, so the tree must be clean apart from what this
# script writes (ALLOW_DIRTY=1 measures anyway; the commit then reads
# COMMIT-dirty). Run it on a quiet machine: other load shows up as noise.
# Needs what the scripts need: apt-get install wrk nginx-light linux-perf
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
ROUNDS=${ROUNDS:-3}
DATA="$ROOT/notes/data"
PLACEMENT=${PLACEMENT:-split}
case $PLACEMENT in
    split | shared) ;;
    *) echo "PLACEMENT=$PLACEMENT: not a placement (split or shared)" >&2; exit 1 ;;
esac
# The tables measured in PLACEMENT; the others ignore it.
placed_tables=" bench-http-pass bench-http-reuseport bench-http-shared bench-http-level bench-http-levers lever-batch lever-head trace-cost latency-http "
# data_name NAME — the CSV's name: NAME, or NAME-placement-shared for a
# table measured in shared placement.
data_name() {
    if [ "$PLACEMENT" = shared ] && [[ $placed_tables == *" $1 "* ]]; then
        echo "$1-placement-shared"
    else
        echo "$1"
    fi
}

# header TITLE ROW-HEADER COMMAND [NOTE…] — a CSV file's header (the
# charts crate's format: `# key: value` lines, then the column names).
header() {
    {
        printf '# title: %s\n# command: %s\n# machine: %s\n' "$1" "$3" "$MACHINE"
        local row=$2 n
        shift 3
        for n in "$@"; do printf '# note: %s\n' "$n"; done
        printf '# row: %s\nrow,column,round,value\n' "$row"
    } >"$CSV"
}

# rounds CMD… — runs CMD ROUNDS times, CSV_ROUND numbering the runs.
rounds() {
    local r
    for r in $(seq 1 "$ROUNDS"); do CSV_ROUND=$r "$@"; done
}

S="$ROOT/scripts"
nginx_version() { nginx -v 2>&1 | sed 's/.*nginx\///'; }

# placement_note GENERATOR — the note that says where a table's servers
# and load generator ran (PLACEMENT, as bench-http.sh and latency-http.sh
# read it).
placement_note() {
    if [ "$PLACEMENT" = split ]; then
        echo "Placement split: stage06 and nginx each on CPU 0 (taskset -c 0) with 1 worker (nginx also worker_cpu_affinity 1), $1 on CPU 1; every process and thread of each server checked allowed on CPU 0 alone."
    else
        echo "Placement shared: stage06 and nginx with $(nproc) workers each and $1, all on the same $(nproc) CPUs."
    fi
}
# wrk_note — how bench-http.sh runs wrk in PLACEMENT.
wrk_note() {
    if [ "$PLACEMENT" = split ]; then echo "wrk -t1"; else echo "wrk -t1 and wrk -t2 (a row each)"; fi
}
nginx_note() {
    echo "nginx $(nginx_version) with Debian's packaged settings (sendfile, tcp_nopush), no access log, an open-file cache"
}

# One function per table; the name after `t_` is the CSV's name.
t_bench-http-pass() { bench_http pass ""; }
t_bench-http-reuseport() { bench_http reuseport "--dispatch reuseport"; }
t_bench-http-shared() { bench_http "shared, exclusive" "--dispatch shared --exclusive"; }
# What the CPU columns of a split table are (bench-http.sh measures them
# in split placement only).
cpu_note() {
    [ "$PLACEMENT" = split ] || return 0
    echo " CPU µs / request: CPU 0 busy over the run (the server and the kernel's work for its traffic), divided by the requests wrk counted; CPU / request, nginx / stage06 above 1 means stage06 needs less. wrk's CPU busy: CPU 1 while wrk loads stage06; near 100 %, requests/s is as much wrk's limit as the server's."
}
bench_http() { # MODE-NAME STAGE06-FLAGS
    local cmd="PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS scripts/bench-http.sh" workers=1
    [ -n "$2" ] && cmd="PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS STAGE06_FLAGS=\"$2\" scripts/bench-http.sh"
    [ "$PLACEMENT" = split ] || workers=$(nproc)
    header "stage06 against nginx, dispatch $1" load "$cmd" "$(placement_note "$(wrk_note)")" \
        "stage06 --workers $workers${2:+ $2}; $(nginx_note); ${SECONDS_PER_RUN:-5} s runs, the two servers in alternation; stage06 / nginx is taken round by round.$(cpu_note)"
    PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS STAGE06_FLAGS="$2" "$S/bench-http.sh"
}
t_bench-http-steer() {
    # Always shared: with one worker (split) there is nothing to steer.
    # The default (--steer hash) is the baseline, the same build, in the
    # same run: the stage06 / baseline column is what the label is worth.
    header "stage06 --dispatch reuseport: --steer cpu against the default, --steer hash, and nginx" load \
        "PLACEMENT=shared ROUNDS=$ROUNDS ROWS=\"1 2 4 5\" BASELINE=target/release/stage06-full BASELINE_FLAGS=\"--dispatch reuseport\" STAGE06_FLAGS=\"--dispatch reuseport --steer cpu\" scripts/bench-http.sh" \
        "$(PLACEMENT=shared placement_note "wrk -t1 and wrk -t2 (a row each)") Shared whatever PLACEMENT says: --steer chooses among workers, and split placement has one." \
        "stage06: --steer cpu; baseline: the same build with the default, --steer hash; both --workers $(nproc) --dispatch reuseport. $(nginx_note); ${SECONDS_PER_RUN:-5} s runs, the three servers in alternation; the ratios are taken round by round."
    PLACEMENT=shared ROUNDS=$ROUNDS ROWS="1 2 4 5" BASELINE="$BIN/stage06-full" BASELINE_FLAGS="--dispatch reuseport" \
        STAGE06_FLAGS="--dispatch reuseport --steer cpu" "$S/bench-http.sh"
}
t_bench-http-level() {
    header "stage06 --trigger level against nginx" load \
        "PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS ROWS=\"1 5\" STAGE06_FLAGS=\"--trigger level\" scripts/bench-http.sh" \
        "$(placement_note "$(wrk_note)")" \
        "Compare with the same rows of the pass table (edge-triggered, the default), measured in the same placement."
    PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS ROWS="1 5" STAGE06_FLAGS="--trigger level" "$S/bench-http.sh"
}
t_bench-http-levers() {
    header "The close row with the per-connection levers turned off" configuration \
        "PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS ROWS=2 STAGE06_FLAGS=\"--dispatch MODE [--defer-accept 0] [--listen-trigger lt]\" scripts/bench-http.sh" \
        "$(placement_note "$(wrk_note)")" \
        "1 KiB, Connection: close, 50 connections; each configuration against nginx in its own run, the two in alternation; compare the ratios, not the requests/s of different rows."
    local c
    for c in "pass|" "pass|--defer-accept 0" "reuseport|" "reuseport|--defer-accept 0 --listen-trigger lt"; do
        IFS='|' read -r mode flags <<<"$c"
        CSV_ROW="$mode${flags:+, $flags}" PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS ROWS=2 \
            STAGE06_FLAGS="--dispatch $mode $flags" "$S/bench-http.sh"
    done
}
# The levers of chapter 6, part 2, each against a build with it undone
# (scripts/lever-build.sh), in PLACEMENT.
t_lever-batch() { lever batch1 "1 2 5" "Batched descriptor passing: this build against one that sends one connection per CONN message (BATCH = 1)"; }
t_lever-head() { lever head-alone "3 4" "The head before a file: this build (the head waits for every file) against one that sends it alone before a file of more than 64 KiB"; }
lever() { # NAME ROWS TITLE
    local base
    base=$("$S/lever-build.sh" "$1")
    header "$3" load \
        "BASELINE=\$(scripts/lever-build.sh $1) PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS ROWS=\"$2\" scripts/bench-http.sh" \
        "$(placement_note "$(wrk_note)")" \
        "stage06 / baseline is the lever's worth, taken round by round; $(nginx_note)."
    BASELINE="$base" PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS ROWS="$2" "$S/bench-http.sh"
}
t_pin-shared() {
    # Always shared: with one worker on one CPU (split) pinning changes
    # nothing.
    header "--pin on against the default (off), on shared CPUs" load \
        "PLACEMENT=shared ROUNDS=$ROUNDS BASELINE=target/release/stage06-full STAGE06_FLAGS=\"--pin on\" scripts/bench-http.sh" \
        "$(PLACEMENT=shared placement_note "wrk -t1 and wrk -t2 (a row each)")" \
        "stage06: --pin on; baseline: the same build without it; both --workers $(nproc). $(nginx_note)."
    PLACEMENT=shared ROUNDS=$ROUNDS BASELINE="$BIN/stage06-full" STAGE06_FLAGS="--pin on" "$S/bench-http.sh"
}
t_dispatch-placement() {
    header "Dispatch modes against pass, one CPU each and on shared CPUs" "placement, mode: load" \
        "BASELINE=target/release/stage06-full BASELINE_FLAGS=\"--dispatch pass\" STAGE06_FLAGS=\"--dispatch MODE\" PLACEMENT=P ROUNDS=$ROUNDS scripts/bench-http.sh, MODE reuseport and shared, P split and shared" \
        "split: each server on CPU 0 with one worker, wrk -t1 on CPU 1; shared: $(nproc) workers each, wrk -t1 and -t2 (a row each), all on the same CPUs." \
        "stage06 / baseline is the mode against pass, the same build, taken round by round; $(nginx_note)."
    local p m
    for p in split shared; do
        for m in reuseport shared; do
            CSV_ROW_PREFIX="$p, $m: " BASELINE="$BIN/stage06-full" BASELINE_FLAGS="--dispatch pass" \
                STAGE06_FLAGS="--dispatch $m" PLACEMENT=$p ROUNDS=$ROUNDS "$S/bench-http.sh"
        done
    done
}
t_placement-then-now() {
    # The build that paired client threads with workers (removed after
    # 7be94ff), its defaults, against this one: the appendix's table.
    local then="$TARGET/then"
    if [ ! -x "$then/release/stage06-full" ]; then
        rm -rf "$then/src" && git -C "$ROOT" worktree add -f --detach "$then/src" 7be94ff >/dev/null
        (cd "$then/src" && CARGO_TARGET_DIR="$then" cargo build --release --quiet -p stage06-full) >&2
        git -C "$ROOT" worktree remove --force "$then/src"
    fi
    header "The build that paired client threads with workers (7be94ff, its defaults) against this one" "placement: load" \
        "BASELINE=7be94ff-build PLACEMENT=P ROUNDS=$ROUNDS scripts/bench-http.sh, P shared and split, 7be94ff-build being stage06-full built at 7be94ff" \
        "split: each server on CPU 0 with one worker, wrk -t1 on CPU 1; shared: $(nproc) workers each, wrk -t1 and -t2 (a row each), all on the same CPUs." \
        "stage06 / baseline is this build against 7be94ff's, taken round by round: below 1, the pairing was faster; $(nginx_note)."
    local p
    for p in shared split; do
        CSV_ROW_PREFIX="$p: " BASELINE="$then/release/stage06-full" PLACEMENT=$p ROUNDS=$ROUNDS "$S/bench-http.sh"
    done
}
t_trace-cost() {
    # --trace off: this build's spans against the build before they were
    # written (0427377, the commit before stage02's --trace): the cost a
    # server that never records pays for being able to.
    local before="$TARGET/before-trace"
    if [ ! -x "$before/release/stage06-full" ]; then
        rm -rf "$before/src" && git -C "$ROOT" worktree add -f --detach "$before/src" 0427377 >/dev/null
        (cd "$before/src" && CARGO_TARGET_DIR="$before" cargo build --release --quiet -p stage06-full) >&2
        git -C "$ROOT" worktree remove --force "$before/src"
    fi
    header "--trace off: this build against the build before the timeline's spans (0427377)" load \
        "BASELINE=0427377-build PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS scripts/bench-http.sh, 0427377-build being stage06-full built at 0427377" \
        "$(placement_note "$(wrk_note)")" \
        "stage06 / baseline is what the spans cost with no --trace, taken round by round; $(nginx_note)."
    BASELINE="$before/release/stage06-full" PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS "$S/bench-http.sh"
}
t_who-sends() {
    header "Who does the work of a 1 MiB response: stage06 and nginx" server \
        "ROUNDS=$ROUNDS scripts/who-sends.sh" \
        "wrk -t2 -c50, 1 MiB file, keep-alive, 5 s runs, counted from /proc over the middle 3 s; server: all its processes and threads."
    ROUNDS=$ROUNDS "$S/who-sends.sh"
}
t_syscalls-levers() {
    header "System calls per connection (Connection: close) with the levers turned off" "system call" \
        "CLOSE=1 HTTP_SERVERS=stage06 STAGE06_FLAGS=\"--dispatch MODE [--defer-accept 0] [--listen-trigger lt]\" scripts/syscalls.sh http" \
        "1 KiB file, wrk -t2 -c50 -d3s -H 'Connection: close'; counted with perf over the master and the workers. nginx's own count is in the syscalls-http table."
    local c
    for c in "pass|" "pass|--defer-accept 0" "reuseport|" "reuseport|--defer-accept 0 --listen-trigger lt"; do
        IFS='|' read -r mode flags <<<"$c"
        rounds env CSV_COLUMN="$mode${flags:+, $flags}" CLOSE=1 HTTP_SERVERS=stage06 \
            STAGE06_FLAGS="--dispatch $mode $flags" "$S/syscalls.sh" http
    done
}
t_latency-http() {
    header "Latency at a fixed request rate: stage06 and nginx, 1 KiB file" "requests/s" \
        "PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS scripts/latency-http.sh" \
        "$(placement_note http-rate)" \
        "http-rate -c 50 -d ${SECONDS_PER_RUN:-4}, open loop: each request is due at a time fixed in advance and its latency runs from then; servers in alternation; $(nginx_note). Unanswered: requests sent but not answered by the end of the run."
    PLACEMENT=$PLACEMENT ROUNDS=$ROUNDS "$S/latency-http.sh"
}
t_syscalls-http() {
    header "System calls per request (per connection for close): stage06 and nginx" "system call" \
        "scripts/syscalls.sh http; SIZE=65536 scripts/syscalls.sh http; CLOSE=1 scripts/syscalls.sh http" \
        "wrk -t2 -c50 -d3s against each, $(nproc) workers each; counted with perf over all processes. Calls made less than once per 200 requests by both servers are summed in (other)."
    rounds env CSV_COLUMN="1 KiB" "$S/syscalls.sh" http
    rounds env CSV_COLUMN="64 KiB" SIZE=65536 "$S/syscalls.sh" http
    rounds env CSV_COLUMN="1 KiB, close" CLOSE=1 "$S/syscalls.sh" http
}
t_syscalls-http-nocache() {
    header "System calls per request without the open-file cache" "system call" \
        "STAGE06_FLAGS=\"--open-file-cache 0\" scripts/syscalls.sh http" \
        "1 KiB file; wrk -t2 -c50 -d3s against each; nginx keeps its open_file_cache."
    rounds env CSV_COLUMN="no cache" STAGE06_FLAGS="--open-file-cache 0" "$S/syscalls.sh" http
}
t_idle-memory() {
    header "Memory per connection: 3,000 connections, RSS and PSS of all processes" server \
        "N=3000 SERVERS=\"stage06 stage06-proactor-sim stage06-uring stage06-per-connection nginx\" scripts/idle-memory.sh" \
        "idle: each connection made one request and stays idle (keep-alive); partial: each sent one byte of a request head and waits. stage06 is the Reactor; stage06-per-connection gives each connection its own buffers."
    rounds env N=3000 SERVERS="stage06 stage06-proactor-sim stage06-uring stage06-per-connection nginx" \
        "$S/idle-memory.sh"
}
t_pool-effect() {
    header "Buffer pools: allocations per 1,000 requests" "buffers, load" \
        "ROUNDS=$ROUNDS scripts/pool-effect.sh" \
        "wrk -t2 -c50 -d3s on a 1 KiB file; the two designs in alternation; allocations counted by the workers' pools."
    ROUNDS=$ROUNDS "$S/pool-effect.sh"
}
t_bench-models() {
    header "Reactor and Proactors: stage06-full --model, 1 KiB file" model \
        "ROUNDS=$ROUNDS scripts/bench-models.sh" \
        "wrk -t2, 3 s runs, models in alternation; proactor-sim with 4 pool threads per worker. System calls and context switches per request: one run at 50 connections, counted with perf over all processes and threads."
    ROUNDS=$ROUNDS "$S/bench-models.sh"
}
t_bench-stages() {
    header "Echo ladder: 64-byte messages, ping-pong" server "ROUNDS=$ROUNDS scripts/bench-stages.sh" \
        "echo-load, 3 s runs, servers in alternation. Served: connections that got at least one answer."
    ROUNDS=$ROUNDS "$S/bench-stages.sh"
}
t_dispatch() {
    header "stage05's dispatch modes, 4 workers" dispatch "ROUNDS=$ROUNDS scripts/dispatch.sh" \
        "Persistent: echo-load -c 100, messages/s and p99; churn: echo-load --churn -c 1 (one connection at a time), connections/s and context switches of all server processes per connection. Live and taken per worker (min–max over workers): the last round."
    ROUNDS=$ROUNDS "$S/dispatch.sh"
}
t_syscalls-dispatch() {
    header "System calls per connection (connect, echo once, close)" "system call" \
        "CONNS=1 CHURN=3 scripts/syscalls.sh 05 --workers 2 --dispatch MODE; the same for 04" \
        "One client at a time, counted with perf over the master and its workers."
    local mode
    for mode in pass shared "shared --exclusive" reuseport; do
        # shellcheck disable=SC2086
        rounds env CSV_COLUMN="stage05 $mode" CONNS=1 CHURN=3 "$S/syscalls.sh" 05 --workers 2 --dispatch $mode
    done
    rounds env CSV_COLUMN="stage04" CONNS=1 CHURN=3 "$S/syscalls.sh" 04
}
t_syscalls-epoll() {
    header "System calls per echoed message: level- and edge-triggered" "system call" \
        "[CONNS=1] scripts/syscalls.sh 02 --trigger lt|et --listen-trigger lt|et" \
        "echo-load, 2,000 64-byte messages per connection; counted with perf; five rounds, since the one-client ET figure depends on timing."
    local t c
    for c in 1 10; do
        for t in lt et; do
            ROUNDS=5 rounds env CSV_COLUMN="${t^^}, $c client$([ "$c" = 1 ] || echo s)" CONNS=$c \
                "$S/syscalls.sh" 02 --trigger $t --listen-trigger $t
        done
    done
}
t_syscalls-timers() {
    header "System calls per echoed message: stage03 and stage04" "system call" \
        "scripts/syscalls.sh 03; scripts/syscalls.sh 04" \
        "echo-load -c 10, 2,000 64-byte messages per connection; counted with perf."
    rounds env CSV_COLUMN="stage03 (list, tick)" "$S/syscalls.sh" 03
    rounds env CSV_COLUMN="stage04 (heap, timerfd)" "$S/syscalls.sh" 04
}
t_idle-cost() {
    header "Idle clients: 1,000 connections that send nothing" measure \
        "scripts/idle-cost.sh STAGE [FLAGS]" \
        "Summed over the server's processes; RSS and PSS in KiB."
    rounds env CSV_COLUMN="stage01 threads" "$S/idle-cost.sh" 01 --mode threads
    rounds env CSV_COLUMN="stage02" "$S/idle-cost.sh" 02
    rounds env CSV_COLUMN="stage04" "$S/idle-cost.sh" 04
    rounds env CSV_COLUMN="stage05, 2 workers" "$S/idle-cost.sh" 05 --workers 2
}
t_wakeups() {
    header "Wake-ups per second of an idle server" load "scripts/wakeups.sh STAGE [FLAGS]" \
        "Context switches per second from /proc, over 5 s, with no client and with 100 idle clients."
    rounds env CSV_COLUMN="stage02" "$S/wakeups.sh" 02
    rounds env CSV_COLUMN="stage03, 1 s tick" "$S/wakeups.sh" 03
    rounds env CSV_COLUMN="stage03, --tick-ms 100" "$S/wakeups.sh" 03 --tick-ms 100
    rounds env CSV_COLUMN="stage04" "$S/wakeups.sh" 04
}
t_bench-timers() {
    header "Timer structures: nanoseconds per operation" N "scripts/bench-timers.sh" \
        "criterion's estimate (cargo bench -p timer-bench), one run; list / heap above 1 means the heap is faster."
    "$S/bench-timers.sh"
}

tables=$(declare -F | awk '$3 ~ /^t_/ { sub(/^t_/, "", $3); print $3 }')
if [ "${1:-}" = --list ]; then
    echo "$tables"
    exit 0
fi
wanted=${*:-$tables}
for name in $wanted; do
    grep -qx -- "$name" <<<"$tables" || { echo "no table $name (see --list)" >&2; exit 1; }
done

# Everything but the files this script writes.
outputs=(':!notes/data' ':!notes/src/measured' ':!notes/src/img/charts')
dirty=$(cd "$ROOT" && git status --porcelain -- . "${outputs[@]}")
MEASURED_COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD)
if [ -n "$dirty" ]; then
    if [ "${ALLOW_DIRTY:-}" != 1 ]; then
        echo "the tree has uncommitted changes (the tables name the commit); commit them, or ALLOW_DIRTY=1" >&2
        exit 1
    fi
    MEASURED_COMMIT="$MEASURED_COMMIT-dirty"
fi
export MEASURED_COMMIT
MACHINE=$(machine_line)

make_tmp
mkdir -p "$DATA"
log="$TARGET/measure-all.log"
mkdir -p "$TARGET"
: >"$log"
echo "measuring at commit $MEASURED_COMMIT; the scripts' own output goes to $log"
echo "placement $PLACEMENT for:$placed_tables(bench-http-steer: always shared)"
for name in $wanted; do
    start=$SECONDS
    if [ "$PLACEMENT" = split ] && [ "$(nproc)" -lt 2 ] && [[ $placed_tables == *" $name "* ]]; then
        echo "$name: skipped: split placement needs 2 CPUs"
        continue
    fi
    out=$(data_name "$name")
    export CSV="$tmp/$out.csv"
    if ! ("t_$name") >>"$log" 2>&1; then
        echo "$name failed; the end of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    mv "$CSV" "$DATA/$out.csv"
    echo "$out: $(grep '^"' "$DATA/$out.csv" | grep -vc ',"placement",') measurements in $(( SECONDS - start )) s"
done
unset CSV
(cd "$ROOT" && cargo run --quiet --release -p charts)
echo "tables in notes/src/measured/, charts in notes/src/img/charts/"
