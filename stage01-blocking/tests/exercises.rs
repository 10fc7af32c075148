//! The chapter's exercises, one test each. They fail on the stage as
//! shipped and pass once the exercise is done:
//!
//! ```text
//! cargo test -p stage01-blocking --test exercises -- --ignored ex1_1
//! ```

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{Server, eventually, roundtrip, sees_close, stays_silent};

const BIN: &str = env!("CARGO_BIN_EXE_stage01-blocking");

fn start(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start(BIN, &all)
}

#[test]
#[ignore = "ex1.1 (easy): cap thread-per-connection with --max-threads"]
fn ex1_1_max_threads_refuses_the_connection_past_the_cap() {
    let server = start(&["--mode", "threads", "--max-threads", "2"]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(roundtrip(&mut a, b"a"), b"a");
    assert_eq!(roundtrip(&mut b, b"b"), b"b");
    // The third is over the cap: closed at once, not left hanging.
    let mut c = server.connect();
    let _ = c.write_all(b"c");
    assert!(sees_close(&mut c), "the third connection was not refused");
    // When one leaves, its thread is free again.
    drop(a);
    thread::sleep(Duration::from_millis(200));
    let mut d = server.connect();
    assert_eq!(roundtrip(&mut d, b"d"), b"d");
}

#[test]
#[ignore = "ex1.2 (easy): time out a silent client with SO_RCVTIMEO (--idle-secs)"]
fn ex1_2_a_silent_client_is_closed_after_idle_secs() {
    let server = start(&["--mode", "threads", "--idle-secs", "1"]);
    let mut busy = server.connect();
    let mut silent = server.connect();
    let started = Instant::now();
    // A client that keeps talking stays.
    for _ in 0..4 {
        assert_eq!(roundtrip(&mut busy, b"hi"), b"hi");
        thread::sleep(Duration::from_millis(400));
    }
    assert!(sees_close(&mut silent), "the silent client was not closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(roundtrip(&mut busy, b"still"), b"still");
}

#[test]
#[ignore = "ex1.3 (medium): a bounded queue for the pool (--queue)"]
fn ex1_3_a_full_pool_queue_refuses_new_connections() {
    let server = start(&["--mode", "pool", "--threads", "1", "--queue", "1"]);
    // The only thread serves `a`; `b` waits in the queue; `c` is refused.
    let mut a = server.connect();
    assert_eq!(roundtrip(&mut a, b"a"), b"a");
    let mut b = server.connect();
    b.write_all(b"b").unwrap();
    thread::sleep(Duration::from_millis(200));
    let mut c = server.connect();
    let _ = c.write_all(b"c");
    assert!(
        sees_close(&mut c),
        "the connection over the queue was not refused"
    );
    assert!(
        stays_silent(&mut b, Duration::from_millis(200)),
        "b was served early"
    );
    drop(a);
    let mut back = [0u8; 1];
    std::io::Read::read_exact(&mut b, &mut back).unwrap();
    assert_eq!(
        &back, b"b",
        "the queued connection was served once a thread was free"
    );
}

#[test]
#[ignore = "ex1.4 (hard): an elastic pool, grown on demand up to --pool-max, shrunk after --pool-idle-ms"]
fn ex1_4_the_pool_grows_under_load_and_shrinks_when_idle() {
    let server = start(&[
        "--mode",
        "pool",
        "--threads",
        "1",
        "--pool-max",
        "4",
        "--pool-idle-ms",
        "200",
    ]);
    let threads = || server.status_field("Threads");
    // The main thread and the one pool thread the minimum asks for.
    assert!(
        eventually(Duration::from_secs(2), || threads() == 2),
        "{} threads at start",
        threads()
    );
    // Four clients at once: each is served while the others stay connected,
    // which a fixed pool of one thread cannot do.
    let mut clients: Vec<_> = (0..4).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = [b'a' + i as u8];
        assert_eq!(roundtrip(c, &msg), msg, "client {i} was not served");
    }
    assert_eq!(threads(), 5, "a thread per busy connection, up to the cap");
    // A fifth waits: the cap holds.
    let mut fifth = server.connect();
    fifth.write_all(b"e").unwrap();
    assert!(
        stays_silent(&mut fifth, Duration::from_millis(300)),
        "a fifth thread past the cap"
    );
    // One leaves, and its thread takes the fifth.
    drop(clients.pop());
    let mut back = [0u8; 1];
    std::io::Read::read_exact(&mut fifth, &mut back).unwrap();
    assert_eq!(&back, b"e");
    // All leave: the extra threads go once idle, down to the minimum.
    drop(clients);
    drop(fifth);
    assert!(
        eventually(Duration::from_secs(5), || threads() == 2),
        "{} threads long after every client left",
        threads()
    );
    // And the pool grows again when needed.
    let mut again: Vec<_> = (0..2).map(|_| server.connect()).collect();
    for c in &mut again {
        assert_eq!(roundtrip(c, b"z"), b"z");
    }
    assert_eq!(threads(), 3);
}
