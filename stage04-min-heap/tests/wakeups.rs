//! What stage04 adds over stage03, tested black-box: no tick, so an idle
//! server sleeps, and the heap scales to many timers.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{PATIENCE, Server, roundtrip, sees_close};

const BIN: &str = env!("CARGO_BIN_EXE_stage04-min-heap");

/// Context switches so far: every time the process went to sleep and was
/// woken (voluntary), or was preempted (involuntary).
fn switches(server: &Server) -> u64 {
    server.status_field("voluntary_ctxt_switches")
        + server.status_field("nonvoluntary_ctxt_switches")
}

#[test]
fn an_idle_server_with_no_connections_never_wakes_up() {
    let server = Server::start(BIN, &["--addr", "127.0.0.1:0"]);
    thread::sleep(Duration::from_millis(200));
    let before = switches(&server);
    thread::sleep(Duration::from_secs(2));
    let woke = switches(&server) - before;
    assert_eq!(woke, 0, "{woke} wake-ups in 2 s of idleness");
}

#[test]
fn once_the_last_connection_expires_the_server_sleeps() {
    let server = Server::start(BIN, &["--addr", "127.0.0.1:0", "--idle-timeout-ms", "200"]);
    let mut c = server.connect();
    assert_eq!(roundtrip(&mut c, b"hi"), b"hi");
    assert!(sees_close(&mut c));
    thread::sleep(Duration::from_millis(200));
    let before = switches(&server);
    thread::sleep(Duration::from_secs(2));
    let woke = switches(&server) - before;
    assert_eq!(woke, 0, "{woke} wake-ups after the last timer");
}

#[test]
fn ten_thousand_idle_clients_expire_within_tolerance() {
    if !testkit::enough_descriptors(10_100) {
        return;
    }
    let timeout = Duration::from_millis(1500);
    let server = Server::start(BIN, &["--addr", "127.0.0.1:0", "--idle-timeout-ms", "1500"]);
    let mut clients: Vec<TcpStream> = (0..10_000).map(|_| server.connect()).collect();
    let connected = Instant::now();
    assert_eq!(roundtrip(&mut clients[9_999], b"last"), b"last");
    for c in &mut clients {
        assert!(sees_close(c), "a client was never closed");
    }
    // The last connection's timer started before `connected`; every timer
    // has fired by its deadline plus a margin for closing 10,000 sockets on
    // a busy machine.
    let elapsed = connected.elapsed();
    assert!(
        elapsed <= timeout + PATIENCE / 2,
        "the last client was closed after {elapsed:?}"
    );
}
