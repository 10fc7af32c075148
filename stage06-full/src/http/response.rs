//! Every response this server sends, built as bytes and nothing else: the
//! status line and fields, error pages, redirects, conditional (304, 412)
//! and range (206, 416) answers, and the keep-alive decision. Sending one
//! is the driver's business (`writev`, `sendfile`, an io_uring submission),
//! so the session's unit tests can check every byte without a socket.

use std::io::Write;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::parser::{Head, Version};
use super::path::{OpenFile, Opened, Resolved};
use super::range::{self, RangeAnswer};
use crate::pool::BufferPool;

/// The `Server` field of every response.
pub const SERVER: &str = "stage06";

/// A response being sent: what is left of it, and what the log needs.
pub struct Response {
    pub head: Vec<u8>,
    pub head_sent: usize,
    /// A small body, sent with the head in one `writev`.
    pub body: Vec<u8>,
    pub body_sent: usize,
    /// A large body: a range of an open file, sent after head and body.
    pub file: Option<FilePart>,
    /// The connection closes once this response has gone.
    pub close: bool,
    pub status: u16,
    /// Bytes of body, for the access log (0 for HEAD).
    pub length: u64,
}

/// One request and its response, for the access log.
#[derive(Debug, PartialEq, Eq)]
pub struct Exchange {
    /// `METHOD TARGET VERSION`, as sent (`-` when there was no request line).
    pub request_line: String,
    pub status: u16,
    /// Bytes of body sent.
    pub length: u64,
}

/// The part of a file still to send: `offset..end`.
pub struct FilePart {
    pub file: Arc<OpenFile>,
    pub offset: u64,
    pub end: u64,
}

impl Response {
    /// A response none of which has gone yet.
    fn new(head: Vec<u8>, body: Vec<u8>, file: Option<FilePart>, close: bool, status: u16) -> Self {
        let length = body.len() as u64 + file.as_ref().map_or(0, |f| f.end - f.offset);
        Response {
            head,
            head_sent: 0,
            body,
            body_sent: 0,
            file,
            close,
            status,
            length,
        }
    }

    /// Everything has gone: head, small body and file range.
    pub fn all_sent(&self) -> bool {
        self.head_sent == self.head.len()
            && self.body_sent == self.body.len()
            && self.file.as_ref().is_none_or(|f| f.offset >= f.end)
    }

    /// Counts `n` more bytes sent: head first, then body, then file.
    pub fn advance(&mut self, n: usize) {
        let h = n.min(self.head.len() - self.head_sent);
        self.head_sent += h;
        let b = (n - h).min(self.body.len() - self.body_sent);
        self.body_sent += b;
        if let Some(f) = self.file.as_mut() {
            f.offset += (n - h - b) as u64;
        }
    }

    /// Gives the buffers back to the pool they came from.
    pub fn give_back(self, outputs: &mut BufferPool) {
        outputs.give(self.head);
        outputs.give(self.body);
    }
}

/// The reason phrase for the status codes this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Starts a head: the status line (always `HTTP/1.1`, whatever the
/// request's, RFC 9110 §6.2), `Date` and `Server`. The pieces are copied,
/// not run through `write!`, whose formatting (an argument list walked at
/// run time, a call per piece) costs every response more than the copying.
pub fn begin(out: &mut Vec<u8>, status: u16, date: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&three_digits(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A status code's three digits (every code this server sends has three).
fn three_digits(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [s / 100, s / 10 % 10, s % 10].map(|digit| b'0' + digit as u8)
}

// ANCHOR: file_fields
/// The fields of a 200 for a whole file, which depend on nothing but the
/// file: built once, when the file is opened, kept with it in the open-file
/// cache, and copied into every response for it. Only the status line,
/// `Date` (formatted once a second) and `Connection` are written per
/// response.
pub fn file_fields(content_type: &str, len: u64, last_modified: &str) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, "Content-Type", content_type);
    field(&mut out, "Content-Length", len);
    field(&mut out, "Last-Modified", last_modified);
    field(&mut out, "Accept-Ranges", "bytes");
    out
}
// ANCHOR_END: file_fields

/// Adds one field.
pub fn field(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}: {value}\r\n");
}

