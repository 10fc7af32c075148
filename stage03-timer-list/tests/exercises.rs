//! The chapter's exercises, one test each. They fail on the stage as
//! shipped and pass once the exercise is done:
//!
//! ```text
//! cargo test -p stage03-timer-list --test exercises -- --ignored ex3_1
//! ```

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{Server, roundtrip, sees_close, stays_silent};

const BIN: &str = env!("CARGO_BIN_EXE_stage03-timer-list");

fn start(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start(BIN, &all)
}

#[test]
#[ignore = "ex3.1 (easy): SIGUSR1 prints the number of timers on stdout"]
fn ex3_1_sigusr1_reports_the_timers() {
    let mut server = start(&["--tick-ms", "50"]);
    let mut clients: Vec<_> = (0..3).map(|_| server.connect()).collect();
    for c in &mut clients {
        assert_eq!(roundtrip(c, b"x"), b"x");
    }
    server.signal("USR1");
    let line = server.read_stdout_line().expect("a line on stdout");
    assert_eq!(line.trim(), "timers 3");
    drop(clients.pop());
    thread::sleep(Duration::from_millis(200));
    server.signal("USR1");
    let line = server.read_stdout_line().expect("a line on stdout");
    assert_eq!(line.trim(), "timers 2");
    // The server still serves, and did not die of the signal.
    assert_eq!(roundtrip(&mut clients[0], b"y"), b"y");
}

#[test]
#[ignore = "ex3.2 (easy): say goodbye before an idle close (--idle-message)"]
fn ex3_2_an_idle_client_is_told_before_it_is_closed() {
    let server = start(&[
        "--idle-timeout-ms",
        "300",
        "--tick-ms",
        "50",
        "--idle-message",
        "idle timeout",
    ]);
    let mut c = server.connect();
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("the server closes");
    assert_eq!(got, b"idle timeout\n");
}

#[test]
#[ignore = "ex3.3 (medium): --idle-timeout-ms 0 turns idle timeouts off"]
fn ex3_3_a_zero_timeout_means_never() {
    let server = start(&["--idle-timeout-ms", "0", "--tick-ms", "50"]);
    let mut silent = server.connect();
    let started = Instant::now();
    assert!(
        stays_silent(&mut silent, Duration::from_millis(800)),
        "the silent client was closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(roundtrip(&mut silent, b"still here"), b"still here");
    drop(silent);
    // And a normal timeout still works.
    let server = start(&["--idle-timeout-ms", "200", "--tick-ms", "50"]);
    let mut c = server.connect();
    assert!(sees_close(&mut c));
}
