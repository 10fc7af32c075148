//! `--trace FILE`: the timeline of every process of the server, in the
//! Chrome Trace Event format that Perfetto (ui.perfetto.dev) and
//! `chrome://tracing` open.
//!
//! The loops say what they do with `tracing`'s spans (`epoll_wait`, each
//! `accept`, `pass`, `receive`, and each step a connection's session asks
//! for: `recv`, `process`, `open`, `send`, `sendfile`, with their descriptor
//! and byte count; under `--model proactor-sim` the pool threads' work on
//! their own tracks, under `--model uring` each `submit` and `complete`);
//! this module is the layer that writes them down. With no
//! `--trace`, no layer is installed and each span costs `tracing` a check
//! of a cached flag: the timeline is not a cost of the server.
//!
//! Why a layer of our own and not `tracing-chrome`: that crate writes every
//! event with `"pid": 1` and a clock that starts with its own layer, and
//! writes from a thread of its own, which a forked worker does not inherit.
//! This layer writes, in the thread that recorded it, each event as one
//! line with the real process and thread ids and a `CLOCK_MONOTONIC` time,
//! the same clock in every process.
//!
//! ## Several processes, one file
//! The master creates the file and reopens it with `O_APPEND` before the
//! first fork, so every worker inherits the one open file. Each process
//! keeps its events in its own buffer and writes it with one `write`
//! ([`flush`], before its loop sleeps); under `O_APPEND` each such write
//! lands whole at the end of the file, so lines of two processes never
//! interleave. After the fork a worker calls [`forked`]: the buffer it
//! inherited holds the master's events (the master writes those itself),
//! and its cached process and thread ids are the master's. A worker flushes
//! before it exits (`process::exit` runs no destructors), and the master,
//! once every worker has exited after SIGTERM, closes the array
//! ([`finish`]). A server killed any other way leaves the closing `]` out,
//! which the format allows.
//!
//! The file is a JSON array, one event per line (`ph` B and E open and close
//! a span on its thread; `i` is an instant; `M` names a process or thread;
//! the format: "Trace Event Format", Google, the document
//! `chrome://tracing` links to).

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use nix::time::{ClockId, clock_gettime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Span, Subscriber, field};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Where the events go: the file and what is not yet written to it.
struct Sink {
    file: File,
    buf: String,
    pid: u32,
    /// Set by [`finish`]: the array is closed, and nothing more goes in.
    finished: bool,
}

/// Set once, by [`start`]; `None` until then, and for good without
/// `--trace`.
static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Starts the timeline: creates `path` (truncating it), reopens it for
/// appending, which every process forked later inherits, names this
/// process in it, and installs the layer as `tracing`'s global subscriber.
/// Call it before the first fork.
pub fn start(path: &Path, process: &str) -> io::Result<()> {
    File::create(path)?;
    let file = OpenOptions::new().append(true).open(path)?;
    let pid = std::process::id();
    // The one line not preceded by a comma: each event after it starts
    // with `,` and a newline.
    let buf = format!("[\n{}", process_name(pid, process));
    let sink = Sink {
        file,
        buf,
        pid,
        finished: false,
    };
    if SINK.set(Mutex::new(sink)).is_err() {
        return Err(io::Error::other("the timeline was started twice"));
    }
    let subscriber = tracing_subscriber::registry().with(ChromeLayer);
    tracing::subscriber::set_global_default(subscriber).map_err(io::Error::other)?;
    flush();
    Ok(())
}

/// In a newly forked worker, first thing: forget the master's events and
/// ids, and name this process `process` in the file. Without `--trace`,
/// does nothing.
pub fn forked(process: &str) {
    let Some(sink) = SINK.get() else { return };
    TID.with(|tid| tid.set(0));
    {
        let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = std::process::id();
        sink.pid = pid;
        // The master's, not yet written: it writes them itself.
        sink.buf.clear();
        let line = process_name(pid, process);
        let _ = write!(sink.buf, ",\n{line}");
    }
    flush();
}

/// Names the calling thread `thread` on the timeline (a pool thread, as
/// "pool 1"), so that its track says whose it is. Without `--trace`, does
/// nothing.
pub fn name_thread(thread: &str) {
    let Some(sink) = SINK.get() else { return };
    let (name, tid) = (json_string(thread), tid());
    let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = sink.pid;
    let _ = write!(
        sink.buf,
        r#",{}{{"ph":"M","name":"thread_name","pid":{pid},"tid":{tid},"args":{{"name":{name}}}}}"#,
        '\n'
    );
}

