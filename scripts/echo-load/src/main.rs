//! `echo-load`: the load generator for the echo stages (the reader's
//! webbench). C connections each send a message of S bytes, wait for the
//! whole echo, and send the next (ping-pong), for T seconds or M messages.
//! It reports messages per second and the p50/p99 round-trip latency.
//!
//! With `--idle` it instead opens C connections, does one round trip on each
//! and holds them open for T seconds, so a script can measure what idle
//! clients cost a server.
//!
//! With `--churn`, C clients each connect, do one round trip and close, over
//! and over: the load that measures how a server accepts and hands out
//! connections. It reports connections per second, and the latency of
//! connect plus round trip.
//!
//! The client itself is a small epoll loop per thread (edge-triggered, each
//! socket registered once for both directions), so it can drive thousands of
//! connections from two threads and stays out of the way of the server it
//! measures.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use argh::FromArgs;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Echo load generator: C connections in ping-pong with S-byte messages.
#[derive(FromArgs)]
struct Args {
    /// server address (default 127.0.0.1:8080)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8080))")]
    addr: SocketAddr,

    /// number of connections (default 10)
    #[argh(option, short = 'c', default = "10")]
    connections: usize,

    /// message size in bytes (default 64)
    #[argh(option, short = 's', default = "64")]
    size: usize,

    /// seconds to run (default 5); with --messages, an upper bound
    #[argh(option, short = 'd', default = "5.0")]
    duration: f64,

    /// stop each connection after this many messages (default: no limit)
    #[argh(option, short = 'm')]
    messages: Option<u64>,

    /// client threads (default 2)
    #[argh(option, short = 't', default = "2")]
    threads: usize,

    /// open the connections, echo once on each, print `connected C`, then
    /// hold them idle for the duration
    #[argh(switch)]
    idle: bool,

    /// each of the C clients connects, echoes one message and closes, again
    /// and again; reports connections/s (as `messages`) instead
    #[argh(switch)]
    churn: bool,

    /// output: text (default) or tsv (one header line and one data line,
    /// for scripts)
    #[argh(option, default = "String::from(\"text\")")]
    format: String,
}

/// What one thread measured.
#[derive(Default)]
struct Tally {
    messages: u64,
    errors: u64,
    /// Connections that got at least one complete echo. Fewer than
    /// `--connections` means the server left some clients waiting (a
    /// blocking pool does), and messages/s describe only the served ones.
    served: u64,
    /// Round-trip times in microseconds.
    latencies: Vec<u32>,
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
    if args.connections == 0 || args.size == 0 || args.threads == 0 {
        bail!("connections, size and threads must be at least 1");
    }
    if args.format != "text" && args.format != "tsv" {
        bail!("--format is text or tsv");
    }
    let duration = Duration::from_secs_f64(args.duration);
    if args.idle {
        return hold_idle(&args, duration);
    }
    if args.churn {
        let mut tally = churn(&args, duration)?;
        report(&args, &mut tally, duration.as_secs_f64());
        return Ok(());
    }

    let message: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let threads = args.threads.min(args.connections);
    // Connect everything first, so connection set-up is not measured.
    let mut groups: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..args.connections {
        let stream = TcpStream::connect(args.addr)
            .with_context(|| format!("connection {i} to {}", args.addr))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        groups[i % threads].push(stream);
    }

    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = groups
        .into_iter()
        .map(|streams| {
            let message = message.clone();
            let limit = args.messages;
            thread::spawn(move || ping_pong(streams, &message, deadline, limit))
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        total.messages += t.messages;
        total.errors += t.errors;
        total.served += t.served;
        total.latencies.extend(t.latencies);
    }
    let elapsed = start.elapsed().as_secs_f64();
    report(&args, &mut total, elapsed);
    Ok(())
}

/// One connection's progress through the current message.
struct Conn {
    stream: TcpStream,
    written: usize,
    received: usize,
    started: Instant,
    sent_count: u64,
    done: bool,
}

fn ping_pong(
    streams: Vec<TcpStream>,
    message: &[u8],
    deadline: Instant,
    limit: Option<u64>,
) -> io::Result<Tally> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mut conns: Vec<Conn> = Vec::with_capacity(streams.len());
    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
    for (i, stream) in streams.into_iter().enumerate() {
        epoll.add(stream.as_fd(), EpollEvent::new(flags, i as u64))?;
        conns.push(Conn {
            stream,
            written: 0,
            received: 0,
            started: Instant::now(),
            sent_count: 1,
            done: false,
        });
    }
    let mut tally = Tally::default();
    let mut buf = vec![0u8; message.len().clamp(4096, 256 * 1024)];
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut active = conns.len();
    // Each connection starts its first message now.
    for conn in &mut conns {
        conn.started = Instant::now();
        step(conn, message, &mut buf, &mut tally, deadline, limit);
    }
    while active > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let ms = (deadline - now).as_millis().min(1000) as u16;
        let n = match epoll.wait(&mut events, EpollTimeout::from(ms.max(1))) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            let conn = &mut conns[ev.data() as usize];
            if conn.done {
                continue;
            }
            step(conn, message, &mut buf, &mut tally, deadline, limit);
            if conn.done {
                active -= 1;
            }
        }
    }
    Ok(tally)
}

