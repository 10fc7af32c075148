//! What opening a request's path gave, and the file's content type: the
//! session's side of the worker's open-file cache (`file_cache.rs`), which
//! builds these and imports them from here, so `http/` needs nothing from
//! outside the protocol.

use std::fs::File;
use std::sync::Arc;

/// A file opened beneath the root, with what a response needs from it.
pub struct OpenFile {
    pub file: File,
    pub len: u64,
    /// Seconds since the epoch, for `If-Modified-Since`.
    pub modified_secs: u64,
    /// The `Last-Modified` value, formatted once.
    pub last_modified: String,
    pub content_type: &'static str,
    /// The fields of a 200 for the whole file, built once
    /// (`response::file_fields`).
    pub fields: Vec<u8>,
    /// The whole file when it is at most `small` bytes: it goes out in the
    /// same `writev` as the head, with no read per request.
    pub contents: Option<Vec<u8>>,
}

/// What opening a request's path gave.
pub enum Opened {
    File(Arc<OpenFile>),
    /// A directory asked for without its trailing slash: redirect to it.
    Redirect,
    /// Not servable: 403, 404 or 500.
    Status(u16),
}

/// The `Content-Type` for a file name, by its extension. Text types carry
/// `charset=utf-8`.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => "application/octet-stream",
    }
}