/// Ends the head.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// The body of an error response: a small page in the demo site's colours
/// and type, with a link to the front page. Its style is inline: linking
/// the site's `style.css` would cost every error page a second request,
/// and under another `--root` that request would be a 404 of its own.
pub fn error_page(status: u16) -> String {
    let reason = reason(status);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{status} {reason}</title><style>{ERROR_STYLE}</style></head>\n\
         <body><h1>{status} {reason}</h1><p><a href=\"/\">The front page</a></p>\
         <footer>{SERVER}</footer></body></html>\n"
    )
}

/// The demo site's look (`www/style.css`: its ink, paper, accent and muted
/// colours, its measure and type), cut down to what an error page uses.
const ERROR_STYLE: &str = "body{margin:0 auto;max-width:44rem;padding:2rem 1.25rem;\
    font:17px/1.6 system-ui,sans-serif;color:#1d2330;background:#fbfaf7}\
    h1{font-size:2rem;border-bottom:2px solid #b7410e;padding-bottom:.2rem}\
    a{color:#b7410e}footer{margin-top:3rem;color:#5b6270;font-size:.9rem}";

// ANCHOR: keep_alive
/// Whether the client asked to keep the connection open: HTTP/1.1 does
/// unless it says `Connection: close`; HTTP/1.0 does not unless it says
/// `Connection: keep-alive` (RFC 9112 §9.3).
pub fn wants_keep_alive(head: &Head) -> bool {
    match head.version {
        Version::Http11 => !head.has_token("connection", "close"),
        Version::Http10 => head.has_token("connection", "keep-alive"),
    }
}
// ANCHOR_END: keep_alive

/// Makes `r` the last response of its connection: `Connection: close` in
/// its head (once), and `close` set.
pub fn close_after(r: &mut Response) {
    if !r.close {
        r.head.truncate(r.head.len() - 2);
        field(&mut r.head, "Connection", "close");
        end(&mut r.head);
        r.close = true;
    }
}

/// The `Connection` field a response needs, if any.
fn connection_field(out: &mut Vec<u8>, version: Version, close: bool) {
    if close {
        field(out, "Connection", "close");
    } else if version == Version::Http10 {
        field(out, "Connection", "keep-alive");
    }
}

/// A whole error response with `Connection: close`, for when there is no
/// session to build one (503: every slot is taken).
pub fn complete(status: u16, date: &str) -> Vec<u8> {
    let r = error(status, false, true, date, &mut BufferPool::new(0, 0, false));
    [r.head, r.body].concat()
}

/// An error response: a small HTML page (none for HEAD); a 405 names the
/// methods allowed (RFC 9110 §15.5.6).
pub fn error(
    status: u16,
    head_only: bool,
    close: bool,
    date: &str,
    outputs: &mut BufferPool,
) -> Response {
    let allow = (status == 405).then_some(("Allow", "GET, HEAD"));
    error_with(status, head_only, close, date, outputs, allow)
}

/// An error response with one more field (`Location`, `Content-Range`).
fn error_with(
    status: u16,
    head_only: bool,
    close: bool,
    date: &str,
    outputs: &mut BufferPool,
    extra: Option<(&str, &str)>,
) -> Response {
    let page = error_page(status);
    let mut head = outputs.take();
    begin(&mut head, status, date);
    field(&mut head, "Content-Type", "text/html; charset=utf-8");
    field(&mut head, "Content-Length", page.len());
    if let Some((name, value)) = extra {
        field(&mut head, name, value);
    }
    if close {
        field(&mut head, "Connection", "close");
    }
    end(&mut head);
    let mut body = outputs.take();
    if !head_only {
        body.extend_from_slice(page.as_bytes());
    }
    Response::new(head, body, None, close, status)
}

// ANCHOR: for_request
/// The response to a GET or HEAD, once its path has been opened.
pub fn for_request(
    head: &Head,
    path: &Resolved,
    opened: Opened,
    close: bool,
    date: &str,
    outputs: &mut BufferPool,
) -> Response {
    let head_only = head.method == "HEAD";
    match opened {
        Opened::File(file) => for_file(head, file, close, date, outputs),
        Opened::Redirect => {
            let location = format!("{}/", super::path::location(&path.relative));
            let extra = Some(("Location", location.as_str()));
            error_with(301, head_only, close, date, outputs, extra)
        }
        Opened::Status(status) => error(status, head_only, close, date, outputs),
    }
}
// ANCHOR_END: for_request

