//! The command line: what a newcomer types first, and what a mistake
//! gets back.

use std::process::Output;
use std::time::{Duration, Instant};

use testkit::{Server, cli};

const BIN: &str = env!("CARGO_BIN_EXE_stage06-full");

/// Runs the server with `args` to its exit, with `var` set to 1.
fn run(args: &[&str], var: &str) -> Output {
    cli::run(BIN, args, var)
}

/// A failure is one line with its cause (`testkit::cli` says what exactly).
#[test]
fn a_failure_is_one_line_with_its_cause() {
    cli::a_failure_is_one_line_with_its_cause(BIN, "start on");
}

/// `--addr` takes a host name.
#[test]
fn a_host_name_is_resolved() {
    cli::a_host_name_is_resolved(BIN);
}

/// `--workers 0` is refused, not quietly run as one worker.
#[test]
fn zero_workers_are_refused() {
    let out = run(
        &["--addr", "127.0.0.1:0", "--workers", "0"],
        "RUST_BACKTRACE",
    );
    assert!(!out.status.success(), "--workers 0 was accepted");
    assert!(out.stdout.is_empty(), "it started listening");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --workers must be at least 1\n"
    );
}

/// An access log that cannot be opened is refused at once, in one line
/// that names it and says why, before the server listens or forks (each
/// worker failing to open it, and being restarted, took ten seconds of
/// garbled messages).
#[test]
fn an_access_log_that_cannot_be_opened_is_refused_before_any_worker_starts() {
    let started = Instant::now();
    let out = run(
        &[
            "--addr",
            "127.0.0.1:0",
            "--access-log",
            "/nonexistent/dir/a.log",
        ],
        "RUST_BACKTRACE",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!out.status.success(), "it was accepted");
    assert!(out.stdout.is_empty(), "it started listening");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --access-log /nonexistent/dir/a.log: No such file or directory (os error 2)\n"
    );
}

/// A `--root` that is missing, or is a file, is refused before the server
/// listens, in one line that says which of the two it is.
#[test]
fn a_root_that_is_missing_or_a_file_is_refused_saying_which() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for (root, why) in [
        ("/nonexistent/www", "does not exist"),
        (file, "not a directory"),
    ] {
        let out = run(&["--addr", "127.0.0.1:0", "--root", root], "RUST_BACKTRACE");
        assert!(!out.status.success(), "--root {root} was accepted");
        assert!(out.stdout.is_empty(), "it started listening");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("error: --root {root}: {why}\n")
        );
    }
}

/// The soft descriptor limit (a process's own file count) of `pid`.
fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    line.split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("soft limit")
}

/// Started under a soft limit of 256 with a hard limit that allows more,
/// the server raises the soft limit as far as `--max-conns` needs (its
/// workers inherit it); under a hard limit of 256 it says, at start, what
/// that allows.
#[test]
fn the_descriptor_limit_is_raised_or_its_shortfall_said() {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    if hard < 3000 {
        testkit::skip(&format!(
            "needs a hard descriptor limit of 3000, here {hard}"
        ));
        return;
    }
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--max-conns",
        "2000",
    ];
    let mut server = Server::start_under_ulimit("-Sn 256", BIN, &args);
    let workers = testkit::children_of(server.pid());
    assert_eq!(workers.len(), 1);
    assert!(
        soft_nofile(workers[0]) >= 2000,
        "{}",
        soft_nofile(workers[0])
    );
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(5)).is_some());
    assert!(
        !server.stderr_to_end().contains("note:"),
        "it complained though it could raise"
    );

    let mut server = Server::start_under_ulimit("-n 256", BIN, &args);
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(5)).is_some());
    let stderr = server.stderr_to_end();
    assert!(
        stderr.contains("--max-conns 2000 needs 2640 descriptors per worker, but the hard limit is 256: a worker holds about 192 connections"),
        "{stderr}"
    );
}

/// `--trace` into a folder that does not exist is refused, and named.
#[test]
fn a_timeline_that_cannot_be_written_is_named() {
    cli::a_timeline_that_cannot_be_written_is_named(BIN);
}
