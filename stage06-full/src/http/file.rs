//! What opening a request's path gave: the session's side of the worker's
//! open-file cache (`file_cache.rs`), which builds these and imports them
//! from here, so `http/` needs nothing from outside the protocol.

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