/// The preconditions in RFC 9110 §13.2.2's order, for a file that exists:
/// 412 when it changed after the client's date, 304 when the client's copy
/// is current; then 416 for a range outside the file, else 200 or 206 with
/// the file (or the part asked for).
fn for_file(
    head: &Head,
    file: Arc<OpenFile>,
    close: bool,
    date: &str,
    outputs: &mut BufferPool,
) -> Response {
    let head_only = head.method == "HEAD";
    // First, so no range of a changed file is sent: ignoring the field
    // would hand a client that stitches ranges a part of a newer file. An
    // error page like any other, on a connection kept, as nginx's 412.
    if changed_since(head, &file) {
        return error(412, head_only, close, date, outputs);
    }
    let len = file.len;
    let (status, start, end) = match head.header("range") {
        // Before Range (§13.2.2): a head with the file's time, no body.
        _ if not_modified(head, &file) => (304, 0, 0),
        // If-Range names a validator this server does not check (it sends
        // no ETag): the safe reading is "send the whole file".
        Some(r) if head.header("if-range").is_none() => match range::answer(r, len) {
            RangeAnswer::Full => (200, 0, len),
            RangeAnswer::Partial { start, end } => (206, start, end + 1),
            RangeAnswer::Unsatisfiable => {
                let unsatisfied = format!("bytes */{len}");
                let extra = Some(("Content-Range", unsatisfied.as_str()));
                return error_with(416, head_only, close, date, outputs, extra);
            }
        },
        _ => (200, 0, len),
    };
    let mut out = outputs.take();
    file_head(&mut out, head, &file, (status, start, end), close, date);
    let mut body = outputs.take();
    let mut large = None;
    if !head_only && status != 304 {
        large = file_body(file, start, end, &mut body);
    }
    Response::new(out, body, large, close, status)
}

/// Bytes `start..end` of `file`: copied into `body` from a small file's
/// cached contents (a copy, not a read), or left to `sendfile` as a part.
fn file_body(file: Arc<OpenFile>, start: u64, end: u64, body: &mut Vec<u8>) -> Option<FilePart> {
    match &file.contents {
        Some(contents) => {
            body.extend_from_slice(&contents[start as usize..end as usize]);
            None
        }
        None => Some(FilePart {
            file,
            offset: start,
            end,
        }),
    }
}

/// `If-Unmodified-Since` before the file's time: the file changed after the
/// client's copy (RFC 9110 §13.1.4). Ignored beside `If-Match`, which
/// replaces it, and when it is not a date (§13.1.4). nginx answers 412 to
/// a date it cannot read (`ngx_http_test_if_unmodified`, src/http/modules/
/// ngx_http_not_modified_filter_module.c: its parser's error, -1, is before
/// every file's time), which here would refuse the file to any client that
/// sends an obsolete date format (`date::parse` reads IMF-fixdate only).
fn changed_since(head: &Head, file: &OpenFile) -> bool {
    head.header("if-match").is_none()
        && date_secs(head, "if-unmodified-since").is_some_and(|since| file.modified_secs > since)
}

/// `If-Modified-Since` at or after the file's time: the client's copy is
/// current (RFC 9110 §13.1.3; whole seconds, as HTTP dates are).
fn not_modified(head: &Head, file: &OpenFile) -> bool {
    date_secs(head, "if-modified-since").is_some_and(|since| file.modified_secs <= since)
}

