#!/usr/bin/env bash
# The small timelines the book draws: runs a stage with --trace on a free
# port of 127.0.0.1, drives it with a short scripted client (python3), stops
# it, and keeps only the client's window of the timeline, from just before
# it connects to just after it is done (a few hundred events at most), in
# notes/data/traces/NAME.json. `cargo run -p charts` then draws them into
# notes/src/img/timelines/. Release builds, as a reader runs them.
#
#   scripts/record-traces.sh            # every trace
#   scripts/record-traces.sh lt-et      # some: lt-et timers prefork models
#
# The traces, each a server command and its client (ADDR is the free port
# the server took):
#
#   lt-et    lt.json: stage02-epoll --trigger lt --trace FILE
#            et.json: stage02-epoll --trigger et --trace FILE
#            client: one connection writes 200,000 bytes at once, reads the
#            echo back, and closes
#   timers   tick.json: stage03-timer-list --tick-ms 50 --idle-timeout-ms 300 --trace FILE
#            timerfd.json: stage04-min-heap --idle-timeout-ms 300 --trace FILE
#            client: one connection that sends nothing, until the server
#            closes it
#   prefork  prefork.json: stage05-prefork --workers 2 --dispatch pass --trace FILE
#            client: opens three connections, then on each in turn writes
#            "hello\n" and reads it back, then closes all three
#   models   reactor.json, proactor-sim.json, uring.json:
#            stage06-full --workers 1 --model MODEL --trace FILE
#            client: one connection writes three GETs in one write
#            (/hello.txt, /style.css, /app.js), reads the three responses
#            and closes. Where io_uring is refused (an old kernel, a
#            sandbox), uring.json is skipped, the committed one kept, and
#            the script says so.
#
# Every trace is taken on this machine as it is: the times in a picture
# are one run's, not a measurement; what a picture shows is the order and
# the shape. The whole run takes a few seconds; each server is stopped
# (SIGTERM, then SIGKILL) within two seconds of its client's end.
. "$(dirname "$0")/lib.sh"

script_start 0 "$@"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(lt-et timers prefork models)
for n in "${names[@]}"; do
    case $n in
        lt-et | timers | prefork | models) ;;
        *) echo "not a trace: $n (lt-et, timers, prefork or models)" >&2; exit 1 ;;
    esac
done
need_tool python3 "apt-get install python3"
OUT="$ROOT/notes/data/traces"
mkdir -p "$OUT"
build_release stage02-epoll stage03-timer-list stage04-min-heap stage05-prefork stage06-full
make_tmp

# The client and the trimming, in one small python program: `client MODE
# ADDR` prints the client's window as "START END", in microseconds on
# CLOCK_MONOTONIC (the clock the servers' timelines use); `trim FILE START
# END` prints the events of FILE inside it, and every M event.
cat >"$tmp/tool.py" <<'PY'
import json, socket, sys, time

def now_us():
    return time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6

started = []

