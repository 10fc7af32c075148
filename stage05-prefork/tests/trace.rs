//! `--trace`: every process of the pool writes into one timeline. The
//! master's accept and its hand-over, then the worker's receipt of the
//! descriptor and its reads, show a connection crossing from one process
//! to another; a clean stop leaves a complete JSON array.

use testkit::timeline::{Span, Timeline};
use testkit::{PATIENCE, Server, roundtrip};

const BIN: &str = env!("CARGO_BIN_EXE_stage05-prefork");

const SENT: &[u8] = b"across two processes\n";

/// Runs a two-worker `pass` server with `--trace`, echoes SENT through one
/// connection, stops the server with SIGTERM, and returns its timeline and
/// the master's pid.
fn traced_pass(test: &str) -> (Timeline, u64) {
    let path = std::env::temp_dir().join(format!("stage05-{test}-{}.json", std::process::id()));
    let mut server = Server::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--dispatch",
            "pass",
            "--trace",
            path.to_str().unwrap(),
        ],
    );
    let mut client = server.connect();
    assert_eq!(roundtrip(&mut client, SENT), SENT);
    server.signal("TERM");
    let exit = server.wait_exit(PATIENCE).expect("the master exits");
    assert!(exit.success(), "master exit {exit:?}");
    let timeline = Timeline::read(&path);
    let _ = std::fs::remove_file(&path);
    (timeline, u64::from(server.pid()))
}

#[test]
fn a_passed_connection_is_accepted_by_the_master_and_read_by_a_worker() {
    let (timeline, master) = traced_pass("pass");
    let accepted = timeline
        .named("accept")
        .find(|s| s.pid == master && s.num("accepted").is_some_and(|n| n >= 1))
        .expect("no accept span in the master's process took a connection");
    let pass = timeline
        .named("pass")
        .find(|s| s.pid == master && s.start >= accepted.start)
        .expect("the master did not pass the connection on");
    assert_eq!(pass.num("fds"), Some(1), "one descriptor in the message");
    // The worker that received it, after the master sent it.
    let received = timeline
        .named("receive")
        .find(|s| s.pid != master && s.num("conns") == Some(1))
        .expect("no worker received a connection");
    assert!(
        received.end >= pass.start,
        "a worker received at {} µs what the master passed at {} µs",
        received.end,
        pass.start
    );
    let reads: Vec<&Span> = timeline
        .named("read")
        .filter(|r| r.pid == received.pid && r.start >= received.end)
        .collect();
    assert_eq!(
        reads.first().and_then(|r| r.num("bytes")),
        Some(SENT.len() as u64),
        "the receiving worker's first read after it took the connection is \
         the client's bytes: {reads:?}"
    );
    assert!(
        timeline.named("read").all(|r| r.pid != master),
        "the master never reads a connection's bytes"
    );
}

#[test]
fn a_clean_stop_leaves_a_complete_array_naming_every_process() {
    let (timeline, master) = traced_pass("names");
    assert!(
        timeline.complete,
        "after SIGTERM the master closes the array with its `]`"
    );
    assert_eq!(
        timeline.processes.get(&master).map(String::as_str),
        Some("stage05 master")
    );
    let mut workers: Vec<&str> = timeline
        .processes
        .iter()
        .filter(|(pid, _)| **pid != master)
        .map(|(_, name)| name.as_str())
        .collect();
    workers.sort_unstable();
    assert_eq!(workers, ["stage05 worker 0", "stage05 worker 1"]);
    // Each worker's own loop is on the timeline, under its own pid.
    for (&pid, name) in &timeline.processes {
        assert!(
            timeline.named("epoll_wait").any(|w| w.pid == pid),
            "{name} (pid {pid}) has no epoll_wait on the timeline"
        );
    }
}
