//! What a burst costs: opens N connections at once against a fresh server,
//! each sending a few bytes and half-closing, reads every answer to EOF,
//! and counts the connections that got their echo back. Several runs, a new
//! server each, then min / median / max.
//!
//! ```text
//! cargo run --release -p stage05-prefork --example burst -- \
//!     --runs 5 --conns 2000 -- --workers 2 --dispatch pass
//! ```
//!
//! `--server PATH` measures another build of the server (by default, the
//! `stage05-prefork` binary built next to this example); everything after
//! `--` goes to the server, after `--addr 127.0.0.1:0`.

use std::io;
use std::path::PathBuf;

use testkit::{Server, burst_with, raise_fd_limit};

struct Options {
    server: PathBuf,
    runs: usize,
    conns: usize,
    server_args: Vec<String>,
}

fn options() -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/examples/burst -> target/release/stage05-prefork
    let mut server = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("stage05-prefork"))
        .ok_or("cannot find the server binary: use --server")?;
    let (mut runs, mut conns, mut server_args) = (5, 2000, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--server" => server = PathBuf::from(value("--server")?),
            "--runs" => {
                runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--conns" => {
                conns = value("--conns")?
                    .parse()
                    .map_err(|e| format!("--conns: {e}"))?
            }
            "--" => server_args = args.by_ref().collect(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        server,
        runs,
        conns,
        server_args,
    })
}

/// One run's outcome: answered, closed without an answer (EOF or reset),
/// and anything else (a timeout, a short answer).
fn run(options: &Options) -> (usize, usize, usize) {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend(options.server_args.iter().map(String::as_str));
    // Its stderr (a line per dropped connection, in some builds) is
    // captured by testkit and dropped, not shown.
    let server = Server::start(&options.server.to_string_lossy(), &args);
    let request = b"burst";
    let answers = burst_with(server.addr, options.conns, request, true);
    let (mut answered, mut closed, mut other) = (0, 0, 0);
    for answer in &answers {
        match answer {
            Ok(bytes) if bytes == request => answered += 1,
            Ok(bytes) if bytes.is_empty() => closed += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => closed += 1,
            // Writing or half-closing after the server's reset.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => closed += 1,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => closed += 1,
            _ => other += 1,
        }
    }
    (answered, closed, other)
}

fn min_median_max(mut values: Vec<usize>) -> String {
    values.sort_unstable();
    let median = values[values.len() / 2];
    format!("{} / {} / {}", values[0], median, values[values.len() - 1])
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("burst: {e}");
            std::process::exit(2);
        }
    };
    raise_fd_limit(3 * options.conns as u64 + 100);
    let (mut answered, mut closed) = (Vec::new(), Vec::new());
    for i in 1..=options.runs.max(1) {
        let (a, c, o) = run(&options);
        println!(
            "run {i}: {a} of {} answered, {c} closed unanswered, {o} other",
            options.conns
        );
        answered.push(a);
        closed.push(c);
    }
    println!(
        "answered (min / median / max): {}",
        min_median_max(answered)
    );
    println!(
        "closed unanswered (min / median / max): {}",
        min_median_max(closed)
    );
}
