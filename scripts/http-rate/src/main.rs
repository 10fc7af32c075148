//! An open-loop HTTP load generator, for latency at a fixed request rate.
//!
//! wrk is closed-loop: each connection sends its next request when the last
//! answer arrives, so a server that slows down is sent less, and a faster
//! server is sent more. Percentiles from two servers then describe two
//! different loads. Here every request has a due time fixed in advance
//! (`--rate` requests per second, spread over `-c` keep-alive connections),
//! and its latency runs from that due time to the last byte of its answer,
//! so time spent waiting behind a slow answer counts (no "coordinated
//! omission"). A request whose predecessor is still unanswered is written
//! anyway: the connection pipelines.
//!
//! Prints one tab-separated line (with `--format tsv`) or a short report;
//! with `--slow US`, also every request slower than US µs, on stderr (when
//! it was due, how long it took, on which connection), to see whether a
//! tail comes in bursts.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use argh::FromArgs;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Requests at a fixed rate; latency percentiles measured from due times.
#[derive(FromArgs)]
struct Args {
    /// server address
    #[argh(option)]
    addr: SocketAddr,
    /// path to GET (default /)
    #[argh(option, default = "String::from(\"/\")")]
    path: String,
    /// keep-alive connections (default 50)
    #[argh(option, short = 'c', default = "50")]
    connections: usize,
    /// requests per second, over all connections
    #[argh(option)]
    rate: f64,
    /// seconds of load (default 5)
    #[argh(option, short = 'd', default = "5.0")]
    seconds: f64,
    /// text (default) or tsv: rate connections sent answered p50_us p90_us p99_us p999_us max_us
    #[argh(option, default = "String::from(\"text\")")]
    format: String,
    /// also list every request slower than this many µs on stderr, after
    /// the run: due time (µs from the start), latency (µs), connection
    #[argh(option)]
    slow: Option<u64>,
}

struct Conn {
    stream: TcpStream,
    /// Due times of requests written (or queued) and not yet answered.
    due: VecDeque<Instant>,
    next_due: Instant,
    out: Vec<u8>,
    input: Vec<u8>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints a failure as one line, `error: ` and the cause chain (anyhow's
/// `{:#}`), as the servers do; `RUST_LIB_BACKTRACE=1` adds where it was
/// made. (Returning the error from `main` would print its `Debug` form,
/// with a stack trace whenever `RUST_BACKTRACE` is set.)
fn report_error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
    if std::env::var_os("RUST_LIB_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("{}", e.backtrace());
    }
}

/// Everything `main` does; a failure comes back here to be reported.
fn run() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    if args.rate <= 0.0 || args.connections == 0 {
        bail!("--rate and -c must be positive");
    }
    let request = format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", args.path);
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let stream =
            TcpStream::connect(args.addr).with_context(|| format!("connect {}", args.addr))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        conns.push(Conn {
            stream,
            due: VecDeque::new(),
            // Stagger the connections across one interval.
            next_due: start + interval.mul_f64(i as f64 / args.connections as f64),
            out: Vec::new(),
            input: Vec::new(),
        });
    }
    let mut latencies: Vec<u64> = Vec::new();
    // (due time from the start, latency, connection), for --slow: kept in
    // memory and printed after the run, so listing does not slow the load.
    let mut slow: Vec<(u64, u64, usize)> = Vec::new();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let give_up = end + Duration::from_secs(5);
    loop {
        let now = Instant::now();
        let outstanding = conns.iter().any(|c| !c.due.is_empty());
        if (now >= end && !outstanding) || now >= give_up {
            break;
        }
        for c in &mut conns {
            while c.next_due <= now && c.next_due < end {
                c.out.extend_from_slice(request.as_bytes());
                c.due.push_back(c.next_due);
                c.next_due += interval;
                sent += 1;
            }
            flush(c)?;
        }
        let next = conns
            .iter()
            .map(|c| c.next_due)
            .filter(|&t| t < end)
            .min()
            .unwrap_or(now + Duration::from_millis(10));
        let wait = next.saturating_duration_since(Instant::now());
        let mut fds: Vec<PollFd> = conns
            .iter()
            .map(|c| {
                let mut flags = PollFlags::POLLIN;
                if !c.out.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                PollFd::new(c.stream.as_fd(), flags)
            })
            .collect();
        let timeout = PollTimeout::from(wait.as_millis().min(100) as u16);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (k, (c, ready)) in conns.iter_mut().zip(ready).enumerate() {
            if !ready {
                continue;
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => bail!("the server closed a connection"),
                    Ok(n) => c.input.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let done = Instant::now();
            while let Some(len) = complete_response(&c.input)? {
                c.input.drain(..len);
                if let Some(due) = c.due.pop_front() {
                    let latency = done.saturating_duration_since(due).as_micros() as u64;
                    latencies.push(latency);
                    if args.slow.is_some_and(|us| latency > us) {
                        let at = due.saturating_duration_since(start).as_micros() as u64;
                        slow.push((at, latency, k));
                    }
                }
            }
            flush(c)?;
        }
    }
    for (at, latency, k) in &slow {
        eprintln!("{at}\t{latency}\t{k}");
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
    };
    let max = latencies.last().copied().unwrap_or(0);
    let answered = latencies.len();
    let [p50, p90, p99, p999] = [0.50, 0.90, 0.99, 0.999].map(pct);
    if args.format == "tsv" {
        let (rate, conns) = (args.rate, args.connections);
        println!("{rate}\t{conns}\t{sent}\t{answered}\t{p50}\t{p90}\t{p99}\t{p999}\t{max}");
    } else {
        println!(
            "{sent} requests due, {answered} answered; latency from due time: \
             p50 {p50} µs, p90 {p90} µs, p99 {p99} µs, p99.9 {p999} µs, max {max} µs"
        );
    }
    Ok(())
}

/// Writes what the socket takes now.
fn flush(c: &mut Conn) -> anyhow::Result<()> {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The length of the first complete response in `input`, if there is one.
fn complete_response(input: &[u8]) -> anyhow::Result<Option<usize>> {
    let Some(head_end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&input[..head_end]).context("response head")?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let total = head_end + 4 + length;
    Ok((input.len() >= total).then_some(total))
}
