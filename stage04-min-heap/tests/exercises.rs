//! The chapter's exercises, one test each. They fail on the stage as
//! shipped and pass once the exercise is done:
//!
//! ```text
//! cargo test -p stage04-min-heap --test exercises -- --ignored ex4_1
//! ```

use std::thread;
use std::time::{Duration, Instant};

use testkit::{Server, roundtrip, sees_close};

const BIN: &str = env!("CARGO_BIN_EXE_stage04-min-heap");

fn start(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start(BIN, &all)
}

/// The targets of the server's descriptors (`anon_inode:[timerfd]`, …).
fn descriptors(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "ex4.1 (medium): the epoll_wait timeout instead of a timerfd (--no-timerfd)"]
fn ex4_1_timeouts_work_without_a_timerfd() {
    let server = start(&["--no-timerfd", "--idle-timeout-ms", "300"]);
    let fds = descriptors(server.pid());
    assert!(
        !fds.iter().any(|t| t.contains("timerfd")),
        "a timerfd is still open: {fds:?}"
    );
    let started = Instant::now();
    let mut idle = server.connect();
    let mut busy = server.connect();
    for _ in 0..3 {
        assert_eq!(roundtrip(&mut busy, b"x"), b"x");
        thread::sleep(Duration::from_millis(150));
    }
    assert!(sees_close(&mut idle), "the idle client was not closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "closed early: {waited:?}"
    );
    assert_eq!(roundtrip(&mut busy, b"y"), b"y");
}

#[test]
#[ignore = "ex4.2 (medium): a connection's whole life is bounded (--max-lifetime-ms)"]
fn ex4_2_even_a_busy_connection_ends_at_its_lifetime() {
    let server = start(&["--idle-timeout-ms", "5000", "--max-lifetime-ms", "600"]);
    let mut c = server.connect();
    let started = Instant::now();
    // Busy all along: the idle timer never fires, the lifetime does.
    loop {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let ok = std::io::Write::write_all(&mut c, b"ping").is_ok() && {
            let mut back = [0u8; 4];
            std::io::Read::read_exact(&mut c, &mut back).is_ok()
        };
        if !ok {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "never closed");
        thread::sleep(Duration::from_millis(50));
    }
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(550),
        "closed early: {lived:?}"
    );
}

#[test]
#[ignore = "ex4.3 (easy): SIGUSR1 prints the timers and the nearest deadline on stdout"]
fn ex4_3_sigusr1_reports_timers_and_the_next_deadline() {
    let mut server = start(&["--idle-timeout-ms", "10000"]);
    let mut clients: Vec<_> = (0..2).map(|_| server.connect()).collect();
    for c in &mut clients {
        assert_eq!(roundtrip(c, b"x"), b"x");
    }
    server.signal("USR1");
    let line = server.read_stdout_line().expect("a line on stdout");
    // "timers 2 next-in-ms 9987"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{line:?}");
    assert_eq!(&words[..3], ["timers", "2", "next-in-ms"], "{line:?}");
    let ms: u64 = words[3].parse().expect("a number of milliseconds");
    assert!((9000..=10000).contains(&ms), "{line:?}");
    assert_eq!(roundtrip(&mut clients[0], b"y"), b"y");
}
