//! `--trace`: the timeline shows what the trigger mode makes the loop do.
//! Edge-triggered, one wake-up reads until `EAGAIN`; level-triggered, one
//! wake-up reads once, and the next `epoll_wait` reports the rest.

use std::io::{Read, Write};

use testkit::Server;
use testkit::timeline::{Span, Timeline};

const BIN: &str = env!("CARGO_BIN_EXE_stage02-epoll");

/// More than three of the server's 64 KiB reads, sent at once.
const SENT: usize = 200_000;

/// Runs the server with `--trace`, echoes SENT bytes through one
/// connection, and returns the timeline and that connection's descriptor.
fn traced_echo(test: &str, trigger: &str) -> (Timeline, u64) {
    let path = std::env::temp_dir().join(format!("stage02-{test}-{}.json", std::process::id()));
    let server = Server::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--trigger",
            trigger,
            "--trace",
            path.to_str().unwrap(),
        ],
    );
    let mut client = server.connect();
    client.write_all(&vec![b'x'; SENT]).unwrap();
    let mut back = vec![0; SENT];
    client.read_exact(&mut back).unwrap();
    // The loop writes its timeline out before it sleeps. A second
    // connection's round trip makes it sleep once after the echo above,
    // so the echo's spans are in the file when this one returns.
    let mut sentinel = server.connect();
    sentinel.write_all(b"!").unwrap();
    sentinel.read_exact(&mut [0u8; 1]).unwrap();
    let timeline = Timeline::read(&path);
    let _ = std::fs::remove_file(&path);
    // The echoed connection's reads come first.
    let read = timeline
        .named("read")
        .next()
        .expect("the timeline holds no read");
    let fd = read.num("fd").expect("a read span without its fd");
    (timeline, fd)
}

/// The connection's event spans, each with the reads inside it.
fn wake_ups(timeline: &Timeline, fd: u64) -> Vec<(&Span, Vec<&Span>)> {
    timeline
        .named("event")
        .filter(|e| e.num("fd") == Some(fd))
        .map(|e| (e, timeline.inside(e, "read")))
        .filter(|(_, reads)| !reads.is_empty())
        .collect()
}

fn read_bytes(reads: &[&Span]) -> u64 {
    reads.iter().filter_map(|r| r.num("bytes")).sum()
}

#[test]
fn edge_triggered_reads_until_eagain_after_one_wake_up() {
    let (timeline, fd) = traced_echo("drain", "et");
    let wakes = wake_ups(&timeline, fd);
    assert!(!wakes.is_empty(), "no wake-up read from descriptor {fd}");
    let mut total = 0;
    for (event, reads) in &wakes {
        let last = reads.last().unwrap();
        assert!(
            reads.len() >= 2 && last.text("error") == Some("WouldBlock"),
            "an edge-triggered wake-up at {} µs read {} times and its last read returned {:?}: \
             it must read until WouldBlock (EAGAIN)",
            event.start,
            reads.len(),
            last.args
        );
        total += read_bytes(reads);
    }
    assert_eq!(
        total, SENT as u64,
        "the reads on the timeline add up to what was sent"
    );
}

#[test]
fn level_triggered_reads_once_per_wake_up() {
    let (timeline, fd) = traced_echo("once", "lt");
    let wakes = wake_ups(&timeline, fd);
    for (event, reads) in &wakes {
        assert_eq!(
            reads.len(),
            1,
            "a level-triggered wake-up at {} µs read {} times: one read, and the next \
             epoll_wait says if more is waiting",
            event.start,
            reads.len()
        );
    }
    // 64 KiB a read: SENT bytes take at least four wake-ups.
    assert!(
        wakes.len() >= SENT.div_ceil(64 * 1024),
        "{} wake-ups read {SENT} bytes",
        wakes.len()
    );
    assert_eq!(
        read_bytes(
            &wakes
                .iter()
                .flat_map(|(_, r)| r.clone())
                .collect::<Vec<_>>()
        ),
        SENT as u64
    );
}

#[test]
fn each_wake_up_says_how_many_events_it_brought() {
    let (timeline, _) = traced_echo("waits", "et");
    let waits: Vec<_> = timeline.named("epoll_wait").collect();
    assert!(
        waits.len() >= 2,
        "the timeline holds {} epoll_wait spans",
        waits.len()
    );
    // The last one may still be asleep when the file is read.
    assert!(
        waits
            .iter()
            .filter(|w| w.num("events").is_some_and(|n| n >= 1))
            .count()
            >= 2,
        "epoll_wait spans carry their event count"
    );
    assert_eq!(
        timeline.processes.values().next().map(String::as_str),
        Some("stage02")
    );
}
