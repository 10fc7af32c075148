//! Command line for stage 6. All the server logic is in the library.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use argh::FromArgs;
use stage06_full::http::session::Timeouts;
use stage06_full::{
    Buffers, Config, Dispatch, Master, MasterConfig, Model, Steer, Stopped, Trigger, trace,
};

/// Stage 6: a prefork HTTP/1.1 static-file server (GET and HEAD).
#[derive(FromArgs)]
struct Args {
    /// address to listen on, IP:PORT or HOST:PORT (a host name's first
    /// address) (default 127.0.0.1:8080; port 0 picks a free port)
    #[argh(
        option,
        default = "SocketAddr::from(([127, 0, 0, 1], 8080))",
        from_str_fn(first_address)
    )]
    addr: SocketAddr,

    /// the directory to serve (default: the demo site in stage06-full/www)
    #[argh(option, default = "default_root()")]
    root: PathBuf,

    /// number of worker processes (default: the number of CPUs)
    #[argh(option, default = "default_workers()")]
    workers: usize,

    /// how connections reach the workers: pass, shared or reuseport
    /// (default pass; see stage05)
    #[argh(option, default = "Dispatch::Pass")]
    dispatch: Dispatch,

    /// with --dispatch shared: register the listener with EPOLLEXCLUSIVE
    #[argh(switch)]
    exclusive: bool,

    /// with --dispatch reuseport: hash (the kernel picks a worker's listener
    /// by a hash of the addresses) or cpu (worker i's listener takes the
    /// connections whose packets arrive on the i-th CPU: SO_INCOMING_CPU,
    /// Linux 6.1 and later; best with --pin on) (default hash)
    #[argh(option, default = "Steer::Hash")]
    steer: Steer,

    /// on or off: keep worker i on the i-th CPU the server may run on
    /// (sched_setaffinity, as nginx's worker_cpu_affinity auto) (default off)
    #[argh(option, default = "false", from_str_fn(on_off))]
    pin: bool,

    /// et or lt for connection sockets (default et, as nginx: level-triggered
    /// epoll re-polls every socket it reported on the next wait)
    #[argh(option, default = "Trigger::Edge")]
    trigger: Trigger,

    /// et or lt for the workers' listening sockets (default et: each
    /// wake-up accepts every connection waiting)
    #[argh(option, default = "Trigger::Edge")]
    listen_trigger: Trigger,

    /// seconds the kernel may hold a new connection back waiting for its
    /// request, so that it is accepted with it in hand (TCP_DEFER_ACCEPT);
    /// 0 turns it off (default 1)
    #[argh(option, default = "1")]
    defer_accept: u32,

    /// connection slots per worker, allocated at start; past them a client
    /// gets 503 (default 10000)
    #[argh(option, default = "10_000")]
    max_conns: usize,

    /// seconds an idle keep-alive connection is kept (default 15)
    #[argh(option, default = "15.0")]
    keepalive_timeout: f64,

    /// seconds a client has to send a complete request head; a slower one
    /// gets 408 (default 10)
    #[argh(option, default = "10.0")]
    header_timeout: f64,

    /// largest request body read (and discarded), in bytes; larger gets
    /// 413 (default 1048576)
    #[argh(option, default = "1 << 20")]
    max_body: u64,

    /// a file to append the access log to (Common Log Format), or off
    /// (default off)
    #[argh(option, default = "String::from(\"off\")")]
    access_log: String,

    /// seconds responses in flight get to finish after SIGTERM (default 3)
    #[argh(option, default = "3.0")]
    grace: f64,

    /// pooled (buffers lent to busy connections, the default) or
    /// per-connection (each connection keeps its read buffer for life and
    /// allocates its response buffers per response: for comparison)
    #[argh(option, default = "Buffers::Pooled")]
    buffers: Buffers,

    /// seconds a worker keeps a served file open and its metadata (and a
    /// small file's bytes) in memory before looking again; 0 turns the
    /// open-file cache off (default 1)
    #[argh(option, default = "1.0")]
    open_file_cache: f64,

    /// reactor (the event loop does everything, the default), proactor-sim
    /// (the event loop does the I/O, a thread pool per worker processes
    /// requests) or uring (the kernel does the I/O, through io_uring)
    #[argh(option, default = "Model::Reactor")]
    model: Model,

    /// threads in each worker's pool, for --model proactor-sim (default 4)
    #[argh(option, default = "4")]
    threads: usize,

    /// record the loop's timeline in FILE (Chrome trace format): open it
    /// at ui.perfetto.dev or in chrome://tracing; every process, the
    /// master and each worker, writes into the one file
    #[argh(option)]
    trace: Option<PathBuf>,
}

