//! The command line: what a newcomer types first, and what a mistake
//! gets back.

use std::process::{Command, Output};

use testkit::Server;

const BIN: &str = env!("CARGO_BIN_EXE_stage03-timer-list");

/// Runs the server with `args` to its exit, with `var` set to 1 and no
/// other backtrace variable.
fn run(args: &[&str], var: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env(var, "1")
        .output()
        .expect("run the server")
}

/// A failure is one line on stderr, `error: ` and then the cause chain,
/// even where RUST_BACKTRACE is set; RUST_LIB_BACKTRACE=1 asks for the
/// trace.
#[test]
fn a_failure_is_one_line_with_its_cause() {
    let server = Server::start(BIN, &["--addr", "127.0.0.1:0"]);
    let taken = server.addr.to_string();
    let out = run(&["--addr", &taken], "RUST_BACKTRACE");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started on an address in use");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected =
        format!("error: cannot listen on {taken}: Address already in use (os error 98)\n");
    assert_eq!(stderr, expected);
    let traced = run(&["--addr", &taken], "RUST_LIB_BACKTRACE");
    let stderr = String::from_utf8_lossy(&traced.stderr);
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.lines().count() > 1, "no trace: {stderr}");
}

/// `--addr` takes a host name: it is resolved, and the server listens on
/// its first address.
#[test]
fn a_host_name_is_resolved() {
    let server = Server::start(BIN, &["--addr", "localhost:0"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    drop(server.connect());
    let out = run(&["--addr", "no-such-host.invalid:0"], "RUST_BACKTRACE");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "it started on a name with no address"
    );
    assert!(stderr.contains("'no-such-host.invalid:0'"), "{stderr}");
}
