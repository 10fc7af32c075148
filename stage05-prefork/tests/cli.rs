//! The command line: what a newcomer types first, and what a mistake
//! gets back.

use std::process::Output;

use testkit::cli;

const BIN: &str = env!("CARGO_BIN_EXE_stage05-prefork");

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

/// `--trace` into a folder that does not exist is refused, and named.
#[test]
fn a_timeline_that_cannot_be_written_is_named() {
    cli::a_timeline_that_cannot_be_written_is_named(BIN);
}
