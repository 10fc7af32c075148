//! Command line for stage 1. All the server logic is in the library.

use std::io::Write;
use std::net::TcpListener;

use anyhow::Context;
use argh::FromArgs;
use stage01_blocking::{Mode, serve};

/// Stage 1: a blocking echo server. Every byte a client sends comes back.
#[derive(FromArgs)]
struct Args {
    /// address to listen on (default 127.0.0.1:8080; port 0 picks a free port)
    #[argh(option, default = "String::from(\"127.0.0.1:8080\")")]
    addr: String,

    /// iterative (one client at a time), threads (a thread per connection)
    /// or pool (a fixed set of threads); default threads
    #[argh(option, default = "Mode::Threads")]
    mode: Mode,

    /// number of threads in pool mode (default 4)
    #[argh(option, default = "4")]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    let listener =
        TcpListener::bind(&args.addr).with_context(|| format!("cannot listen on {}", args.addr))?;
    // The first line of stdout is the contract with tests and scripts: with
    // `--addr 127.0.0.1:0` it tells them which port the kernel picked.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    serve(listener, args.mode, args.threads)?;
    Ok(())
}