/// The `process_name` metadata event that names `pid` on the timeline.
fn process_name(pid: u32, process: &str) -> String {
    let name = json_string(process);
    format!(
        r#"{{"ph":"M","name":"process_name","pid":{pid},"tid":{pid},"args":{{"name":{name}}}}}"#
    )
}

/// Writes what the timeline holds to its file, in one `write`. The loop
/// calls it before it sleeps, so the file is never more than an iteration
/// behind. Without `--trace`, does nothing.
pub fn flush() {
    let Some(sink) = SINK.get() else { return };
    let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
    if sink.buf.is_empty() {
        return;
    }
    let Sink { file, buf, .. } = &mut *sink;
    // A timeline that cannot be written is not worth stopping the server
    // for: it is dropped, and the server goes on.
    let _ = file.write_all(buf.as_bytes());
    buf.clear();
}

/// Ends the timeline on a clean stop: writes what the master's last turn
/// recorded, which no [`flush`] will, and the array's closing `]`, so the
/// file is complete JSON. The master calls it once, after its last worker
/// has exited: no other process writes to the file any more. What is
/// recorded after it is dropped. Without `--trace`, does nothing.
pub fn finish() {
    let Some(sink) = SINK.get() else { return };
    let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
    sink.buf.push_str("\n]\n");
    sink.finished = true;
    drop(sink);
    flush();
}

/// Microseconds on `CLOCK_MONOTONIC`, with the nanoseconds as decimals:
/// the same clock in every process of a server.
fn now_us() -> String {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(t) => format!(
            "{}.{:03}",
            t.tv_sec() * 1_000_000 + t.tv_nsec() / 1000,
            t.tv_nsec() % 1000
        ),
        Err(_) => "0".to_string(),
    }
}

thread_local! {
    /// This thread's id, or 0 until asked. A forked worker's one thread is
    /// a copy of the master's and holds the master's id: [`forked`] resets it.
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// This thread's id, asked of the kernel once per thread (and process).
fn tid() -> i32 {
    TID.with(|tid| {
        if tid.get() == 0 {
            tid.set(nix::unistd::gettid().as_raw());
        }
        tid.get()
    })
}

/// A span's fields as JSON members (`"fd":7,"bytes":512`), kept with the
/// span from its creation, and written when it closes.
#[derive(Default)]
struct Args(String);

impl Visit for Args {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, format_args!("{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, format_args!("{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, format_args!("{value}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let quoted = json_string(value);
        self.member(field, format_args!("{quoted}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let quoted = json_string(&format!("{value:?}"));
        self.member(field, format_args!("{quoted}"));
    }
}

impl Args {
    fn member(&mut self, field: &Field, value: fmt::Arguments) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{}\":{value}", field.name());
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The layer: B when a span is entered, E (with its fields) when it is
/// left, i for an event.
struct ChromeLayer;

impl ChromeLayer {
    fn write(&self, ph: char, name: &str, args: &str) {
        let Some(sink) = SINK.get() else { return };
        let ts = now_us();
        let tid = tid();
        let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        if sink.finished {
            return;
        }
        let pid = sink.pid;
        let scope = if ph == 'i' { r#","s":"t""# } else { "" };
        let _ = write!(
            sink.buf,
            r#",{}{{"ph":"{ph}","name":"{name}","pid":{pid},"tid":{tid},"ts":{ts}{scope},"args":{{{args}}}}}"#,
            '\n'
        );
    }
}

impl<S> Layer<S> for ChromeLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut args = Args::default();
        attrs.record(&mut args);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(args);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(args) = span.extensions_mut().get_mut::<Args>()
        {
            values.record(args);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            self.write('B', span.name(), "");
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let extensions = span.extensions();
            let args = extensions.get::<Args>().map_or("", |a| a.0.as_str());
            self.write('E', span.name(), args);
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut args = Args::default();
        event.record(&mut args);
        self.write('i', event.metadata().name(), &args.0);
    }
}

/// Notes on `span` what an I/O call returned, before the span closes: the
/// bytes, or the error (`WouldBlock` is the `EAGAIN` that ends a turn).
pub fn recorded(span: &Span, result: &io::Result<usize>) {
    match result {
        Ok(n) => span.record("bytes", *n as u64),
        Err(e) => span.record("error", field::debug(e.kind())),
    };
}