fn default_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/www"))
}

/// The demo site's large file, for ranges and `sendfile`: made at start,
/// sparse (64 MiB of zeros that take no disk), not committed (a large file
/// in git weighs on every clone). Rejected: a temporary copy of `www`
/// holding it (edits would wait for a restart; a link out of the root is
/// refused), and serving it from memory (`sendfile` needs a file).
const DEMO_BIG_FILE: &str = "big.bin";
const DEMO_BIG_SIZE: u64 = 64 << 20;

fn make_demo_big_file(root: &Path) -> io::Result<()> {
    match File::create_new(root.join(DEMO_BIG_FILE)) {
        Ok(file) => file.set_len(DEMO_BIG_SIZE),
        // Made by an earlier start.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{name} {s}: not a duration"))
}

/// `--addr`: a host name's first address (`ToSocketAddrs`); a listener per
/// address would serve them all, which no stage needs for its lesson.
fn first_address(text: &str) -> Result<SocketAddr, String> {
    // argh prints the flag and its value before the reason.
    text.to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "the name has no address".to_string())
}

/// Flags that cannot work are refused once, here, in one line, rather than
/// let every worker fail after the fork and the master restart them.
fn refuse_what_cannot_work(args: &Args) -> anyhow::Result<()> {
    // io_uring first: the tests and bench-models.sh probe for it with
    // `--model uring --max-conns 0`, and take the refusal of the second
    // flag to mean the first works.
    if args.model == Model::Uring
        && let Err(e) = stage06_full::sys::uring::available()
    {
        bail!("--model uring: io_uring is not available here ({e})");
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if args.max_conns == 0 {
        bail!("--max-conns must be at least 1");
    }
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    match std::fs::metadata(&args.root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("--root {}: not a directory", args.root.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("--root {}: does not exist", args.root.display())
        }
        Err(e) => return Err(e).with_context(|| format!("--root {}", args.root.display())),
    }
    if args.steer == Steer::Cpu && args.dispatch != Dispatch::ReusePort {
        bail!("--steer cpu needs --dispatch reuseport (each worker's own listener is labelled)");
    }
    Ok(())
}

/// Descriptors a worker needs besides its connections: its open-file cache
/// (up to 512), its own (epoll, signalfd, timerfd, channel, listener,
/// eventfd, log, ring) and the refused connections that linger (64).
const SPARE_DESCRIPTORS: u64 = 512 + 64 + 64;

/// Raises the soft descriptor limit as far as `--max-conns` needs, up to
/// the hard one (workers inherit it), and says once when that falls short,
/// rather than leave it to be found out from resets (accepting sheds).
fn fit_descriptors(max_conns: usize) -> anyhow::Result<()> {
    let want = max_conns as u64 + SPARE_DESCRIPTORS;
    let (soft, hard) = stage06_full::sys::raise_nofile(want).context("descriptor limit")?;
    if soft < want {
        let fit = soft.saturating_sub(64);
        eprintln!(
            "note: --max-conns {max_conns} needs {want} descriptors per worker, but the hard \
             limit is {hard}: a worker holds about {fit} connections at most (fewer while its \
             open-file cache holds files); raise it with `ulimit -Hn` or LimitNOFILE="
        );
    }
    Ok(())
}

/// `--access-log`: `off`, or the file to append to. Each worker opens it
/// after the fork (nginx opens logs in the master, for the workers to
/// inherit); opening it here first refuses a bad path at once, rather than
/// fail every worker at start and again at each of the master's restarts.
fn access_log(arg: &str) -> anyhow::Result<Option<PathBuf>> {
    if arg == "off" {
        return Ok(None);
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(arg)
        .with_context(|| format!("--access-log {arg}"))?;
    Ok(Some(PathBuf::from(arg)))
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("unknown value {other:?}: use on or off")),
    }
}