/// Advances one connection as far as its socket allows: write what is left
/// of the message, read what has come back, and start the next message when
/// the echo is complete. Edge-triggered, so both directions run to EAGAIN.
fn step(
    conn: &mut Conn,
    message: &[u8],
    buf: &mut [u8],
    tally: &mut Tally,
    deadline: Instant,
    limit: Option<u64>,
) {
    loop {
        while conn.written < message.len() {
            match conn.stream.write(&message[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return fail(conn, tally),
            }
        }
        let want = (message.len() - conn.received).min(buf.len());
        match conn.stream.read(&mut buf[..want]) {
            Ok(0) => return fail(conn, tally),
            Ok(n) => {
                let expected = &message[conn.received..conn.received + n];
                if &buf[..n] != expected {
                    return fail(conn, tally);
                }
                conn.received += n;
                if conn.received == message.len() {
                    let rtt = conn.started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    tally.latencies.push(rtt);
                    tally.messages += 1;
                    if conn.sent_count == 1 {
                        tally.served += 1;
                    }
                    if Instant::now() >= deadline || limit.is_some_and(|m| conn.sent_count >= m) {
                        conn.done = true;
                        return;
                    }
                    conn.written = 0;
                    conn.received = 0;
                    conn.sent_count += 1;
                    conn.started = Instant::now();
                }
            }
            // Nothing more to read now. If part of the message is still
            // unwritten, the EPOLLOUT edge brings us back when there is room.
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return fail(conn, tally),
        }
    }
}

fn fail(conn: &mut Conn, tally: &mut Tally) {
    tally.errors += 1;
    conn.done = true;
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(args: &Args, tally: &mut Tally, elapsed: f64) {
    tally.latencies.sort_unstable();
    let rate = tally.messages as f64 / elapsed;
    let p50 = percentile(&tally.latencies, 50.0);
    let p99 = percentile(&tally.latencies, 99.0);
    if args.format == "tsv" {
        println!(
            "connections\tsize\tseconds\tmessages\tmessages_per_s\tp50_us\tp99_us\terrors\tserved"
        );
        println!(
            "{}\t{}\t{:.2}\t{}\t{:.0}\t{}\t{}\t{}\t{}",
            args.connections,
            args.size,
            elapsed,
            tally.messages,
            rate,
            p50,
            p99,
            tally.errors,
            tally.served
        );
    } else {
        println!(
            "{} connections, {} B messages, {:.2} s: {} messages, {:.0} messages/s, \
             p50 {} us, p99 {} us, {} errors, {} connections served",
            args.connections,
            args.size,
            elapsed,
            tally.messages,
            rate,
            p50,
            p99,
            tally.errors,
            tally.served
        );
    }
}

/// `--idle`: connect, echo once on each connection, report, hold.
fn hold_idle(args: &Args, duration: Duration) -> anyhow::Result<()> {
    let mut streams = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mut s = TcpStream::connect(args.addr)
            .with_context(|| format!("connection {i} to {}", args.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"ping")?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back)
            .with_context(|| format!("echo on connection {i}"))?;
        streams.push(s);
    }
    println!("connected {}", streams.len());
    io::stdout().flush()?;
    thread::sleep(duration);
    Ok(())
}

/// `--churn`: C blocking clients, each in its own thread, each repeating
/// connect, one round trip, close, until the deadline.
fn churn(args: &Args, duration: Duration) -> anyhow::Result<Tally> {
    let deadline = Instant::now() + duration;
    let message: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let handles: Vec<_> = (0..args.connections)
        .map(|_| {
            let (addr, message) = (args.addr, message.clone());
            thread::spawn(move || {
                let mut tally = Tally::default();
                let mut back = vec![0u8; message.len()];
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let ok = TcpStream::connect(addr).and_then(|mut s| {
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(Duration::from_secs(5)))?;
                        s.write_all(&message)?;
                        s.read_exact(&mut back)
                    });
                    match ok {
                        Ok(()) if back == message => {
                            let rtt = started.elapsed().as_micros().min(u32::MAX as u128);
                            tally.latencies.push(rtt as u32);
                            tally.messages += 1;
                            tally.served = 1;
                        }
                        _ => tally.errors += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        total.messages += t.messages;
        total.errors += t.errors;
        total.served += t.served;
        total.latencies.extend(t.latencies);
    }
    Ok(total)
}
