//! Black-box tests of idle timeouts and signals. stage04 runs this file
//! against its own binary, all but `a_signal_pipe_never_blocks` (its
//! signals come through a signalfd): the behaviour must not change when
//! the timer structure and the signal plumbing do.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{PATIENCE, Server, roundtrip, sees_close};

const BIN: &str = env!("CARGO_BIN_EXE_stage03-timer-list");

/// The flags that set how late a timer may fire, at most `TICK_MS`.
/// stage03 checks timers on a SIGALRM tick; stage04 has no tick and fires
/// on time, so it needs none.
const TICK_ARGS: &[&str] = &["--tick-ms", "100"];
/// The flags that make the loop wake as often as possible.
const BUSY_ARGS: &[&str] = &["--tick-ms", "1"];

const TIMEOUT_MS: u64 = 600;
const TICK_MS: u64 = 100;

fn start(idle_ms: u64) -> Server {
    let idle = idle_ms.to_string();
    let mut args = vec!["--addr", "127.0.0.1:0", "--idle-timeout-ms", &idle];
    args.extend_from_slice(TICK_ARGS);
    Server::start(BIN, &args)
}

/// Waits for the server to close `stream` and returns when that happened.
fn closed_at(stream: &mut TcpStream) -> Instant {
    assert!(sees_close(stream), "the connection was never closed");
    Instant::now()
}

#[test]
fn an_idle_client_is_closed_after_the_timeout_not_before() {
    let server = start(TIMEOUT_MS);
    let mut client = server.connect();
    // The server's last activity is after `start`, so its deadline is at
    // least `start + timeout`.
    let start = Instant::now();
    assert_eq!(roundtrip(&mut client, b"hello"), b"hello");
    let elapsed = closed_at(&mut client) - start;
    let timeout = Duration::from_millis(TIMEOUT_MS);
    assert!(
        elapsed >= timeout,
        "closed after {elapsed:?}, before {timeout:?}"
    );
    // A timer fires at most one tick late; the rest is margin for a busy
    // machine.
    let latest = timeout + Duration::from_millis(TICK_MS) + Duration::from_millis(1500);
    assert!(elapsed <= latest, "closed only after {elapsed:?}");
}

#[test]
fn a_client_that_never_sends_is_closed_too() {
    let server = start(TIMEOUT_MS);
    let start = Instant::now();
    let mut client = server.connect();
    let elapsed = closed_at(&mut client) - start;
    assert!(elapsed <= Duration::from_millis(TIMEOUT_MS + TICK_MS + 1500));
}

#[test]
fn activity_every_third_of_the_timeout_keeps_a_client_connected() {
    let server = start(TIMEOUT_MS);
    let mut client = server.connect();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(3 * TIMEOUT_MS) {
        let msg = format!("ping {i}");
        assert_eq!(
            roundtrip(&mut client, msg.as_bytes()),
            msg.as_bytes(),
            "dropped after {:?}",
            start.elapsed()
        );
        i += 1;
        thread::sleep(Duration::from_millis(TIMEOUT_MS / 3));
    }
    // And once it stops, it is closed.
    assert!(sees_close(&mut client));
}

#[test]
fn a_thousand_idle_clients_all_expire() {
    // 1,000 sockets here and as many in the server, with room to spare.
    if !testkit::enough_descriptors(2100) {
        return;
    }
    let server = start(TIMEOUT_MS);
    let mut clients: Vec<TcpStream> = (0..1000).map(|_| server.connect()).collect();
    assert_eq!(roundtrip(&mut clients[999], b"last"), b"last");
    let start = Instant::now();
    for c in &mut clients {
        assert!(sees_close(c));
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed <= Duration::from_millis(TIMEOUT_MS + TICK_MS) + PATIENCE / 2,
        "the last client was closed only after {elapsed:?}"
    );
}

/// Both ends of the self-pipe are non-blocking: a handler that writes to a
/// full blocking pipe never returns, and a loop that drains a blocking pipe
/// to `WouldBlock` waits for ever on the read after the last byte. Read in
/// the server's /proc: the self-pipe is the pipe its epoll instance watches
/// (an fdinfo `tfd:` line), with the other fd of the same pipe; the flags
/// are octal, and O_NONBLOCK is 04000.
#[test]
fn a_signal_pipe_never_blocks() {
    let server = start(60_000);
    let pid = server.pid();
    let target = |fd: &str| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let fdinfo = |fd: &str| std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let epoll = fds
        .iter()
        .find(|fd| target(fd) == "anon_inode:[eventpoll]")
        .expect("no epoll instance");
    let watched: Vec<String> = fdinfo(epoll)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("tfd:")?
                .split_whitespace()
                .next()
                .map(String::from)
        })
        .collect();
    let pipe = watched
        .iter()
        .map(|fd| target(fd))
        .find(|t| t.starts_with("pipe:"))
        .expect("epoll watches no pipe: where is the self-pipe?");
    let ends: Vec<&String> = fds.iter().filter(|fd| target(fd) == pipe).collect();
    assert_eq!(
        ends.len(),
        2,
        "the self-pipe {pipe} has {} ends open",
        ends.len()
    );
    for fd in ends {
        let flags = fdinfo(fd)
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap();
        assert!(
            flags & 0o4000 != 0,
            "the self-pipe's fd {fd} is blocking: a handler writing to it when full would \
             never return, and draining it blocks after the last byte (make it O_NONBLOCK)"
        );
    }
}

fn clean_exit_on(signal: &str) {
    let mut server = start(60_000);
    let mut clients: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    for c in &mut clients {
        assert_eq!(roundtrip(c, b"hi"), b"hi");
    }
    server.signal(signal);
    let status = server
        .wait_exit(Duration::from_secs(1))
        .unwrap_or_else(|| panic!("still running 1 s after SIG{signal}"));
    assert!(status.success(), "exit status {status:?}");
    for c in &mut clients {
        assert!(sees_close(c), "a client did not see EOF");
    }
}

#[test]
fn sigterm_closes_every_client_and_exits_zero() {
    clean_exit_on("TERM");
}

#[test]
fn sigint_closes_every_client_and_exits_zero() {
    clean_exit_on("INT");
}

/// Timer and signal events interleave with a large echo; none of that may
/// show in the bytes.
#[test]
fn echo_is_exact_while_the_loop_wakes_often() {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(BUSY_ARGS);
    let server = Server::start(BIN, &args);
    let data = testkit::payload(8 << 20);
    let back = testkit::echo_large(server.addr, &data);
    assert!(back == data, "echo differs");
    let mut c = server.connect();
    assert_eq!(roundtrip(&mut c, b"still"), b"still");
}
