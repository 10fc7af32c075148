//! From a request-target to a file: the path inside the document root, and
//! what opening it gave. The first line of defence against path traversal:
//! the target is percent-decoded segment by segment, then normalised (`.`
//! dropped, `..` climbing one level), and a `..` that would climb above the
//! root is refused. The second line is in `sys::open_beneath`: the kernel
//! itself refuses to resolve a path (or a symbolic link) that leaves it.

use std::fs::File;
use std::sync::Arc;

/// Why a target does not name a file we may serve, each with its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum PathError {
    /// Not an origin-form or absolute-form target, a NUL byte, bad
    /// percent-encoding.
    BadRequest = 400,
    /// Climbs out of the root.
    Forbidden = 403,
    /// Cannot name a file (an encoded `/` inside a segment).
    NotFound = 404,
}

impl PathError {
    pub fn status(self) -> u16 {
        self as u16
    }
}

/// A normalised path relative to the root: segments joined by `/`, no
/// `.`, `..` or empty segments; empty for the root itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub relative: String,
    /// The decoded path ended with `/` (a directory was asked for).
    pub trailing_slash: bool,
}

// ANCHOR: resolve
/// Decodes and normalises a request-target.
pub fn resolve(target: &[u8]) -> Result<Resolved, PathError> {
    // Absolute form (`http://host/path`): servers must accept it (RFC 9112
    // §3.2.2); the authority is ignored, as this server has one site.
    let target = strip_authority(target);
    if target.first() != Some(&b'/') {
        return Err(PathError::BadRequest);
    }
    // The query is not part of the path; a fragment is never sent.
    let path = match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) if target[i] == b'#' => return Err(PathError::BadRequest),
        Some(i) => &target[..i],
        None => target,
    };
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split(|&b| b == b'/') {
        let segment = percent_decode(raw)?;
        if segment.contains(&0) {
            return Err(PathError::BadRequest);
        }
        if segment.contains(&b'/') {
            // `%2F`: a slash inside a name. No file has such a name.
            return Err(PathError::NotFound);
        }
        match segment.as_slice() {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::Forbidden);
                }
            }
            _ => segments.push(String::from_utf8(segment).map_err(|_| PathError::NotFound)?),
        }
    }
    Ok(Resolved {
        relative: segments.join("/"),
        trailing_slash: path.ends_with(b"/"),
    })
}
// ANCHOR_END: resolve

/// Whether a `Host` field value is an authority without userinfo (RFC 9112
/// §3.2, RFC 3986 §3.2.2): an IP literal in brackets, or a reg-name or IPv4
/// address (unreserved characters, sub-delims and %XX), then an optional
/// `:port`; or empty (a target without authority). `a b` is not a host.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.iter().rposition(|&b| b == b':' || b == b']') {
        Some(i) if value[i] == b':' => (&value[..i], &value[i + 1..]),
        _ => (value, &b""[..]),
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => inner
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b":.vV".contains(&b)),
        _ => host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)),
    };
    host_ok && port.iter().all(u8::is_ascii_digit)
}

// ANCHOR: location
/// The absolute path of a normalised `relative` path on this host, for a
/// `Location` field: `/` and the segments, each percent-encoded where a
/// byte is not a `pchar` (RFC 3986 §3.3).
///
/// Built from the *normalised* path, never from what the client wrote: a
/// target such as `//evil.example/..//docs` names `docs` here, and echoing
/// it back would give `Location: //evil.example/..//docs/`, which a browser
/// reads as another host (an open redirect).
pub fn location(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len() + 2);
    out.push('/');
    for &b in relative.as_bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
// ANCHOR_END: location

fn strip_authority(target: &[u8]) -> &[u8] {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            return match rest.iter().position(|&b| b == b'/') {
                Some(i) => &rest[i..],
                None => b"/",
            };
        }
    }
    target
}

fn percent_decode(s: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(PathError::BadRequest)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadRequest)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| PathError::BadRequest)?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

// What opening a path gave: the session's side of the worker's open-file
// cache (`file_cache.rs`), which builds these and imports them from here,
// so `http/` needs nothing from outside the protocol.

/// A file opened beneath the root, with what a response needs from it.
pub struct OpenFile {
    pub file: File,
    pub len: u64,
    /// Seconds since the epoch, for `If-Modified-Since`.
    pub modified_secs: u64,
    /// The `Last-Modified` value, formatted once.
    pub last_modified: String,
    pub content_type: &'static str,
    /// A 200's fields for the whole file, built once (`response::file_fields`).
    pub fields: Vec<u8>,
    /// The whole file, when it is small enough to go with its head.
    pub contents: Option<Vec<u8>>,
}

/// What opening a request's path gave.
pub enum Opened {
    File(Arc<OpenFile>),
    /// A directory asked for without its trailing slash: redirect to it, so
    /// the page's relative links resolve inside it.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(t: &str) -> Result<String, PathError> {
        resolve(t.as_bytes()).map(|r| r.relative)
    }

    #[test]
    fn normalises() {
        assert_eq!(rel("/"), Ok(String::new()));
        assert_eq!(rel("/a/./b//c/../d?x=../.."), Ok("a/b/d".into()));
        assert_eq!(rel("/a%20b.html"), Ok("a b.html".into()));
        assert_eq!(rel("http://host:8080/x/y"), Ok("x/y".into()));
        assert_eq!(rel("/a/.."), Ok(String::new()));
        assert!(resolve(b"/docs/").unwrap().trailing_slash);
    }

    #[test]
    fn host_values() {
        for good in [
            "t",
            "example.com:8080",
            "127.0.0.1",
            "[::1]:80",
            "",
            "a-b_c~d",
            "x:",
        ] {
            assert!(valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "a b",
            "a/b",
            "a?b",
            "a#b",
            "user@host",
            "[::1",
            "h:8x",
            "\\x",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn a_location_is_on_this_host_and_encoded() {
        for (target, expected) in [
            ("/docs", "/docs"),
            ("//evil.example/..//docs", "/docs"),
            ("/\\evil.example/..//docs", "/docs"),
            ("///evil.example/../docs", "/docs"),
            ("/a%20b/c", "/a%20b/c"),
            ("/%C3%A9t%C3%A9", "/%C3%A9t%C3%A9"),
        ] {
            let relative = resolve(target.as_bytes()).unwrap().relative;
            assert_eq!(location(&relative), expected, "{target}");
        }
    }

    #[test]
    fn refuses_every_traversal_form() {
        for t in [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/%2e%2E/etc/passwd",
            "/.%2e/etc/passwd",
        ] {
            assert_eq!(rel(t), Err(PathError::Forbidden), "{t}");
        }
        assert_eq!(rel("/..%2fetc%2fpasswd"), Err(PathError::NotFound));
        assert_eq!(rel("/a%2F..%2F..%2Fetc"), Err(PathError::NotFound));
        assert_eq!(rel("/etc/passwd%00.html"), Err(PathError::BadRequest));
        assert_eq!(rel("/bad%zz"), Err(PathError::BadRequest));
        assert_eq!(rel("/bad%2"), Err(PathError::BadRequest));
        assert_eq!(rel("*"), Err(PathError::BadRequest));
        assert_eq!(rel("etc/passwd"), Err(PathError::BadRequest));
    }
}