/// A failure is printed as one line, `error: ` and the cause chain (anyhow's
/// `{:#}`), such as `error: cannot start on 127.0.0.1:80: Permission denied
/// (os error 13)`. Returned from `main`, it would print its `Debug` form: several
/// lines, and a trace whenever `RUST_BACKTRACE` is set, as many set it for
/// panics. Here a trace needs `RUST_LIB_BACKTRACE=1`, read for errors alone.
fn main() -> ExitCode {
    let Err(e) = run() else {
        return ExitCode::SUCCESS;
    };
    eprintln!("error: {e:#}");
    if std::env::var_os("RUST_LIB_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("{}", e.backtrace());
    }
    ExitCode::FAILURE
}

/// Everything `main` does; a failure comes back here to be printed.
fn run() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    refuse_what_cannot_work(&args)?;
    fit_descriptors(args.max_conns)?;
    if args.root == default_root()
        && let Err(e) = make_demo_big_file(&args.root)
    {
        // The site works without it; only its link gets a 404.
        eprintln!("note: no {DEMO_BIG_FILE} in the demo site: {e}");
    }
    let config = master_config(&args)?;
    // Before the workers are forked: they inherit the open file.
    if let Some(path) = &args.trace {
        trace::start(path, "stage06 master")
            .with_context(|| format!("cannot record a timeline in {}", path.display()))?;
    }
    let mut master =
        Master::start(config).with_context(|| format!("cannot start on {}", args.addr))?;
    // stdout is line-buffered even into a pipe: this line goes out now.
    writeln!(io::stdout(), "listening on {}", master.local_addr())?;
    eprintln!(
        "serving {} at http://{}/ ({} workers, master pid {})",
        args.root.display(),
        master.local_addr(),
        args.workers,
        std::process::id()
    );
    let stopped = master.run()?;
    // Every worker has exited: no process writes to the timeline but this.
    trace::finish();
    say_how_it_stopped(stopped)
}

/// The master's and each worker's configuration, from the flags.
fn master_config(args: &Args) -> anyhow::Result<MasterConfig> {
    Ok(MasterConfig {
        addr: args.addr,
        workers: args.workers,
        dispatch: args.dispatch,
        steer: args.steer,
        pin: args.pin,
        worker: Config {
            trigger: args.trigger,
            listen_trigger: args.listen_trigger,
            exclusive: args.exclusive,
            defer_accept: args.defer_accept,
            max_conns: args.max_conns,
            root: args.root.clone(),
            timeouts: Timeouts {
                keepalive: seconds("keepalive-timeout", args.keepalive_timeout)?,
                header: seconds("header-timeout", args.header_timeout)?,
            },
            max_body: args.max_body,
            access_log: access_log(&args.access_log)?,
            grace: seconds("grace", args.grace)?,
            buffers: args.buffers,
            open_file_cache: seconds("open-file-cache", args.open_file_cache)?,
            model: args.model,
            threads: args.threads,
        },
    })
}

/// After SIGTERM or SIGINT: fine if every worker exited cleanly; else the
/// workers that did not, and a failing exit status, so whoever started us
/// (systemd, a script) learns it without reading the log.
fn say_how_it_stopped(stopped: Stopped) -> anyhow::Result<()> {
    if stopped.is_clean() {
        eprintln!("shut down cleanly");
        return Ok(());
    }
    for (pid, exit) in stopped.exits.iter().filter(|(_, exit)| !exit.is_clean()) {
        eprintln!("worker {pid}: {exit}");
    }
    if stopped.grace_ran_out {
        eprintln!("(workers still running when the grace ran out got SIGKILL)");
    }
    bail!("shut down, but not every worker exited cleanly")
}
