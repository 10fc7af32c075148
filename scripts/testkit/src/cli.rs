//! What every stage's command line owes a newcomer, checked the same way in
//! each stage's `tests/cli.rs`: a failure is one line that carries its
//! cause, `--addr` takes a host name, and a `--trace` file that cannot be
//! written is named.

use std::process::{Command, Output};

use crate::Server;

/// Runs the server `bin` with `args` to its exit, with the environment
/// variable `var` set to 1 and no other backtrace variable.
pub fn run(bin: &str, args: &[&str], var: &str) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env(var, "1")
        .output()
        .expect("run the server")
}

/// A failure is one line on stderr, `error: ` and then the cause chain,
/// even where RUST_BACKTRACE is set; RUST_LIB_BACKTRACE=1 asks for the
/// trace. The failure tried here is an address already in use; `what` is
/// how the stage words it ("cannot listen on ADDR", "cannot start on ADDR").
pub fn a_failure_is_one_line_with_its_cause(bin: &str, what: &str) {
    let server = Server::start(bin, &["--addr", "127.0.0.1:0"]);
    let taken = server.addr.to_string();
    let out = run(bin, &["--addr", &taken], "RUST_BACKTRACE");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started on an address in use");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected = format!("error: cannot {what} {taken}: Address already in use (os error 98)\n");
    assert_eq!(stderr, expected);
    let traced = run(bin, &["--addr", &taken], "RUST_LIB_BACKTRACE");
    let stderr = String::from_utf8_lossy(&traced.stderr);
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.lines().count() > 1, "no trace: {stderr}");
}

/// `--addr` takes a host name: it is resolved, and the server listens on
/// its first address; a name with no address is refused, and named.
pub fn a_host_name_is_resolved(bin: &str) {
    let server = Server::start(bin, &["--addr", "localhost:0"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    drop(server.connect());
    let out = run(bin, &["--addr", "no-such-host.invalid:0"], "RUST_BACKTRACE");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "it started on a name with no address"
    );
    assert!(stderr.contains("'no-such-host.invalid:0'"), "{stderr}");
}

/// `--trace FILE` in a folder that does not exist: the server does not
/// start, and says which file in one line, before it listens (no
/// `listening on` line: a server that cannot record what was asked for
/// does not run without it).
pub fn a_timeline_that_cannot_be_written_is_named(bin: &str) {
    let file = "/nonexistent-folder/timeline.json";
    let out = run(
        bin,
        &["--addr", "127.0.0.1:0", "--trace", file],
        "RUST_BACKTRACE",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: cannot record a timeline in {file}: No such file or directory (os error 2)\n"
        )
    );
    assert!(
        out.stdout.is_empty(),
        "it listened anyway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
