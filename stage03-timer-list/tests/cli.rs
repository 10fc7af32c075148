//! The command line: what a newcomer types first, and what a mistake
//! gets back.

use testkit::cli;

const BIN: &str = env!("CARGO_BIN_EXE_stage03-timer-list");

/// A failure is one line with its cause (`testkit::cli` says what exactly).
#[test]
fn a_failure_is_one_line_with_its_cause() {
    cli::a_failure_is_one_line_with_its_cause(BIN, "listen on");
}

/// `--addr` takes a host name.
#[test]
fn a_host_name_is_resolved() {
    cli::a_host_name_is_resolved(BIN);
}

/// `--trace` into a folder that does not exist is refused, and named.
#[test]
fn a_timeline_that_cannot_be_written_is_named() {
    cli::a_timeline_that_cannot_be_written_is_named(BIN);
}
