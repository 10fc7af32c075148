//! Back-pressure on the master-worker channel, black-box: a burst larger
//! than the listen backlog, a stopped worker whose channel fills, a worker
//! killed with connections queued for it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use stage05_prefork::channel::QUEUE_BOUND;
use testkit::{PATIENCE, Server, burst_with, eventually, process_state, roundtrip, sees_close};

const BIN: &str = env!("CARGO_BIN_EXE_stage05-prefork");

/// The dispatch modes, as flags.
const MODES: [&[&str]; 4] = [
    &["--dispatch", "pass"],
    &["--dispatch", "shared"],
    &["--dispatch", "shared", "--exclusive"],
    &["--dispatch", "reuseport"],
];

const BURST: usize = 2000;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let workers: &[&str] = if extra.contains(&"--workers") {
        &[]
    } else {
        &["--workers", "2"]
    };
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(workers);
    args.extend_from_slice(extra);
    args
}

fn start(extra: &[&str]) -> Server {
    Server::start(BIN, &args(extra))
}

/// One worker's line in the SIGUSR2 status.
#[derive(Debug, Clone, Copy)]
struct Channel {
    pid: u32,
    queued: u64,
    sent: u64,
}

/// Asks the master for `channels PID:QUEUED:SENT:RECEIVED … accepting|paused`
/// (SIGUSR2): one entry per worker, and whether it is accepting.
fn channels(server: &mut Server) -> (Vec<Channel>, bool) {
    server.signal("USR2");
    let line = server.read_stdout_line().expect("status line");
    let mut words: Vec<&str> = line
        .trim()
        .strip_prefix("channels ")
        .unwrap_or_else(|| panic!("unexpected status line {line:?}"))
        .split(' ')
        .collect();
    let accepting = match words.pop() {
        Some("accepting") => true,
        Some("paused") => false,
        other => panic!("no accepting|paused in {line:?}: {other:?}"),
    };
    let workers = words
        .iter()
        .map(|w| {
            let f: Vec<u64> = w.split(':').map(|x| x.parse().expect("number")).collect();
            Channel {
                pid: f[0] as u32,
                queued: f[1],
                sent: f[2],
            }
        })
        .collect();
    (workers, accepting)
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("kill");
}

/// SIGSTOPs `pid` and returns once it is stopped.
fn stop(pid: u32) {
    signal(pid, Signal::SIGSTOP);
    assert!(
        eventually(PATIENCE, || process_state(pid) == Some('T')),
        "worker {pid} did not stop"
    );
}

