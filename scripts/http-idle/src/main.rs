//! `http-idle`: opens N keep-alive connections to an HTTP server, sends one
//! request on each and reads its response whole, prints `connected N`, and
//! holds them idle for the duration. With `--partial`, each connection
//! sends one byte of a request head instead, and waits: a slow client.
//! `scripts/idle-memory.sh` measures what those connections cost the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use argh::FromArgs;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Holds N idle keep-alive HTTP connections, each having made one request.
#[derive(FromArgs)]
struct Args {
    /// server address (default 127.0.0.1:8080)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8080))")]
    addr: SocketAddr,

    /// number of connections (default 1000)
    #[argh(option, short = 'c', default = "1000")]
    connections: usize,

    /// the path to request on each (default /)
    #[argh(option, default = "String::from(\"/\")")]
    path: String,

    /// seconds to hold the connections (default 10)
    #[argh(option, short = 'd', default = "10.0")]
    duration: f64,

    /// send only the first byte of a request head on each connection, and
    /// read nothing (a client in the middle of its head)
    #[argh(switch)]
    partial: bool,
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
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let need = args.connections as u64 + 64;
    if soft < need {
        if hard < need {
            bail!("need {need} descriptors; the hard limit is {hard}");
        }
        setrlimit(Resource::RLIMIT_NOFILE, need, hard)?;
    }
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", args.path, args.addr);
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let stream = TcpStream::connect(args.addr).with_context(|| format!("connection {i}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        if args.partial {
            (&stream).write_all(&request.as_bytes()[..1])?;
            held.push(BufReader::new(stream));
            continue;
        }
        (&stream).write_all(request.as_bytes())?;
        let mut reader = BufReader::new(stream);
        read_response(&mut reader).with_context(|| format!("response on connection {i}"))?;
        held.push(reader);
    }
    println!("connected {}", held.len());
    std::io::stdout().flush()?;
    thread::sleep(Duration::from_secs_f64(args.duration));
    Ok(())
}

/// Reads a response head and a Content-Length body.
fn read_response(reader: &mut BufReader<TcpStream>) -> anyhow::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        bail!("unexpected status line {line:?}");
    }
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(())
}