def connect(addr):
    """A connection; the first one's return starts the window (before it,
    the server only sleeps)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not started:
        started.append(now_us())
    return s

def read_exactly(s, n):
    got = b""
    while len(got) < n:
        b = s.recv(65536)
        if not b:
            raise SystemExit("the server closed early (%d of %d bytes)" % (len(got), n))
        got += b
    return got

def http_responses(s, count):
    """Reads COUNT responses, each a head and a Content-Length body."""
    buf = b""
    for _ in range(count):
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                raise SystemExit("the server closed early")
            buf += b
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(buf) < length:
            b = s.recv(65536)
            if not b:
                raise SystemExit("the server closed early")
            buf += b
        buf = buf[length:]

def client(mode, addr):
    if mode == "echo":
        s = connect(addr)
        data = b"x" * 200000
        s.sendall(data)
        read_exactly(s, len(data))
        s.close()
    elif mode == "idle":
        s = connect(addr)
        if s.recv(1) != b"":
            raise SystemExit("the server sent something to an idle client")
        s.close()
    elif mode == "conns":
        conns = [connect(addr) for _ in range(3)]
        for s in conns:
            s.sendall(b"hello\n")
            read_exactly(s, 6)
        for s in conns:
            s.close()
    elif mode == "http":
        s = connect(addr)
        gets = "".join("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p
                       for p in ("/hello.txt", "/style.css", "/app.js"))
        s.sendall(gets.encode())
        http_responses(s, 3)
        s.close()
    # The server's side of the close, a moment after the client's.
    time.sleep(0.0005)
    print("%.3f %.3f" % (started[0], now_us()))

def trim(path, start, end):
    """The M events, and the others with start <= ts <= end, one per line,
    as written; then the window's edges, as two global instants called
    `window` (a line across every track in Perfetto; the charts take the
    window from them and do not draw them)."""
    kept, pid = [], None
    for line in open(path):
        line = line.strip().rstrip(",")
        if line in ("[", "]", ""):
            continue
        event = json.loads(line)
        pid = pid or event["pid"]
        if event["ph"] == "M" or start <= event["ts"] <= end:
            kept.append(line)
    for edge, ts in (("start", start), ("end", end)):
        kept.append('{"ph":"i","name":"window","pid":%d,"tid":%d,"ts":%.3f,"s":"g","args":{"edge":"%s"}}'
                    % (pid, pid, ts, edge))
    print("[\n" + ",\n".join(kept) + "\n]")

if sys.argv[1] == "client":
    client(sys.argv[2], sys.argv[3])
else:
    trim(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
PY

# record NAME CLIENT-MODE SERVER [FLAGS…] — one trace into $OUT/NAME.json.
# The window is the client's life (from its first connection's return to
# half a millisecond after its last close) with a margin of a hundredth of it on
# each side (at least 20 µs), so that the wake-up before its first event
# and the wait after its last show, but not the server's stop. Returns 1 if the server did not start.
record() {
    local name=$1 mode=$2 server=$3 window start end pad
    shift 3
    start_server "$tmp/out" "$BIN/$server" --addr 127.0.0.1:0 "$@" --trace "$tmp/$name.json" ||
        return 1
    sleep 0.2 # prefork: the workers are up
    window=$(python3 "$tmp/tool.py" client "$mode" "$SERVER_ADDR")
    stop_server
    read -r start end <<<"$window"
    pad=$(awk -v s="$start" -v e="$end" 'BEGIN { p = (e - s) / 100; printf "%.3f", (p < 20 ? 20 : p) }')
    python3 "$tmp/tool.py" trim "$tmp/$name.json" \
        "$(awk -v s="$start" -v p="$pad" 'BEGIN { printf "%.3f", s - p }')" \
        "$(awk -v e="$end" -v p="$pad" 'BEGIN { printf "%.3f", e + p }')" >"$OUT/$name.json"
    echo "$(show_path "$OUT/$name.json"): $(($(wc -l <"$OUT/$name.json") - 2)) events, $(wc -c <"$OUT/$name.json") bytes: $server $* --trace FILE"
}
show_path() { echo "${1#"$ROOT"/}"; }

for n in "${names[@]}"; do
    case $n in
        lt-et)
            record lt echo stage02-epoll --trigger lt
            record et echo stage02-epoll --trigger et
            ;;
        timers)
            record tick idle stage03-timer-list --tick-ms 50 --idle-timeout-ms 300
            record timerfd idle stage04-min-heap --idle-timeout-ms 300
            ;;
        prefork)
            record prefork conns stage05-prefork --workers 2 --dispatch pass
            ;;
        models)
            record reactor http stage06-full --workers 1 --model reactor
            record proactor-sim http stage06-full --workers 1 --model proactor-sim
            if ! record uring http stage06-full --workers 1 --model uring 2>"$tmp/uring.err"; then
                echo "skipped: uring.json, io_uring is not available here ($(head -n1 "$tmp/out.err" 2>/dev/null)); the committed one is kept"
            fi
            ;;
    esac
done