/// Counts the answers of a burst by what they were: the echo, or what else.
fn tally(answers: &[io::Result<Vec<u8>>], request: &[u8]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for a in answers {
        let kind = match a {
            Ok(bytes) if bytes == request => "echoed".to_string(),
            Ok(bytes) if bytes.is_empty() => "closed unanswered".to_string(),
            Ok(bytes) => format!("{} bytes, not the echo", bytes.len()),
            Err(e) => e.kind().to_string(),
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_burst_of_two_thousand_is_answered_in_every_mode() {
    // The test holds 2,000 client sockets; the server as many, inherited.
    if !testkit::enough_descriptors(3 * BURST as u64) {
        return;
    }
    for mode in MODES {
        let server = start(mode);
        let request = b"burst";
        let answers = burst_with(server.addr, BURST, request, true);
        let counts = tally(&answers, request);
        assert_eq!(counts.get("echoed"), Some(&BURST), "{mode:?}: {counts:?}");
        let mut lone = server.connect();
        assert_eq!(roundtrip(&mut lone, b"after"), b"after", "{mode:?}");
    }
}

/// Raises the descriptor limit for a test that fills channels and queues:
/// about 1,100 clients here, as many sockets in the server. False (and
/// the test is skipped, saying so) if the hard limit is too low.
fn enough_descriptors() -> bool {
    testkit::enough_descriptors(4096)
}

/// A client that has sent its number and waits for the echo.
struct Client {
    stream: TcpStream,
    msg: Vec<u8>,
}

fn open_client(server: &Server, k: usize) -> Client {
    let mut stream = server.connect();
    let msg = format!("{k:06}").into_bytes();
    stream.write_all(&msg).expect("send");
    Client { stream, msg }
}

/// Reads every client's echo. Returns how many got it; every other one
/// must have seen its connection closed (not a hang). Each answered client
/// then half-closes and must see the server close: no copy of its socket
/// is left open anywhere (a worker forked while the master held it, say).
fn answered(clients: &mut [Client]) -> u64 {
    let mut answered = 0;
    for c in clients.iter_mut() {
        let mut back = vec![0u8; c.msg.len()];
        match c.stream.read_exact(&mut back) {
            Ok(()) => {
                assert_eq!(back, c.msg);
                answered += 1;
                c.stream.shutdown(Shutdown::Write).expect("half-close");
                assert!(
                    sees_close(&mut c.stream),
                    "an answered client was never closed"
                );
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ),
                "a lost client must see its connection closed, not {e}"
            ),
        }
    }
    answered
}

/// Waits until the master has taken in all `opened` connections (each is
/// either in a channel or queued) and returns the channels' status.
fn settled(server: &mut Server, opened: u64) -> Vec<Channel> {
    let mut last = Vec::new();
    let done = eventually(PATIENCE, || {
        last = channels(server).0;
        last.iter().map(|c| c.sent + c.queued).sum::<u64>() == opened
    });
    assert!(
        done,
        "the master did not take {opened} connections in: {last:?}"
    );
    last
}

#[test]
fn a_killed_worker_loses_only_what_its_channel_held() {
    if !enough_descriptors() {
        return;
    }
    let mut server = start(&["--dispatch", "pass"]);
    let (workers, _) = channels(&mut server);
    let (victim, survivor) = (workers[0].pid, workers[1].pid);
    // Stop both workers, one after the other, and open connections until
    // both channels are full and both queues at their bound: the master
    // stops accepting. (Had the survivor run on, it would have taken every
    // connection once the victim's channel was full.)
    stop(victim);
    let mut clients = Vec::new();
    while channels(&mut server).0[0].queued == 0 {
        assert!(
            clients.len() < 10_000,
            "the stopped worker's channel never filled"
        );
        clients.push(open_client(&server, clients.len()));
    }
    stop(survivor);
    while channels(&mut server).1 {
        assert!(clients.len() < 20_000, "the master never stopped accepting");
        clients.push(open_client(&server, clients.len()));
    }
    // A few more wait in the listen backlog.
    for _ in 0..10 {
        clients.push(open_client(&server, clients.len()));
    }
    let (full, _) = channels(&mut server);
    assert_eq!(full[0].queued, QUEUE_BOUND as u64, "{full:?}");
    assert_eq!(full[1].queued, QUEUE_BOUND as u64, "{full:?}");

    // The survivor resumes: it empties its channel and queue, and the
    // master takes the backlog in. The victim's queue is still waiting.
    signal(survivor, Signal::SIGCONT);
    let opened = clients.len() as u64;
    let before = settled(&mut server, opened);
    assert_eq!(before[0].queued, QUEUE_BOUND as u64, "{before:?}");
    assert_eq!(before[1].queued, 0, "{before:?}");

    // What the victim's channel held dies with it; what the master had
    // queued for it goes to the survivor.
    signal(victim, Signal::SIGKILL);
    let got = answered(&mut clients);
    assert_eq!(got, opened - before[0].sent, "{before:?}");
    let (after, _) = channels(&mut server);
    assert_eq!(after[1].pid, survivor);
    assert_eq!(after[1].sent, opened - before[0].sent, "{after:?}");
    let mut lone = server.connect();
    assert_eq!(roundtrip(&mut lone, b"after"), b"after");
}

#[test]
fn with_every_queue_full_the_backlog_waits_for_the_replacement() {
    if !enough_descriptors() {
        return;
    }
    let mut server = start(&["--dispatch", "pass", "--workers", "1"]);
    let (workers, _) = channels(&mut server);
    let only = workers[0].pid;
    stop(only);
    // Fill its channel, then its queue: the master stops accepting.
    let mut clients = Vec::new();
    while channels(&mut server).1 {
        assert!(clients.len() < 10_000, "the master never stopped accepting");
        clients.push(open_client(&server, clients.len()));
    }
    let (paused, accepting) = channels(&mut server);
    assert!(!accepting);
    assert_eq!(paused[0].queued, QUEUE_BOUND as u64);
    let taken_in = paused[0].sent + paused[0].queued;
    // More clients wait in the listen backlog, not accepted.
    for _ in 0..10 {
        clients.push(open_client(&server, clients.len()));
    }
    let (still, accepting) = channels(&mut server);
    assert!(!accepting);
    assert_eq!(
        still[0].sent + still[0].queued,
        taken_in,
        "accepted while paused"
    );

    // The replacement gets the queue and the backlog; only what the dead
    // worker's channel held is lost.
    signal(only, Signal::SIGKILL);
    let got = answered(&mut clients);
    assert_eq!(got, clients.len() as u64 - paused[0].sent);
    let (after, accepting) = channels(&mut server);
    assert!(accepting);
    assert_ne!(after[0].pid, only);
}
