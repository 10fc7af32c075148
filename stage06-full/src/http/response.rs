//! Writing a response head, and the small HTML body of an error response.

use std::io::Write;

/// The reason phrase for the status codes this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
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

/// The `Server` field of every response.
pub const SERVER: &str = "stage06";

/// Starts a head: the status line, `Date` and `Server`. Responses are
/// always `HTTP/1.1`, whatever the request's version (RFC 9110 §6.2).
pub fn begin(out: &mut Vec<u8>, status: u16, date: &str) {
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nDate: {date}\r\nServer: {SERVER}\r\n",
        reason(status)
    );
}

/// Adds one field.
pub fn field(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}: {value}\r\n");
}

/// Ends the head.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// The body of an error response: a small page that says what happened.
pub fn error_page(status: u16) -> String {
    let reason = reason(status);
    format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\
         <body><h1>{status} {reason}</h1><hr><p>{SERVER}</p></body></html>\n"
    )
}

/// A complete `503` response with `Connection: close`, for a connection
/// the worker has no slot for.
pub fn service_unavailable(date: &str) -> Vec<u8> {
    let body = error_page(503);
    let mut out = Vec::with_capacity(256 + body.len());
    begin(&mut out, 503, date);
    field(&mut out, "Content-Type", "text/html; charset=utf-8");
    field(&mut out, "Content-Length", body.len());
    field(&mut out, "Connection", "close");
    end(&mut out);
    out.extend_from_slice(body.as_bytes());
    out
}
