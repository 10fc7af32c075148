# Helpers shared by the scripts in this folder. Source it; do not run it.
# Every script opens the same way:
#
#   . "$(dirname "$0")/lib.sh"
#   script_start 1 "$@"     # --help, and at least 1 argument
#   make_tmp                # $tmp, removed (servers stopped) on exit

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# usage SCRIPT — prints the script's opening comment (its help), up to the
# first line that is not a comment.
usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# script_start MIN "$@" — `--help` or `-h` in any position (before a `--`)
# prints the script's help and exits 0; fewer than MIN arguments print it on
# stderr and exit 1.
script_start() {
    local min=$1 arg
    shift
    for arg in "$@"; do
        case $arg in
            --) break ;;
            -h | --help) usage "$0"; exit 0 ;;
        esac
    done
    if [ $# -lt "$min" ]; then
        usage "$0" >&2
        exit 1
    fi
}

# make_tmp — a temporary folder in $tmp; on exit, whatever server or nginx
# is still running is stopped and the folder removed.
make_tmp() {
    tmp=$(mktemp -d)
    trap cleanup EXIT
}
cleanup() {
    stop_server
    stop_nginx
    if [ -n "${tmp:-}" ]; then rm -rf "$tmp"; fi
}

# Where cargo puts what it builds: CARGO_TARGET_DIR if set (made absolute
# here, against the caller's folder, because build_release runs cargo from
# $ROOT), else $ROOT/target.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case $CARGO_TARGET_DIR in
        /*) ;;
        *) CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;;
    esac
    export CARGO_TARGET_DIR
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET/release"

# stage_dir 3 | 03 | stage03 | stage03-timer-list  ->  stage03-timer-list
stage_dir() {
    local arg=$1 n
    case $arg in
        stage[0-9][0-9]-*) n=${arg:5:2} ;;
        stage[0-9][0-9]) n=${arg:5:2} ;;
        [0-9][0-9]) n=$arg ;;
        [0-9]) n=0$arg ;;
        *) echo "not a stage: $arg (use 01…06 or a crate name)" >&2; return 1 ;;
    esac
    local dir
    dir=$(cd "$ROOT" && ls -d stage"$n"-* 2>/dev/null | head -n1) || true
    [ -n "$dir" ] || { echo "no stage $n in $ROOT" >&2; return 1; }
    echo "$dir"
}

# Builds the release binaries of the given packages (quietly).
build_release() {
    local args=()
    for p in "$@"; do args+=(-p "$p"); done
    (cd "$ROOT" && cargo build --release --quiet "${args[@]}")
}

# One line describing this machine, for the head of every table. The commit
# is MEASURED_COMMIT when set (scripts/measure-all.sh sets it once, before
# its own output makes the tree dirty).
machine_line() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
    printf 'Machine: %s, %s cores, %s; %s; commit %s\n' \
        "${cpu:-unknown cpu}" "$(nproc)" "$(uname -sr)" "$(date -u +%Y-%m-%d)" \
        "${MEASURED_COMMIT:-$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo none)}"
}

# start_server OUTFILE CMD...  — starts CMD (which must take --addr) on a
# free port, waits for its `listening on ADDR` line, and sets SERVER_PID and
# SERVER_ADDR. The server's stdout goes to OUTFILE.
start_server() {
    local out=$1; shift
    # Emptied first: the server's own redirection truncates them only once
    # it runs, and the loop below could read the previous server's
    # `listening on` line before then.
    : >"$out"
    : >"$out.err"
    SERVER_ADDR=
    "$@" >"$out" 2>"$out.err" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        if grep -q '^listening on ' "$out" 2>/dev/null; then
            SERVER_ADDR=$(sed -n 's/^listening on //p' "$out" | head -n1)
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "server did not start: $*" >&2
    cat "$out.err" >&2 || true
    return 1
}

# start_baseline OUT-FILE ARGS… — starts "$BASELINE" (a stage06-full binary
# built from another commit) with ARGS beside the server start_server
# started (under SERVER_WRAP, on the servers' CPUs, as that one is), sets
# BASELINE_PID and BASELINE_ADDR, and leaves SERVER_PID and SERVER_ADDR
# naming the first server. The baseline is stopped at exit.
start_baseline() {
    local out=$1 pid=$SERVER_PID addr=$SERVER_ADDR
    shift
    start_server "$out" "${SERVER_WRAP[@]}" "$BASELINE" "$@"
    BASELINE_PID=$SERVER_PID
    BASELINE_ADDR=$SERVER_ADDR
    SERVER_PID=$pid
    SERVER_ADDR=$addr
    trap 'kill "$BASELINE_PID" 2>/dev/null; wait "$BASELINE_PID" 2>/dev/null; cleanup' EXIT
}

# stop_server — SIGTERM, then SIGKILL if it lingers; waits for it.
stop_server() {
    [ -n "${SERVER_PID:-}" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# proc_field PID FIELD — a number from /proc/PID/status (VmRSS is in kB).
proc_field() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# median of the numbers given as arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratios "A1 A2 …" "B1 B2 …" — the ratios Ak/Bk of runs made side by side
# (the same round), as "min× / median× / max×".
ratios() {
    local -a a b r
    read -r -a a <<<"$1"
    read -r -a b <<<"$2"
    local k
    for k in "${!a[@]}"; do
        r+=("$(awk -v x="${a[$k]}" -v y="${b[$k]:-0}" 'BEGIN { printf "%.2f", (y > 0 ? x / y : 0) }')")
    done
    printf '%s\n' "${r[@]}" | sort -g | awk '{ v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%.2f× / %.2f× / %.2f×", v[1], m, v[NR] }'
}

# csv_row ROW COLUMN VALUE [ROUND] — with CSV=FILE set, appends one
# measurement to FILE as a CSV record `row,column,round,value`; without it,
# does nothing. scripts/measure-all.sh writes each file's header and runs
# the scripts; the `charts` crate (scripts/charts) turns the files into the
# book's tables and charts, so a number is written down once, by the script
# that measured it. ROUND defaults to CSV_ROUND (a script measured once per
# run is run once per round), else 1. CSV_COLUMN, where a script reads it,
# names the column of a script that measures one configuration per run;
# CSV_ROW, the row of a run that measures a single row (it replaces ROW).
#
# After placement_setup, the first record of each row in each round is
# `ROW,placement,ROUND,split` (or shared): the book's table then shows a
# `placement` column, and a table says which placement each of its rows
# was measured in. A column, not a fifth field: the charts crate reads
# exactly four fields a record, and plots only the columns its catalog
# names, so it shows the placement in the table and ignores it in the
# charts. Once per row and round, so that a table still counts the rounds
# right (it counts the values of its fullest cell).
declare -A CSV_PLACED=()
csv_row() {
    [ -n "${CSV:-}" ] || return 0
    local row=${CSV_ROW:-$1} round=${4:-${CSV_ROUND:-1}}
    if [ -n "${CSV_PLACEMENT:-}" ] && [ -z "${CSV_PLACED[$row|$round]:-}" ]; then
        CSV_PLACED[$row|$round]=1
        csv_record "$row" placement "$round" "$CSV_PLACEMENT"
    fi
    csv_record "$row" "$2" "$round" "$3"
}
csv_record() { # ROW COLUMN ROUND VALUE
    local f out=()
    for f in "$@"; do
        out+=("\"${f//\"/\"\"}\"")
    done
    (IFS=,; printf '%s\n' "${out[*]}") >>"$CSV"
}

# ratio A B — A/B with two decimals and a `×`, for csv_row.
ratio() {
    awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f×", (y > 0 ? x / y : 0) }'
}

# tree_pids PID — PID and its children (a prefork server's workers).
tree_pids() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}

# tree_switches PID — context switches of PID and its children so far, all
# their threads included.
tree_switches() {
    local total=0 p t v n
    for p in $(tree_pids "$1"); do
        for t in /proc/"$p"/task/*; do
            v=$(awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "$t/status" 2>/dev/null)
            n=$(awk '$1 == "nonvoluntary_ctxt_switches:" { print $2 }' "$t/status" 2>/dev/null)
            total=$(( total + ${v:-0} + ${n:-0} ))
        done
    done
    echo "$total"
}

# tree_ticks PID — CPU time (user and system, in clock ticks) of PID and
# its children so far, all their threads included.
tree_ticks() {
    local total=0 p t
    for p in $(tree_pids "$1"); do
        for t in /proc/"$p"/task/*; do
            # Fields 14 and 15 of stat; the name (field 2) may hold spaces,
            # so count from the closing parenthesis.
            total=$(( total + $(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }') ))
        done
    done
    echo "$total"
}

# free_port — a TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

need_tool() { # NAME INSTALL-HINT
    command -v "$1" >/dev/null || { echo "$1 is missing: $2" >&2; exit 1; }
}

# Placement: which CPUs the servers and the load generator run on.
# SERVER_WRAP and LOAD_WRAP are the command prefixes that put them there
# (`taskset -c 0`, `taskset -c 1`, or nothing); a script that never calls
# placement_setup runs everything on every CPU, as before.
SERVER_WRAP=()
LOAD_WRAP=()

# placement_setup — reads PLACEMENT (split or shared, default split) and
# sets where the servers and the load generator run:
#
#   split   each server on CPU 0 (SERVER_CPUS=0) with WORKERS=1, the load
#           generator on CPU 1 (LOAD_CPUS=1), wrk with one thread
#           (WRK_THREADS=1). Neither side can take the other's CPU, so a
#           server is measured with one CPU of its own, whatever the
#           scheduler does: the headline figures. Needs 2 CPUs (with fewer,
#           prints `skipped: split placement needs 2 CPUs` and exits 0);
#           with more, still CPUs 0 and 1, the others unused.
#   shared  the servers with WORKERS workers (default: the number of CPUs)
#           and the load generator all on every CPU (SERVER_CPUS=all,
#           LOAD_CPUS=all), as a quick test on a laptop runs; wrk once with
#           one thread and once with two (WRK_THREADS="1 2"), since on
#           shared CPUs wrk's thread count moves the result more than
#           either server does.
#
# Also sets SERVER_WRAP and LOAD_WRAP (above), and CSV_PLACEMENT, the
# placement csv_row writes beside each row.
placement_setup() {
    PLACEMENT=${PLACEMENT:-split}
    case $PLACEMENT in
        split)
            if [ "$(nproc)" -lt 2 ]; then
                echo "skipped: split placement needs 2 CPUs"
                exit 0
            fi
            if [ -n "${WORKERS:-}" ] && [ "$WORKERS" != 1 ]; then
                echo "WORKERS=$WORKERS: split placement runs one worker per server (PLACEMENT=shared for more)" >&2
                exit 1
            fi
            if ! taskset -c 0 true 2>/dev/null || ! taskset -c 1 true 2>/dev/null; then
                echo "split placement uses CPUs 0 and 1, and this shell may not run on both (its CPUs: $(awk '$1 == "Cpus_allowed_list:" { print $2 }' /proc/self/status))" >&2
                exit 1
            fi
            SERVER_CPUS=0 LOAD_CPUS=1 WORKERS=1 WRK_THREADS=1
            SERVER_WRAP=(taskset -c "$SERVER_CPUS")
            LOAD_WRAP=(taskset -c "$LOAD_CPUS")
            ;;
        shared)
            SERVER_CPUS=all LOAD_CPUS=all WRK_THREADS="1 2"
            WORKERS=${WORKERS:-$(nproc)}
            SERVER_WRAP=()
            LOAD_WRAP=()
            ;;
        *)
            echo "PLACEMENT=$PLACEMENT: not a placement (split or shared)" >&2
            exit 1
            ;;
    esac
    CSV_PLACEMENT=$PLACEMENT
}

# placement_text GENERATOR — the placement in words, for the head of a
# table: "placement split: each server on CPU 0 with 1 worker, wrk -t1 on
# CPU 1".
placement_text() {
    local n
    n=$(nproc)
    if [ "$PLACEMENT" = split ]; then
        printf 'placement split: each server on CPU %s with 1 worker, %s on CPU %s' \
            "$SERVER_CPUS" "$1" "$LOAD_CPUS"
        [ "$n" -le 2 ] || printf ' (CPUs 2 to %s of this machine unused)' "$((n - 1))"
    else
        printf 'placement shared: each server with %s worker%s on all %s CPUs, %s on the same CPUs' \
            "$WORKERS" "$([ "$WORKERS" = 1 ] || echo s)" "$n" "$1"
    fi
}

# check_placement PID NAME WORKERS — under split placement, checks that the
# server PID (the master) has its WORKERS workers, and that the master,
# every worker and every thread of theirs may run on SERVER_CPUS and
# nothing else (Cpus_allowed_list in /proc/…/status): a server that could
# spill onto the load generator's CPU would measure two CPUs against one.
# Fails loudly if not; does nothing under shared placement.
check_placement() {
    [ "${PLACEMENT:-}" = split ] || return 0
    local pid=$1 name=$2 want=$3 have=0 i p t cpus
    # The workers are forked after the master listens (stage06) or starts
    # (nginx): wait for them.
    for i in $(seq 1 100); do
        have=$(pgrep -P "$pid" 2>/dev/null | wc -l)
        [ "$have" -lt "$want" ] || break
        sleep 0.05
    done
    if [ "$have" -lt "$want" ]; then
        echo "placement split: $name (pid $pid) has $have of its $want workers" >&2
        exit 1
    fi
    for p in $(tree_pids "$pid"); do
        for t in /proc/"$p"/task/*; do
            cpus=$(awk '$1 == "Cpus_allowed_list:" { print $2 }' "$t/status" 2>/dev/null) || true
            [ -n "$cpus" ] || continue # a thread that has just ended
            if [ "$cpus" != "$SERVER_CPUS" ]; then
                echo "placement split: $name's process $p (thread ${t##*/}) may run on CPUs ${cpus:-?}, not only on CPU $SERVER_CPUS: it could take the load generator's CPU $LOAD_CPUS" >&2
                exit 1
            fi
        done
    done
}