/// A date field's value in seconds since the epoch; `None` when the field
/// is absent or its value is not a date.
fn date_secs(head: &Head, name: &str) -> Option<u64> {
    let date = super::date::parse(head.header(name)?)?;
    Some(date.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// The head of a 304, or of a 200 or 206 for bytes `from..to` of `file`.
fn file_head(
    out: &mut Vec<u8>,
    request: &Head,
    file: &OpenFile,
    (status, from, to): (u16, u64, u64),
    close: bool,
    date: &str,
) {
    begin(out, status, date);
    match status {
        304 => field(out, "Last-Modified", &file.last_modified),
        200 => out.extend_from_slice(&file.fields),
        _ => {
            let fields = file_fields(file.content_type, to - from, &file.last_modified);
            out.extend_from_slice(&fields);
            let range = format!("bytes {from}-{}/{}", to - 1, file.len);
            field(out, "Content-Range", range);
        }
    }
    connection_field(out, request.version, close);
    end(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{WRITE_BUF, parser::Parser, path};

    const DATE: &str = "Sun, 29 Nov 2026 12:00:00 GMT";
    /// The file's time, and a second before it.
    const MODIFIED: &str = "Sun, 01 Nov 2026 00:00:00 GMT";
    const BEFORE: &str = "Sat, 31 Oct 2026 23:59:59 GMT";

    /// The answer to `request` where `/a.txt` holds `hello\n`, modified at
    /// `MODIFIED`, `/docs` is a directory and nothing else exists.
    fn answer(request: &str) -> Response {
        let mut parser = Parser::new();
        assert!(parser.feed(request.as_bytes()).expect("a head").done);
        let head = parser.take();
        let path = path::resolve(&head.target).expect("a path");
        let opened = match path.relative.as_str() {
            "a.txt" => Opened::File(Arc::new(OpenFile {
                file: std::fs::File::open("/dev/null").expect("open /dev/null"),
                len: 6,
                modified_secs: 1_793_491_200,
                last_modified: MODIFIED.to_string(),
                content_type: "text/plain",
                fields: file_fields("text/plain", 6, MODIFIED),
                contents: Some(b"hello\n".to_vec()),
            })),
            "docs" => Opened::Redirect,
            _ => Opened::Status(404),
        };
        let mut outputs = BufferPool::new(WRITE_BUF, 4, false);
        for_request(&head, &path, opened, false, DATE, &mut outputs)
    }

    #[test]
    fn if_unmodified_since_before_the_file_gets_412_byte_for_byte() {
        let page = error_page(412);
        let expected = format!(
            "HTTP/1.1 412 Precondition Failed\r\nDate: {DATE}\r\nServer: stage06\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            page.len()
        );
        for method in ["GET", "HEAD"] {
            let r = answer(&format!(
                "{method} /a.txt HTTP/1.1\r\nHost: t\r\nIf-Unmodified-Since: {BEFORE}\r\n\r\n"
            ));
            assert_eq!(String::from_utf8_lossy(&r.head), expected, "{method}");
            let body: &[u8] = if method == "GET" {
                page.as_bytes()
            } else {
                b""
            };
            assert_eq!(r.body, body, "{method}");
            assert_eq!((r.status, r.length), (412, body.len() as u64));
            assert!(!r.close && r.file.is_none(), "{method}");
        }
    }

    /// RFC 9110 §13.2.2's order: If-Unmodified-Since first, before
    /// If-Modified-Since and Range; ignored when it cannot apply.
    #[test]
    fn if_unmodified_since_comes_first_and_is_ignored_when_it_cannot_apply() {
        let cases: [(&str, String, u16); 11] = [
            ("/a.txt", format!("If-Unmodified-Since: {MODIFIED}"), 200),
            ("/a.txt", format!("If-Unmodified-Since: {DATE}"), 200),
            ("/a.txt", "If-Unmodified-Since: yesterday".into(), 200),
            (
                "/a.txt",
                format!("If-Unmodified-Since: {BEFORE}, {DATE}"),
                200,
            ),
            // If-Match replaces it (§13.1.4).
            (
                "/a.txt",
                format!("If-Unmodified-Since: {BEFORE}\r\nIf-Match: *"),
                200,
            ),
            // Before ranges, satisfiable or not, and before a 304.
            (
                "/a.txt",
                format!("If-Unmodified-Since: {BEFORE}\r\nRange: bytes=1-3"),
                412,
            ),
            (
                "/a.txt",
                format!("If-Unmodified-Since: {BEFORE}\r\nRange: bytes=9-"),
                412,
            ),
            (
                "/a.txt",
                format!("If-Unmodified-Since: {MODIFIED}\r\nRange: bytes=1-3"),
                206,
            ),
            (
                "/a.txt",
                format!("If-Unmodified-Since: {BEFORE}\r\nIf-Modified-Since: {DATE}"),
                412,
            ),
            // Only for a file that exists: other answers stay (§13.2.1).
            ("/nope", format!("If-Unmodified-Since: {BEFORE}"), 404),
            ("/docs", format!("If-Unmodified-Since: {BEFORE}"), 301),
        ];
        for (target, fields, status) in cases {
            let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{fields}\r\n\r\n");
            assert_eq!(answer(&request).status, status, "{request:?}");
        }
        let current = format!("If-Unmodified-Since: {MODIFIED}\r\nIf-Modified-Since: {DATE}");
        let request = format!("GET /a.txt HTTP/1.1\r\nHost: t\r\n{current}\r\n\r\n");
        assert_eq!(
            answer(&request).status,
            304,
            "a true condition changes nothing"
        );
    }
}
