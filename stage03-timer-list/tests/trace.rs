//! `--trace`: the timeline shows what the loop does while a connection
//! idles. The SIGALRM tick wakes the loop every `--tick-ms` whether a timer
//! is due or not, and the connection expires on the first tick after its
//! deadline: the wake-ups stage04 does without.

use std::path::{Path, PathBuf};

use testkit::timeline::{Span, Timeline};
use testkit::{PATIENCE, Server, roundtrip, sees_close};

const BIN: &str = env!("CARGO_BIN_EXE_stage03-timer-list");

/// The idle timeout the tests run with, and the tick: about fifteen ticks
/// while the connection idles.
const IDLE_MS: u64 = 300;
const TICK_MS: &str = "20";

fn trace_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("stage03-{test}-{}.json", std::process::id()))
}

/// Runs the server with `--trace` and `extra` flags; one client connects,
/// says nothing, and waits until the server closes it. Returns the timeline.
fn idle_client_timeline(test: &str, extra: &[&str]) -> Timeline {
    let path = trace_path(test);
    let idle = IDLE_MS.to_string();
    let mut args = vec![
        "--addr",
        "127.0.0.1:0",
        "--idle-timeout-ms",
        &idle,
        "--trace",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(BIN, &args);
    let mut client = server.connect();
    assert!(sees_close(&mut client), "the idle client was never closed");
    // The loop writes its timeline out before it sleeps. A second
    // connection's round trip makes it sleep once after the expiry, so the
    // expiry (and this connection's accept) is in the file when it returns.
    let mut sentinel = server.connect();
    assert_eq!(roundtrip(&mut sentinel, b"!"), b"!");
    read_and_remove(&path)
}

fn read_and_remove(path: &Path) -> Timeline {
    let timeline = Timeline::read(path);
    let _ = std::fs::remove_file(path);
    timeline
}

/// The idle client's life on the timeline: its `accept`, the `epoll_wait`
/// that woke the loop for it, and its `expire`, the only one before the
/// second client's accept (which may take the same descriptor).
struct IdleClient<'a> {
    accept: &'a Span,
    woke: &'a Span,
    expire: &'a Span,
}

impl<'a> IdleClient<'a> {
    fn find(timeline: &'a Timeline) -> IdleClient<'a> {
        let accepts: Vec<&Span> = timeline
            .named("accept")
            .filter(|a| a.num("accepted").is_some_and(|n| n >= 1))
            .collect();
        assert!(
            accepts.len() >= 2,
            "the timeline holds {} accepts, not the idle client's and the second one",
            accepts.len()
        );
        let (accept, second) = (accepts[0], accepts[1]);
        let woke = timeline
            .named("epoll_wait")
            .filter(|w| w.end <= accept.start)
            .last()
            .expect("no epoll_wait before the accept");
        let expires: Vec<&Span> = timeline
            .named("expire")
            .filter(|e| e.start > accept.start && e.start < second.start)
            .collect();
        assert_eq!(
            expires.len(),
            1,
            "the idle connection expired {} times: {expires:?}",
            expires.len()
        );
        assert!(
            expires[0].num("fd").is_some(),
            "an expire span without its fd"
        );
        IdleClient {
            accept,
            woke,
            expire: expires[0],
        }
    }

    /// The loop reads its clock once per wake-up, after `epoll_wait`
    /// returns, so the connection's deadline is at least IDLE_MS after the
    /// wake-up that accepted it: an expiry before that is early.
    fn assert_not_before_deadline(&self) {
        let earliest = self.woke.end + (IDLE_MS * 1000) as f64;
        assert!(
            self.expire.start >= earliest,
            "the connection expired {:.0} µs after the wake-up that accepted it, \
             before its {IDLE_MS} ms deadline",
            self.expire.start - self.woke.end
        );
    }

    /// The `epoll_wait` spans that returned between the accept and the
    /// expiry.
    fn wake_ups(&self, timeline: &'a Timeline) -> Vec<&'a Span> {
        timeline
            .named("epoll_wait")
            .filter(|w| w.end > self.accept.end && w.end < self.expire.start)
            .collect()
    }
}

#[test]
fn the_tick_wakes_the_loop_while_a_connection_idles() {
    let timeline = idle_client_timeline("ticks", &["--tick-ms", TICK_MS]);
    let idle = IdleClient::find(&timeline);
    idle.assert_not_before_deadline();
    let ticks: Vec<&Span> = timeline
        .named("tick")
        .filter(|t| t.start > idle.accept.start && t.start <= idle.expire.start)
        .collect();
    // The last tick expired the connection; the ones before it found
    // nothing due and woke the loop for nothing.
    let (last, before) = ticks.split_last().expect("no tick after the accept");
    assert!(
        last.holds(idle.expire),
        "the expiry is not inside a tick's span: {:?}",
        idle.expire
    );
    assert!(
        before.len() >= 3,
        "{} ticks while the connection idled {IDLE_MS} ms with a tick every {TICK_MS} ms",
        before.len()
    );
    for tick in before {
        assert!(
            timeline.inside(tick, "expire").is_empty(),
            "a tick before the deadline expired something: {tick:?}"
        );
    }
    // Each tick came with a wake-up of its own: an epoll_wait returned
    // between any two of them.
    let wakes = idle.wake_ups(&timeline);
    for pair in ticks.windows(2) {
        assert!(
            wakes
                .iter()
                .any(|w| w.end > pair[0].end && w.end < pair[1].start),
            "two ticks in one wake-up: {pair:?}"
        );
    }
}

#[test]
fn a_clean_shutdown_leaves_a_complete_json_array() {
    let path = trace_path("shutdown");
    let mut server = Server::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            // No tick before the SIGTERM: its drain is the only one.
            "--tick-ms",
            "60000",
            "--trace",
            path.to_str().unwrap(),
        ],
    );
    let mut client = server.connect();
    assert_eq!(roundtrip(&mut client, b"hi"), b"hi");
    server.signal("TERM");
    let status = server
        .wait_exit(PATIENCE)
        .expect("still running after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let text = std::fs::read_to_string(&path).expect("read the timeline");
    assert!(
        text.ends_with("\n]\n"),
        "the timeline does not end with its closing ]: {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    // With its `]`, the file is read as it is: it must be a JSON array.
    let timeline = read_and_remove(&path);
    // The SIGTERM's turn of the loop never went back to sleep, so no flush
    // wrote it: it is in the file because the exit did.
    let signals: Vec<&Span> = timeline.named("signals").collect();
    assert_eq!(signals.len(), 1, "signals spans: {signals:?}");
    assert!(
        signals[0].num("count").is_some_and(|n| n >= 1),
        "the SIGTERM's drain read {:?}",
        signals[0].args
    );
}