# start_nginx ROOT WORKERS DIR [WRAPPER…] — writes an nginx configuration
# into DIR for the same document root and number of workers as stage06,
# starts nginx in the foreground on a free port (under WRAPPER, such as
# `perf stat …  --` or `taskset -c 0`, when given), and sets NGINX_PID and
# NGINX_ADDR. NGINX_EXTRA, when set, is added to the configuration's http
# block (such as "gzip on;", the packaged line left out, below). After
# placement_setup with split placement, the worker is also tied to CPU 0
# (worker_cpu_affinity).
#
# The nginx compared is the one users run: Debian's packaged
# /etc/nginx/nginx.conf (nginx-common 1.22.1-9+deb12u12), which every
# `apt-get install nginx-light` starts from, has in its http block
#
#     sendfile on;
#     tcp_nopush on;
#     types_hash_max_size 2048;
#     include /etc/nginx/mime.types;
#     default_type application/octet-stream;
#     access_log /var/log/nginx/access.log;
#     gzip on;
#
# and so does the configuration written here, but for three lines:
# types_hash_max_size (a hash-table size for the MIME types, which changes
# nothing served), gzip (its default gzip_types is text/html alone, and the
# measured files are application/octet-stream, so it would compress
# nothing; stage06 compresses nothing either), and the access log, off as
# stage06's is by default (a log line per request is a write per request;
# stage06 --access-log measures that). What it adds, each with why:
#
#   daemon off; pid; error_log   in the foreground, so the script holds the
#                                master's pid and stops it; its files in DIR
#                                rather than /run and /var/log, so it needs
#                                no packaged folders
#   user root                    the workers run as the script's user; as
#                                root they would otherwise become nobody,
#                                who cannot read the 0700 temporary root
#                                (unprivileged, nginx ignores it with a
#                                warning in its error.log)
#   worker_processes WORKERS     as many workers as stage06 (Debian: auto,
#                                one per CPU)
#   worker_cpu_affinity          split placement only: the one worker on
#                                CPU 0, where taskset has the master too
#   worker_rlimit_nofile 65536   room for worker_connections' sockets and
#                                the open-file cache's descriptors (the
#                                usual limit is 1024)
#   worker_connections 20000     the 1,000-connection row in one worker
#                                (split placement) needs more than Debian's
#                                768; stage06 has 10,000 slots a worker
#   keepalive_timeout 15s        stage06's --keepalive-timeout default
#                                (nginx's is 75 s)
#   keepalive_requests 1000000   wrk's connections are never closed by the
#                                server mid-run (nginx's default closes one
#                                after 1,000 requests; stage06 has no limit)
#   open_file_cache…             nginx keeps files open as stage06's
#                                --open-file-cache does, instead of an open
#                                and an fstat per request
#   *_temp_path                  in DIR: the compiled-in ones are under
#                                /var/lib/nginx, so it runs unprivileged
#   listen … backlog=1024        stage06's listen backlog
#                                (stage06-full/src/worker/mod.rs, BACKLOG);
#                                nginx's default is 511
start_nginx() {
    local root=$1 workers=$2 dir=$3 port i affinity=
    shift 3
    need_tool nginx "apt-get install nginx-light"
    port=$(free_port)
    mkdir -p "$dir/tmp"
    # A mask per worker, CPU 0 the rightmost bit: "1" is CPU 0.
    if [ "${PLACEMENT:-}" = split ] && [ "${SERVER_CPUS:-all}" != all ]; then
        affinity="worker_cpu_affinity 1$(printf '%*s' "$SERVER_CPUS" '' | tr ' ' 0);"
    fi
    cat >"$dir/nginx.conf" <<CONF
# Written by scripts/lib.sh (start_nginx, which says why each line is
# here): Debian's packaged http settings, for the same root and number of
# workers as stage06, no access log, an open-file cache.
daemon off;
user root;
worker_processes $workers;
$affinity
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 20000; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_timeout 15s;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=30s;
    open_file_cache_valid 60s;
    ${NGINX_EXTRA:-}
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port backlog=1024;
        root $root;
    }
}
CONF
    "$@" nginx -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/error.log" &
    NGINX_PID=$!
    NGINX_DIR=$dir
    NGINX_ADDR="127.0.0.1:$port"
    for i in $(seq 1 100); do
        if curl -s -o /dev/null "http://$NGINX_ADDR/"; then return 0; fi
        sleep 0.05
    done
    echo "nginx did not start; see $dir/error.log" >&2
    cat "$dir/error.log" >&2
    return 1
}

stop_nginx() {
    [ -n "${NGINX_PID:-}" ] || return 0
    # The master's own pid: NGINX_PID may be a wrapper's.
    kill -QUIT "$(cat "$NGINX_DIR/nginx.pid" 2>/dev/null || echo "$NGINX_PID")" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

# wrk_run THREADS CPUS URL CONNS SECONDS [EXTRA WRK ARGS…] — runs wrk, the
# one place the scripts do, with THREADS threads, confined to CPUS (a
# taskset list such as 1, or all), and prints "rps p50_us p99_us requests"
# (requests: how many were answered in the run).
wrk_run() {
    local threads=$1 cpus=$2 url=$3 conns=$4 secs=$5 wrap=()
    shift 5
    [ "$cpus" = all ] || wrap=(taskset -c "$cpus")
    "${wrap[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$@" "$url" 2>/dev/null | awk '
        function us(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v + 0 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v * 1000 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000000 }
            return v + 0
        }
        / requests in / { n = $1 }
        /Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = us($2) }
        $1 == "99%" { p99 = us($2) }
        END { printf "%.0f %.0f %.0f %.0f\n", rps, p50, p99, n }'
}
