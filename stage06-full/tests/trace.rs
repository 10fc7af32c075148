//! `--trace`: the timeline shows where each model does a request's work.
//! Three pipelined GETs, sent in one write to one worker: the Reactor
//! parses and sends on its loop thread; the simulated Proactor parses on a
//! pool thread and does the I/O on the loop thread; io_uring's sends are
//! submissions and completions.

use std::io::{BufReader, Write};
use std::path::PathBuf;

use testkit::http::read_response;
use testkit::timeline::{Span, Timeline};
use testkit::{PATIENCE, Server};

const BIN: &str = env!("CARGO_BIN_EXE_stage06-full");

const REQUESTS: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n\
GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n\
GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";

/// What one run left behind: the timeline, and the worker's pid (its loop
/// runs on the thread whose id is the pid).
struct Run {
    timeline: Timeline,
    worker: u64,
}

impl Run {
    /// The spans called `name` in the worker process.
    fn worker_spans<'a>(&'a self, name: &'a str) -> Vec<&'a Span> {
        let worker = self.worker;
        self.timeline
            .named(name)
            .filter(|s| s.pid == worker)
            .collect()
    }

    fn on_loop(&self, name: &str) -> usize {
        let spans = self.worker_spans(name);
        spans.iter().filter(|s| s.tid == self.worker).count()
    }

    fn off_loop<'a>(&'a self, name: &'a str) -> Vec<&'a Span> {
        let spans = self.worker_spans(name);
        spans.into_iter().filter(|s| s.tid != self.worker).collect()
    }
}

/// Whether io_uring is refused here: the server says so at start
/// (`--max-conns 0` stops it right after the check).
fn uring_unavailable() -> bool {
    let check = [
        "--model",
        "uring",
        "--addr",
        "127.0.0.1:0",
        "--max-conns",
        "0",
    ];
    let reason = testkit::refusal(BIN, &check, "io_uring is not available");
    if let Some(reason) = &reason {
        testkit::skip(reason);
    }
    reason.is_some()
}

/// Serves REQUESTS under `--model MODEL` with one worker and `--trace`,
/// checks the three responses, stops the server with SIGTERM, and reads
/// the timeline.
fn traced(model: &str) -> Run {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("stage06-trace-{model}-{}", std::process::id()));
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.txt"), "three times\n").unwrap();
    let path = dir.join("timeline.json");
    let mut server = Server::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--root",
            root.to_str().unwrap(),
            "--workers",
            "1",
            "--model",
            model,
            "--trace",
            path.to_str().unwrap(),
        ],
    );
    let mut client = server.connect();
    client.write_all(REQUESTS).unwrap();
    let mut reader = BufReader::new(client);
    for _ in 0..3 {
        let response = read_response(&mut reader, false).expect("a response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"three times\n");
    }
    server.signal("TERM");
    let exit = server.wait_exit(PATIENCE).expect("the master exits");
    assert!(exit.success(), "master exit {exit:?}");
    let timeline = Timeline::read(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(timeline.complete, "a clean stop closes the array");
    let master = u64::from(server.pid());
    assert_eq!(
        timeline.processes.get(&master).map(String::as_str),
        Some("stage06 master")
    );
    let worker = timeline
        .processes
        .iter()
        .find(|(_, name)| name.as_str() == "stage06 worker 0")
        .map(|(pid, _)| *pid)
        .expect("the worker names itself on the timeline");
    Run { timeline, worker }
}

#[test]
fn reactor_parses_and_sends_on_the_loop_thread() {
    let run = traced("reactor");
    assert!(run.on_loop("process") >= 3, "a process span per request");
    assert!(run.on_loop("send") >= 1, "the loop sends");
    assert!(run.on_loop("recv") >= 1, "the loop receives");
    assert!(
        run.off_loop("process").is_empty() && run.off_loop("send").is_empty(),
        "no other thread does a request's work"
    );
}

#[test]
fn proactor_sim_parses_on_a_pool_thread_and_does_io_on_the_loop() {
    let run = traced("proactor-sim");
    let pooled = run.off_loop("process");
    assert!(pooled.len() >= 3, "a process span per request, in the pool");
    assert_eq!(run.on_loop("process"), 0, "the loop parses nothing");
    for span in &pooled {
        let name = run.timeline.threads.get(&(span.pid, span.tid));
        assert!(
            name.is_some_and(|n| n.starts_with("pool ")),
            "parsing ran on thread {} named {name:?}",
            span.tid
        );
    }
    assert!(run.on_loop("send") >= 1 && run.on_loop("recv") >= 1);
    assert!(run.off_loop("send").is_empty() && run.off_loop("recv").is_empty());
    assert!(
        !run.worker_spans("hand_back").is_empty() && run.on_loop("processed") >= 1,
        "the pool hands each connection back, and the loop takes it"
    );
}

#[test]
fn uring_sends_are_submissions_and_completions() {
    if uring_unavailable() {
        return;
    }
    let run = traced("uring");
    let submitted = run
        .worker_spans("submit")
        .into_iter()
        .filter(|s| s.text("op") == Some("send"))
        .count();
    let completed: Vec<&Span> = run
        .worker_spans("complete")
        .into_iter()
        .filter(|s| s.text("op") == Some("Send"))
        .collect();
    assert!(submitted >= 1, "a send goes into the ring");
    assert!(
        !completed.is_empty() && completed.iter().all(|c| c.num("bytes").is_some()),
        "each send's completion says how many bytes went"
    );
    // The parse is the loop's own work here too: the kernel does the I/O.
    assert_eq!(
        run.on_loop("process"),
        3,
        "three parses, on the loop's thread"
    );
    assert!(run.off_loop("process").is_empty(), "no parse off the loop");
}
