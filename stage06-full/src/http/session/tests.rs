//! The session without sockets: a fake driver feeds it bytes in chosen
//! pieces, "opens" files from a table, and collects what it is asked to
//! send. Every byte of every response is checked, and any chunking of a
//! pipelined input must give the same bytes as the whole input. Built for
//! `cargo test` only (`#[cfg(test)] mod tests;` in session.rs).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::http::path::{OpenFile, Opened};
use crate::pool::BufferPool;

const DATE: &str = "Sun, 29 Nov 2026 12:00:00 GMT";
const MODIFIED: &str = "Sun, 01 Nov 2026 00:00:00 GMT";
const MODIFIED_SECS: u64 = 1_793_491_200;
const TIMEOUTS: Timeouts = Timeouts {
    keepalive: Duration::from_secs(15),
    header: Duration::from_secs(10),
};

/// A file of `len` bytes in a temporary folder, removed on drop, for the
/// large-file (`SendFile`) path.
struct BigFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl BigFile {
    fn new(tag: &str, len: usize) -> BigFile {
        let path =
            std::env::temp_dir().join(format!("stage06-session-{}-{tag}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .expect("write the big file");
        BigFile { path, bytes }
    }
}

impl Drop for BigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The fake worker: pools, a table of files, and what was sent.
pub(super) struct Driver {
    pools: Pools,
    files: HashMap<String, (Option<Vec<u8>>, Option<std::path::PathBuf>)>,
    now: Instant,
    /// The largest read a "socket" returns, to exercise short reads.
    out: Vec<u8>,
    pub(super) log: Vec<Exchange>,
    events: Vec<&'static str>,
}

impl Driver {
    fn new() -> Driver {
        let mut files = HashMap::new();
        files.insert("a.txt".to_string(), (Some(b"hello\n".to_vec()), None));
        files.insert(
            "index.html".to_string(),
            (Some(b"<h1>home</h1>\n".to_vec()), None),
        );
        Driver {
            pools: Pools {
                small: BufferPool::new(FIRST_READ, 8, true),
                inputs: BufferPool::new(READ_BUF, 8, true),
                outputs: BufferPool::new(WRITE_BUF, 8, false),
                pooled: true,
            },
            files,
            now: Instant::now(),
            out: Vec::new(),
            log: Vec::new(),
            events: Vec::new(),
        }
    }

    fn with_big(mut self, big: &BigFile) -> Driver {
        self.files
            .insert("big.bin".to_string(), (None, Some(big.path.clone())));
        self
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            date: DATE,
            pools: &mut self.pools,
            max_body: 1000,
            stopping: false,
            logging: true,
        }
    }

    fn open(&self, path: &str, dir: bool) -> Opened {
        let name = if dir && path.is_empty() {
            "index.html".to_string()
        } else {
            path.to_string()
        };
        if path == "docs" && !dir {
            return Opened::Redirect;
        }
        match self.files.get(&name) {
            None => Opened::Status(404),
            Some((contents, on_disk)) => {
                let file = match on_disk {
                    Some(p) => std::fs::File::open(p).expect("open"),
                    None => std::fs::File::open("/dev/null").expect("open /dev/null"),
                };
                let len = match (contents, on_disk) {
                    (Some(c), _) => c.len() as u64,
                    (None, _) => file.metadata().expect("stat").len(),
                };
                let content_type = crate::http::path::content_type(&name);
                Opened::File(Arc::new(OpenFile {
                    file,
                    len,
                    modified_secs: MODIFIED_SECS,
                    last_modified: MODIFIED.to_string(),
                    content_type,
                    fields: crate::http::response::file_fields(content_type, len, MODIFIED),
                    contents: contents.clone(),
                }))
            }
        }
    }

    /// One receive: as much of the next piece (the last of `pieces`) as the
    /// read buffer takes, or end of stream once no piece is left.
    fn recv(&mut self, s: &mut Session, pieces: &mut Vec<&[u8]>) {
        let buf = s.read_buf(&mut self.pools, 0);
        let mut n = 0;
        if let Some(piece) = pieces.pop() {
            n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                pieces.push(&piece[n..]);
            }
        }
        self.events.push(if n == 0 { "eof" } else { "recv" });
        s.received(n, self.now);
    }

