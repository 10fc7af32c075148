//! The access log: Common Log Format lines, written by a thread of their
//! own so that the event loop never waits for the disk. The loop hands each
//! line to a bounded queue with `try_send`; when it is full (a slow disk, a
//! network share that hangs), the line is counted as dropped and the loop
//! carries on: losing a log line is better than stalling every connection
//! of the worker. The writer notes the count in the log.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::SystemTime;

use crate::http::date;
use crate::http::session::Exchange;

/// Lines waiting for the writer, at most.
const QUEUE: usize = 8192;

/// The loop's end of the access log.
pub struct AccessLog {
    /// Dropped (by `Drop`) to tell the writer to finish.
    sender: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens `path` for appending (every worker appends to the same file;
    /// `O_APPEND` keeps their writes from overwriting each other) and starts
    /// the writer thread. Call in the worker, after the fork.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        Self::with_queue(path, QUEUE)
    }

    /// `open` with a queue of `queue` lines (small, in the tests).
    fn with_queue(path: &Path, queue: usize) -> io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (sender, receiver) = mpsc::sync_channel(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        let writer = thread::Builder::new()
            .name("access log".into())
            .spawn(move || write_lines(&receiver, file, &counter))?;
        Ok(AccessLog {
            sender: Some(sender),
            dropped,
            writer: Some(writer),
        })
    }

    // ANCHOR: log_line
    /// Queues a line without ever blocking.
    pub fn line(&self, line: String) {
        if let Some(sender) = &self.sender {
            match sender.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    // ANCHOR_END: log_line

    /// Queues the Common Log Format line of one exchange:
    /// `PEER - - [DATE] "REQUEST LINE" STATUS BYTES`.
    pub fn record(&self, peer: Option<IpAddr>, exchange: &Exchange, when: SystemTime) {
        let peer = peer.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        let when = date::format_clf(when);
        let request = escape(&exchange.request_line);
        let (status, length) = (exchange.status, exchange.length);
        let line = format!("{peer} - - [{when}] \"{request}\" {status} {length}\n");
        self.line(line);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

// ANCHOR: escape
/// A request line as it may stand between the quotes of a log line: `"`,
/// `\`, control bytes and bytes past ASCII become `\xHH`, as nginx
/// escapes its variables in `log_format` (`ngx_http_log_escape` in
/// src/http/modules/ngx_http_log_module.c). A target holding `"` would
/// otherwise end the quoted field early, and a control byte could forge a
/// line; every line must parse as Common Log Format.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}
// ANCHOR_END: escape

fn write_lines(receiver: &Receiver<String>, file: File, dropped: &AtomicU64) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut noted = 0;
    // Block for the first line, then take whatever else is queued, then
    // flush: one write(2) per batch, not per line.
    while let Ok(line) = receiver.recv() {
        let mut batch = Some(line);
        while let Some(line) = batch.take().or_else(|| receiver.try_recv().ok()) {
            if out.write_all(line.as_bytes()).is_err() {
                eprintln!("access log: write failed; lines are lost");
            }
        }
        let now = dropped.load(Ordering::Relaxed);
        if now > noted {
            let lost = now - noted;
            let _ = writeln!(out, "# {lost} lines dropped: the log could not keep up");
            noted = now;
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped() {
        assert_eq!(escape("GET /a\"b HTTP/1.1"), "GET /a\\x22b HTTP/1.1");
        assert_eq!(
            escape("GET /a\\b\u{1}\u{e9}"),
            "GET /a\\x5Cb\\x01\\xC3\\xA9"
        );
        assert_eq!(escape("GET / HTTP/1.1"), "GET / HTTP/1.1");
    }

    #[test]
    fn lines_reach_the_file_in_order() {
        let path = std::env::temp_dir().join(format!("access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let log = AccessLog::open(&path).unwrap();
            for i in 0..100 {
                log.line(format!("line {i}\n"));
            }
            assert_eq!(log.dropped(), 0);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[99], "line 99");
        let _ = std::fs::remove_file(&path);
    }

    /// A log that cannot keep up drops lines, counts them, never blocks the
    /// caller, and says in the log how many it dropped.
    #[test]
    fn a_stalled_disk_drops_and_counts_lines_without_blocking() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO nobody reads yet: the writer thread blocks once the pipe
        // (64 KiB) and its own buffer (64 KiB) are full, like a hung disk.
        let path = std::env::temp_dir().join(format!("access-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let log = AccessLog::with_queue(&path, 4).unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        let started = std::time::Instant::now();
        for _ in 0..300 {
            log.line(line.clone());
        }
        // 300 KiB cannot fit in 128 KiB of buffers and a queue of 4.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "line() blocked"
        );
        let dropped = log.dropped();
        assert!(dropped >= 300 - 140, "only {dropped} dropped");
        // Unstall the disk, close the log, read everything it wrote.
        let drain = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return all,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        drop(log);
        let text = String::from_utf8(drain.join().unwrap()).unwrap();
        let written = text.lines().filter(|l| l.starts_with('x')).count() as u64;
        let noted: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(written + dropped, 300, "every line written or counted");
        assert_eq!(noted, dropped, "the log says how many it dropped");
        let _ = std::fs::remove_file(&path);
    }
}
