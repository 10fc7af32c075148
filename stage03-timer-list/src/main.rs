//! Command line for stage 3. All the server logic is in the library.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use argh::FromArgs;
use stage03_timer_list::{Config, Reactor, Trigger, trace};

/// Stage 3: the epoll echo Reactor with idle timeouts (a sorted timer list,
/// checked on a SIGALRM tick) and graceful shutdown on SIGTERM/SIGINT.
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

    /// lt (level-triggered) or et (edge-triggered) for connection sockets;
    /// default lt
    #[argh(option, default = "Trigger::Level")]
    trigger: Trigger,

    /// lt or et for the listening socket; default lt
    #[argh(option, default = "Trigger::Level")]
    listen_trigger: Trigger,

    /// connections past this many are accepted and closed at once
    /// (default 10000)
    #[argh(option, default = "10_000")]
    max_conns: usize,

    /// close a connection after this many milliseconds without a read or a
    /// write (default 15000)
    #[argh(option, default = "15_000")]
    idle_timeout_ms: u64,

    /// how often, in milliseconds, SIGALRM wakes the loop to expire idle
    /// connections (default 1000)
    #[argh(option, default = "1_000")]
    tick_ms: u64,

    /// record the loop's timeline in FILE (Chrome trace format): open it
    /// at ui.perfetto.dev or in chrome://tracing
    #[argh(option)]
    trace: Option<PathBuf>,
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
/// `: ` (anyhow's `{:#}`), such as `error: cannot listen on
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
    if let Some(path) = &args.trace {
        trace::start(path, "stage03")
            .with_context(|| format!("cannot record a timeline in {}", path.display()))?;
    }
    let config = Config {
        addr: args.addr,
        trigger: args.trigger,
        listen_trigger: args.listen_trigger,
        max_conns: args.max_conns,
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        tick: Duration::from_millis(args.tick_ms.max(1)),
    };
    let mut reactor =
        Reactor::bind(config).with_context(|| format!("cannot listen on {}", args.addr))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", reactor.local_addr()?)?;
    out.flush()?;
    drop(out);
    // nc takes the host and the port as two arguments, not HOST:PORT.
    let addr = reactor.local_addr()?;
    eprintln!(
        "try it: nc {} {} (type a line, it comes back)",
        addr.ip(),
        addr.port()
    );
    reactor.run()?;
    // A clean exit: the timeline's last events and its closing `]`.
    trace::finish();
    eprintln!("shut down cleanly");
    Ok(())
}