    /// Runs the session over `chunks` (then end of stream) until it closes.
    /// `limit`: the most bytes one "send" takes, to exercise short writes.
    fn run(&mut self, s: &mut Session, chunks: &[&[u8]], limit: usize) -> bool {
        // An empty read would be end of stream: pieces are never empty.
        let mut pieces: Vec<&[u8]> = chunks
            .iter()
            .rev()
            .copied()
            .filter(|c| !c.is_empty())
            .collect();
        for _ in 0..100_000 {
            match s.next() {
                Next::Recv => self.recv(s, &mut pieces),
                Next::Process => s.process(&mut self.env()),
                Next::Open { path, dir } => {
                    let opened = self.open(path, dir);
                    s.opened(opened, &mut self.env());
                }
                Next::NoDelay => {
                    self.events.push("nodelay");
                    s.nodelay_set();
                }
                Next::Send { head, body, more } => {
                    let n = (head.len() + body.len()).min(limit);
                    let mut both = head.to_vec();
                    both.extend_from_slice(body);
                    self.out.extend_from_slice(&both[..n]);
                    self.events.push(if more { "send-more" } else { "send" });
                    if let Some(e) = s.sent(n, &mut self.env()) {
                        self.log.push(e);
                    }
                }
                Next::SendFile { file, offset, len } => {
                    let n = (len as usize).min(limit);
                    let mut buf = vec![0; n];
                    file.read_exact_at(&mut buf, offset).expect("read");
                    self.out.extend_from_slice(&buf);
                    self.events.push("sendfile");
                    if let Some(e) = s.sent(n, &mut self.env()) {
                        self.log.push(e);
                    }
                }
                Next::Shutdown => {
                    self.events.push("shutdown");
                    s.shut_down(self.now);
                }
                Next::Close => return true,
            }
        }
        false
    }
}

/// The whole output of a session fed `chunks`.
pub(super) fn serve(chunks: &[&[u8]]) -> (String, Driver) {
    let mut d = Driver::new();
    let mut s = Session::new(d.now);
    assert!(
        d.run(&mut s, chunks, usize::MAX),
        "the session never closed"
    );
    s.release(&mut d.pools);
    (String::from_utf8_lossy(&d.out).into_owned(), d)
}

#[test]
fn a_get_is_answered_byte_for_byte() {
    let (out, d) = serve(&[b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"]);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nDate: Sun, 29 Nov 2026 12:00:00 GMT\r\nServer: stage06\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\
         Last-Modified: Sun, 01 Nov 2026 00:00:00 GMT\r\nAccept-Ranges: bytes\r\n\
         Connection: close\r\n\r\nhello\n"
    );
    assert_eq!(
        d.log,
        [Exchange {
            request_line: "GET /a.txt HTTP/1.1".into(),
            status: 200,
            length: 6
        }]
    );
    // Nothing followed the request: close at once, no lingering.
    assert!(!d.events.contains(&"shutdown"), "{:?}", d.events);
    assert!(!d.events.contains(&"nodelay"), "closing: no TCP_NODELAY");
}

#[test]
fn keep_alive_sets_nodelay_once_and_serves_the_next_request() {
    let (out, d) = serve(&[
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HEAD /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ]);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    assert_eq!(d.events.iter().filter(|e| **e == "nodelay").count(), 1);
    // The HEAD answer has the length of the body it does not send.
    let second = out.split("HTTP/1.1 ").nth(2).unwrap();
    assert!(second.contains("Content-Length: 6\r\n"), "{second}");
    assert!(second.contains("Connection: keep-alive\r\n"), "{second}");
    assert!(second.ends_with("\r\n\r\n"), "HEAD sent a body: {second}");
    assert!(
        out.ends_with("Connection: close\r\n\r\n<h1>home</h1>\n"),
        "{out}"
    );
    let lengths: Vec<u64> = d.log.iter().map(|e| e.length).collect();
    assert_eq!(lengths, [6, 0, 14]);
}

#[test]
fn errors_redirects_ranges_and_conditionals_are_built_here() {
    let cases: [(&str, &str); 8] = [
        (
            "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
            "HTTP/1.1 404 Not Found",
        ),
        (
            "GET /docs HTTP/1.1\r\nHost: t\r\n\r\n",
            "Location: /docs/\r\n",
        ),
        (
            "GET /../x HTTP/1.1\r\nHost: t\r\n\r\n",
            "HTTP/1.1 403 Forbidden",
        ),
        ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            "PUT / HTTP/1.1\r\nHost: t\r\n\r\n",
            "Allow: GET, HEAD\r\nConnection: close",
        ),
        (
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-3\r\n\r\n",
            "Content-Range: bytes 1-3/6\r\n\r\nell",
        ),
        (
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=9-\r\n\r\n",
            "Content-Range: bytes */6\r\n",
        ),
        (
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Mon, 02 Nov 2026 00:00:00 GMT\r\n\r\n",
            "HTTP/1.1 304 Not Modified",
        ),
    ];
    for (request, expected) in cases {
        let (out, _) = serve(&[request.as_bytes()]);
        assert!(out.contains(expected), "{request:?} gave {out}");
    }
}

