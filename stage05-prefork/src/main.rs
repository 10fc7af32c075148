//! Command line for stage 5. All the server logic is in the library.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use argh::FromArgs;
use stage05_prefork::{Config, Dispatch, Master, MasterConfig, Trigger, trace};

/// Stage 5: a prefork echo server: a master and worker processes, each
/// worker running the epoll Reactor of stage 4.
#[derive(FromArgs)]
struct Args {
    /// address to listen on, IP:PORT or HOST:PORT; a host name is
    /// resolved and its first address taken (default 127.0.0.1:8080; port 0
    /// picks a free port)
    #[argh(
        option,
        default = "SocketAddr::from(([127, 0, 0, 1], 8080))",
        from_str_fn(first_address)
    )]
    addr: SocketAddr,

    /// number of worker processes (default: the number of CPUs)
    #[argh(option, default = "default_workers()")]
    workers: usize,

    /// how connections reach the workers: pass (the master accepts and
    /// passes each to the least-loaded worker), shared (every worker
    /// accepts from one listener) or reuseport (a listener per worker);
    /// default pass
    #[argh(option, default = "Dispatch::Pass")]
    dispatch: Dispatch,

    /// with --dispatch shared: register the listener with EPOLLEXCLUSIVE,
    /// so a connection wakes one worker instead of all
    #[argh(switch)]
    exclusive: bool,

    /// lt (level-triggered) or et (edge-triggered) for connection sockets;
    /// default lt
    #[argh(option, default = "Trigger::Level")]
    trigger: Trigger,

    /// lt or et for the workers' listening sockets; default lt
    #[argh(option, default = "Trigger::Level")]
    listen_trigger: Trigger,

    /// per worker: connections past this many are closed at once
    /// (default 10000)
    #[argh(option, default = "10_000")]
    max_conns: usize,

    /// close a connection after this many milliseconds without a read or a
    /// write (default 15000)
    #[argh(option, default = "15_000")]
    idle_timeout_ms: u64,

    /// record the loop's timeline in FILE (Chrome trace format): open it
    /// at ui.perfetto.dev or in chrome://tracing; every process, the
    /// master and each worker, writes into the one file
    #[argh(option)]
    trace: Option<PathBuf>,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `--addr`: `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`. A host
/// name is resolved by the system's resolver (`ToSocketAddrs`) and its
/// first address taken: listening on each of a name's addresses would take
/// a listener per address, which no stage needs for its lesson.
fn first_address(text: &str) -> Result<SocketAddr, String> {
    // argh prints the flag and its value before the reason.
    let mut addrs = text.to_socket_addrs().map_err(|e| e.to_string())?;
    addrs
        .next()
        .ok_or_else(|| "the name has no address".to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints a failure as one line: `error: ` and the cause chain, joined by
/// `: ` (anyhow's `{:#}`), such as `error: cannot start on
/// 127.0.0.1:80: Permission denied (os error 13)`. Returning the error
/// from `main` instead would print its `Debug` form: several lines, and a
/// stack trace whenever `RUST_BACKTRACE` is set, as many set it for their
/// panics. Where the error was made is shown only when asked for, with
/// `RUST_LIB_BACKTRACE=1` (the variable std and anyhow read for errors'
/// traces, apart from panics').
fn report(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
    if std::env::var_os("RUST_LIB_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("{}", e.backtrace());
    }
}

/// Everything `main` does; a failure comes back here to be reported.
fn run() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    // Before the workers are forked: they inherit the open file.
    if let Some(path) = &args.trace {
        trace::start(path, "stage05 master")
            .with_context(|| format!("cannot record a timeline in {}", path.display()))?;
    }
    let config = MasterConfig {
        addr: args.addr,
        workers: args.workers,
        dispatch: args.dispatch,
        exclusive: args.exclusive,
        worker: Config {
            trigger: args.trigger,
            listen_trigger: args.listen_trigger,
            max_conns: args.max_conns,
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        },
    };
    let mut master =
        Master::start(config).with_context(|| format!("cannot start on {}", args.addr))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", master.local_addr())?;
    out.flush()?;
    drop(out);
    // nc takes the host and the port as two arguments, not HOST:PORT.
    eprintln!(
        "try it: nc {} {} ({} workers, dispatch {:?}; master pid {})",
        master.local_addr().ip(),
        master.local_addr().port(),
        args.workers,
        args.dispatch,
        std::process::id()
    );
    let report = master.run()?;
    // Every worker has exited: no process writes to the timeline but this.
    trace::finish();
    if report.is_clean() {
        eprintln!("shut down cleanly");
        return Ok(());
    }
    for (pid, exit) in report.exits.iter().filter(|(_, exit)| !exit.is_clean()) {
        eprintln!("worker {pid}: {exit}");
    }
    if report.grace_ran_out {
        eprintln!("(workers still running when the grace ran out got SIGKILL)");
    }
    // A failing exit status, so whoever started us (systemd, a script)
    // learns it without reading the log; the workers are gone either way.
    bail!("shut down, but not every worker exited cleanly")
}
