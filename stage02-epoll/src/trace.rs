//! `--trace FILE`: the loop's timeline, in the Chrome Trace Event format
//! that Perfetto (ui.perfetto.dev) and `chrome://tracing` open.
//!
//! The loop says what it does with `tracing`'s spans (`epoll_wait`, each
//! `accept`, `read` and `write`, with their descriptor and byte count);
//! this module is the layer that writes them down. With no `--trace`, no
//! layer is installed and each span costs `tracing` a check of a cached
//! flag: the timeline is not a cost of the server.
//!
//! Why a layer of our own and not `tracing-chrome`: that crate writes every
//! event with `"pid": 1` and a clock that starts with its own layer, and
//! writes from a thread of its own. That is fine for one process; stage 5's
//! forked workers inherit the layer without its thread, and their events
//! could not go into one file beside the master's. This layer writes, in
//! the thread that recorded it, each event as one line with the real process
//! and thread ids and a `CLOCK_MONOTONIC` time, the same clock in every
//! process, so every stage's timeline has the same shape.
//!
//! The file is a JSON array, one event per line (`ph` B and E open and close
//! a span on its thread; `i` is an instant; `M` names a process or thread;
//! the format: "Trace Event Format", Google, the document
//! `chrome://tracing` links to). Events wait in a buffer and are written
//! with one `write` when the loop is about to sleep ([`flush`]); this stage
//! does not catch Ctrl-C, so the array's closing `]` may be missing, which
//! the format allows.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
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
}

/// Set once, by [`start`]; `None` until then, and for good without
/// `--trace`.
static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Starts the timeline: creates `path` (truncating it), names this process
/// in it, and installs the layer as `tracing`'s global subscriber.
pub fn start(path: &Path, process: &str) -> io::Result<()> {
    let file = File::create(path)?;
    let pid = std::process::id();
    let mut buf = String::from("[\n");
    let _ = write!(
        buf,
        r#"{{"ph":"M","name":"process_name","pid":{pid},"tid":{pid},"args":{{"name":"{process}"}}}}"#
    );
    if SINK.set(Mutex::new(Sink { file, buf, pid })).is_err() {
        return Err(io::Error::other("the timeline was started twice"));
    }
    let subscriber = tracing_subscriber::registry().with(ChromeLayer);
    tracing::subscriber::set_global_default(subscriber).map_err(io::Error::other)?;
    flush();
    Ok(())
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

/// This thread's id, asked of the kernel once per thread.
fn tid() -> i32 {
    thread_local! {
        static TID: i32 = nix::unistd::gettid().as_raw();
    }
    TID.with(|tid| *tid)
}

/// A span's fields, each a name and its value as JSON, kept with the span
/// from its creation and written when it closes. A field recorded again
/// (`bytes`, once the call returns) replaces its value.
#[derive(Default)]
struct Args(Vec<(&'static str, String)>);

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
        let value = value.to_string();
        match self.0.iter_mut().find(|(name, _)| *name == field.name()) {
            Some((_, old)) => *old = value,
            None => self.0.push((field.name(), value)),
        }
    }

    /// As JSON members: `"fd":7,"bytes":512`.
    fn render(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.0 {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "\"{name}\":{value}");
        }
        out
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
            let args = extensions.get::<Args>().map(Args::render);
            self.write('E', span.name(), args.as_deref().unwrap_or(""));
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut args = Args::default();
        event.record(&mut args);
        self.write('i', event.metadata().name(), &args.render());
    }
}

/// A connection's socket, whose every `read` and `write` is a span on the
/// timeline, with its descriptor and what the call returned: the bytes,
/// or the error (`WouldBlock` is the `EAGAIN` that ends an edge-triggered
/// drain). The handlers use it as they would the `TcpStream` itself.
pub struct Traced(pub TcpStream);

impl Read for Traced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.0.as_raw_fd();
        let span = tracing::info_span!("read", fd, bytes = field::Empty, error = field::Empty);
        let _entered = span.enter();
        recorded(&span, self.0.read(buf))
    }
}

impl Write for Traced {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.0.as_raw_fd();
        let span = tracing::info_span!("write", fd, bytes = field::Empty, error = field::Empty);
        let _entered = span.enter();
        recorded(&span, self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl AsFd for Traced {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Notes on the span what the call returned, before the span closes.
fn recorded(span: &Span, result: io::Result<usize>) -> io::Result<usize> {
    match &result {
        Ok(n) => span.record("bytes", *n as u64),
        Err(e) => span.record("error", field::debug(e.kind())),
    };
    result
}