#[test]
fn a_bad_head_is_refused_and_the_close_lingers() {
    let (out, d) = serve(&[b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\nGET /a.txt HTTP/1.1\r\n\r\n"]);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert_eq!(
        out.matches("HTTP/1.1").count(),
        1,
        "the rest was thrown away"
    );
    assert_eq!(d.events.iter().filter(|e| **e == "shutdown").count(), 1);
    assert_eq!(d.log[0].request_line, "-");
}

#[test]
fn a_body_is_skipped_in_any_framing_and_a_large_one_refused() {
    let (out, _) = serve(&[
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n12",
        b"345GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
    ]);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    let (out, _) = serve(&[b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"]);
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
}

#[test]
fn a_large_file_goes_by_sendfile_after_a_head_that_waits_for_it() {
    let big = BigFile::new("sendfile", 100_000);
    let mut d = Driver::new().with_big(&big);
    let mut s = Session::new(d.now);
    let request = b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    // Short sends: the session resumes where each one stopped.
    assert!(d.run(&mut s, &[request], 7000));
    let split = d.out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(d.out[split..] == big.bytes[..], "the body differs");
    assert_eq!(d.events.first(), Some(&"recv"));
    // The head is held back (`MSG_MORE`) until the file's first bytes.
    assert!(d.events.contains(&"send-more"), "{:?}", d.events);
    assert!(!d.events.contains(&"send"), "{:?}", d.events);
    assert!(d.events.iter().filter(|e| **e == "sendfile").count() >= 14);
    assert_eq!(d.log[0].length, 100_000);
}

#[test]
fn every_file_sent_by_sendfile_shares_a_packet_with_its_head() {
    // Just past what goes in the head's `writev`, and a large file.
    for len in [SMALL_BODY + 1, 1 << 20] {
        let big = BigFile::new(&format!("cork-{len}"), len);
        let mut d = Driver::new().with_big(&big);
        let mut s = Session::new(d.now);
        let request = b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        assert!(d.run(&mut s, &[request], usize::MAX));
        let head_then_file = ["recv", "send-more", "sendfile"];
        assert_eq!(d.events[..3], head_then_file, "{len} bytes");
        assert_eq!(d.log[0].length, len as u64);
    }
    // A range of a file waits for its first bytes the same way.
    let big = BigFile::new("cork-range", 100_000);
    let mut d = Driver::new().with_big(&big);
    let mut s = Session::new(d.now);
    let request =
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-49999\r\nConnection: close\r\n\r\n";
    assert!(d.run(&mut s, &[request], usize::MAX));
    assert_eq!(d.events[..3], ["recv", "send-more", "sendfile"]);
    assert_eq!(d.log[0].status, 206);
}

#[test]
fn nothing_is_read_while_a_response_is_being_sent() {
    let big = BigFile::new("backpressure", 50_000);
    let mut d = Driver::new().with_big(&big);
    let mut s = Session::new(d.now);
    let input = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /";
    s.read_buf(&mut d.pools, 0)[..input.len()].copy_from_slice(input);
    s.received(input.len(), d.now);
    s.process(&mut d.env());
    let Next::Open { path, .. } = s.next() else {
        panic!("{:?}", s.next());
    };
    let opened = d.open(path, false);
    s.opened(opened, &mut d.env());
    assert!(matches!(s.next(), Next::NoDelay));
    s.nodelay_set();
    assert!(matches!(s.next(), Next::Send { more: true, .. }));
    let Next::Send { head, .. } = s.next() else {
        unreachable!()
    };
    let n = head.len();
    s.sent(n, &mut d.env());
    assert!(matches!(s.next(), Next::SendFile { offset: 0, .. }));
    s.sent(50_000, &mut d.env());
    // The pipelined bytes are parsed only now.
    assert!(matches!(s.next(), Next::Process));
}

#[test]
fn a_slow_head_times_out_with_408_and_a_lingering_close_and_an_idle_one_quietly() {
    let mut d = Driver::new();
    let mut s = Session::new(d.now);
    assert_eq!(s.deadline(&TIMEOUTS), d.now + TIMEOUTS.header);
    s.timed_out(&mut d.env());
    assert!(
        matches!(s.next(), Next::Close),
        "nothing started: close quietly"
    );

    let mut s = Session::new(d.now);
    s.read_buf(&mut d.pools, 0)[..4].copy_from_slice(b"GET ");
    s.received(4, d.now);
    s.process(&mut d.env());
    s.timed_out(&mut d.env());
    // The client may still be sending: the 408 goes out like any response,
    // then the close lingers until the client's end of stream.
    assert!(d.run(&mut s, &[b"more of the head"], usize::MAX));
    let out = String::from_utf8(d.out.clone()).unwrap();
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    assert!(out.contains("Connection: close\r\n"));
    assert_eq!(d.events, ["send", "shutdown", "recv", "eof"]);
}

#[test]
fn an_idle_keep_alive_session_holds_no_buffer() {
    let mut d = Driver::new();
    let mut s = Session::new(d.now);
    assert!(s.is_idle());
    let request = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    s.read_buf(&mut d.pools, 0)[..request.len()].copy_from_slice(request);
    s.received(request.len(), d.now);
    assert!(!s.is_idle());
    while !matches!(s.next(), Next::Recv) {
        match s.next() {
            Next::Process => s.process(&mut d.env()),
            Next::Open { path, dir } => {
                let o = d.open(path, dir);
                s.opened(o, &mut d.env());
            }
            Next::NoDelay => s.nodelay_set(),
            Next::Send { head, body, .. } => {
                let n = head.len() + body.len();
                s.sent(n, &mut d.env());
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(s.is_idle());
    assert_eq!(s.input.capacity(), 0, "the read buffer went back");
    assert_eq!(d.pools.small.idle(), 1);
    assert_eq!(d.pools.outputs.idle(), 2, "head and body buffers went back");
    assert_eq!(s.deadline(&TIMEOUTS), d.now + TIMEOUTS.keepalive);
}

/// An error page looks like the demo site but stands alone: its style is
/// inline and it asks for nothing more (no stylesheet, image or script,
/// which under another root would be errors of their own); it is small,
/// and its Content-Length counts every byte of it.
#[test]
fn an_error_page_is_small_styled_and_fetches_nothing() {
    let (out, _) = serve(&[b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"]);
    let (head, page) = out.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
    assert!(
        head.ends_with(&format!("\r\nContent-Length: {}", page.len())),
        "{head}"
    );
    assert!(page.starts_with("<!DOCTYPE html>\n"), "{page}");
    assert!(page.contains("<title>404 Not Found</title>"), "{page}");
    assert!(page.contains("<h1>404 Not Found</h1>"), "{page}");
    assert!(
        page.contains("<style>") && page.contains("#b7410e"),
        "{page}"
    );
    for fetches in [
        "<link", "<script", "<img", "src=", "url(", "@import", "http:",
    ] {
        assert!(!page.contains(fetches), "{fetches} in {page}");
    }
    assert!(page.len() < 1024, "{} bytes", page.len());
}

#[test]
fn a_connection_in_the_middle_of_a_head_holds_no_read_buffer() {
    let mut d = Driver::new();
    let mut s = Session::new(d.now);
    s.read_buf(&mut d.pools, 0)[..1].copy_from_slice(b"G");
    s.received(1, d.now);
    s.process(&mut d.env());
    assert!(matches!(s.next(), Next::Recv));
    assert_eq!(
        s.input.capacity(),
        0,
        "the parser keeps the byte; the buffer went back"
    );
    // The rest of the head, in a buffer taken again, completes it.
    let rest = b"ET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    s.read_buf(&mut d.pools, 0)[..rest.len()].copy_from_slice(rest);
    s.received(rest.len(), d.now);
    s.process(&mut d.env());
    assert!(matches!(s.next(), Next::Open { path: "a.txt", .. }));
}
