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

#[test]
#[ignore = "ex3.4 (hard): a hashed timing wheel behind --timers wheel, turned by the tick"]
fn ex3_4_a_timing_wheel_keeps_every_timeout_and_fires_none_early() {
    // 100 ticks to the timeout: more than a small wheel has slots, so a
    // timer must wait out whole turns of the wheel.
    let args = [
        "--timers",
        "wheel",
        "--tick-ms",
        "10",
        "--idle-timeout-ms",
        "1000",
    ];
    let server = start(&args);
    let timeout = Duration::from_millis(1000);
    // Idle: closed after the timeout, not before, at most a tick late (and
    // a margin for a busy machine). Watched from a thread of its own.
    let mut idle = server.connect();
    let connected = Instant::now();
    let watcher = thread::spawn(move || sees_close(&mut idle).then(|| connected.elapsed()));
    // Busy: a message every third of the timeout keeps it.
    let mut busy = server.connect();
    let mut i = 0;
    while connected.elapsed() < 3 * timeout {
        let msg = format!("ping {i}");
        assert_eq!(
            roundtrip(&mut busy, msg.as_bytes()),
            msg.as_bytes(),
            "the busy client was dropped after {:?}",
            connected.elapsed()
        );
        i += 1;
        thread::sleep(timeout / 3);
    }
    let lived = watcher
        .join()
        .unwrap()
        .expect("the idle client was never closed");
    assert!(lived >= timeout, "closed early, after {lived:?}");
    assert!(
        lived <= timeout + Duration::from_millis(1500),
        "closed late, after {lived:?}"
    );
    assert!(
        sees_close(&mut busy),
        "once quiet, the busy client is closed too"
    );
}

#[test]
#[ignore = "ex3.4 (hard): a hashed timing wheel behind --timers wheel, turned by the tick"]
fn ex3_4_a_thousand_timers_on_the_wheel_all_expire() {
    if !testkit::enough_descriptors(2100) {
        return;
    }
    let server = start(&[
        "--timers",
        "wheel",
        "--tick-ms",
        "20",
        "--idle-timeout-ms",
        "500",
    ]);
    let mut clients: Vec<_> = (0..1000).map(|_| server.connect()).collect();
    // Spread over several slots: some clients talk once more on the way.
    for (k, c) in clients.iter_mut().enumerate().step_by(7) {
        assert_eq!(roundtrip(c, &[k as u8]), [k as u8]);
    }
    let started = Instant::now();
    for c in &mut clients {
        assert!(sees_close(c), "a client was never closed");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server survived all that and still serves.
    let mut c = server.connect();
    assert_eq!(roundtrip(&mut c, b"after"), b"after");
}

#[test]
#[ignore = "ex3.5 (easy): each tick says how many timers it found and how many it expired"]
fn ex3_5_each_tick_says_what_it_found() {
    use testkit::PATIENCE;
    use testkit::timeline::Timeline;

    let path = std::env::temp_dir().join(format!("ex3_5-{}.json", std::process::id()));
    let mut server = start(&[
        "--tick-ms",
        "20",
        "--idle-timeout-ms",
        "300",
        "--trace",
        path.to_str().unwrap(),
    ]);
    let mut idle = server.connect();
    assert!(sees_close(&mut idle), "the idle client was not closed");
    server.signal("TERM");
    let exit = server.wait_exit(PATIENCE).expect("the server exits");
    assert!(exit.success(), "exit {exit:?}");
    let timeline = Timeline::read(&path);
    let _ = std::fs::remove_file(&path);

    let ticks: Vec<_> = timeline.named("tick").collect();
    let field = |span: &testkit::timeline::Span, key: &str| {
        span.num(key)
            .unwrap_or_else(|| panic!("a tick span without `{key}` (a count): {:?}", span.args))
    };
    let expired: u64 = ticks.iter().map(|t| field(t, "expired")).sum();
    assert_eq!(
        expired, 1,
        "the ticks expired {expired} timers; one client idled out"
    );
    let idle_ticks = ticks
        .iter()
        .filter(|t| field(t, "timers") >= 1 && field(t, "expired") == 0)
        .count();
    assert!(
        idle_ticks >= 3,
        "{idle_ticks} ticks found a timer not yet due: with a 20 ms tick and a 300 ms timeout, \
         the loop wakes many times for nothing"
    );
}
