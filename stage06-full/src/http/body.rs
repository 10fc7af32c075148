//! Request bodies: how long they are, and reading past them. A GET may
//! carry one, and its bytes must be thrown away, or they would be parsed
//! as the next request. Where a body ends is where request smuggling hides:
//! a front proxy and this server must agree on it, so every ambiguous case
//! is refused and the connection closed.

use super::parser::{Head, Progress, Version};

/// How the body of a request is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

// ANCHOR: framing
/// Decides the framing of a request's body, or the status that refuses it.
///
/// - `Transfer-Encoding` in an HTTP/1.0 request: 400, whatever
///   `Content-Length` says (RFC 9112 §6.1: its framing is faulty, as
///   HTTP/1.0 has no transfer codings).
/// - `Content-Length` and `Transfer-Encoding` together: 400 (RFC 9112
///   §6.1 allows processing it, but the two readings disagree on where the
///   body ends, which is how smuggling works).
/// - Two `Content-Length` values that differ, or one that is not a number:
///   400.
/// - A transfer coding other than plain `chunked`: 501.
pub fn framing(head: &Head) -> Result<Framing, u16> {
    let te: Vec<&[u8]> = head.headers_named("transfer-encoding").collect();
    if head.version == Version::Http10 && !te.is_empty() {
        return Err(400);
    }
    let mut length: Option<u64> = None;
    for value in head.headers_named("content-length") {
        // A list ("5, 5") counts as several values.
        for part in value.split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or(400u16)?;
            if length.is_some_and(|l| l != n) {
                return Err(400);
            }
            length = Some(n);
        }
    }
    match (te.is_empty(), length) {
        (false, Some(_)) => Err(400),
        (false, None) => {
            let mut codings = te
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(|c| c.trim_ascii());
            match (codings.next(), codings.next()) {
                (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
                _ => Err(501),
            }
        }
        (true, Some(0)) | (true, None) => Ok(Framing::None),
        (true, Some(n)) => Ok(Framing::Length(n)),
    }
}
// ANCHOR_END: framing

fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Why a body was refused while reading it, each with its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum BodyError {
    /// More than the limit.
    TooLarge = 413,
    /// Not valid chunked coding.
    Malformed = 400,
}

impl BodyError {
    pub fn status(self) -> u16 {
        self as u16
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    Size,
    /// After `;`: a chunk extension, ignored up to the end of the line.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: trailer fields, or the empty line that ends.
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
}

/// Longest chunk-size line, extensions included, and longest trailer.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER: usize = 16 * 1024;

/// Reads past one request's body, whatever its framing, up to a limit.
#[derive(Debug)]
pub struct BodySkipper {
    framing: Framing,
    /// Bytes of body (decoded, for chunked) still expected in the current
    /// length or chunk.
    remaining: u64,
    total: u64,
    limit: u64,
    chunk: Chunk,
    line: usize,
}

impl BodySkipper {
    /// Starts reading a body; a `Content-Length` over `limit` is refused
    /// before a byte of it is read.
    pub fn new(framing: Framing, limit: u64) -> Result<BodySkipper, BodyError> {
        let remaining = match framing {
            Framing::Length(n) if n > limit => return Err(BodyError::TooLarge),
            Framing::Length(n) => n,
            _ => 0,
        };
        Ok(BodySkipper {
            framing,
            remaining,
            total: 0,
            limit,
            chunk: Chunk::SizeStart,
            line: 0,
        })
    }

    /// Nothing is left to skip: no body, or all of a `Content-Length` one.
    pub fn is_done(&self) -> bool {
        self.framing != Framing::Chunked && self.remaining == 0
    }

    /// Consumes as much of `input` as belongs to the body.
    pub fn skip(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        if self.framing == Framing::Chunked {
            return self.skip_chunked(input);
        }
        // No body (`remaining` is 0), or a `Content-Length` one.
        let n = (input.len() as u64).min(self.remaining);
        self.remaining -= n;
        Ok(Progress {
            consumed: n as usize,
            done: self.remaining == 0,
        })
    }

    fn skip_chunked(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        use Chunk::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if self.chunk == Data {
                // Skip a run of data at once.
                let n = ((input.len() - i) as u64).min(self.remaining);
                self.remaining -= n;
                i += n as usize;
                if self.remaining == 0 {
                    self.chunk = DataCr;
                }
                continue;
            }
            i += 1;
            self.line += 1;
            let limit = if matches!(self.chunk, TrailerStart | Trailer | TrailerLf) {
                MAX_TRAILER
            } else {
                MAX_CHUNK_LINE
            };
            if self.line > limit {
                return Err(BodyError::Malformed);
            }
            self.chunk = match (self.chunk, b) {
                (SizeStart | Size, b) if b.is_ascii_hexdigit() => self.size_digit(b)?,
                (Size, b';') | (Extension, b';') => Extension,
                (Extension, b) if b != b'\r' && b != b'\n' => Extension,
                (Size | Extension, b'\r') => SizeLf,
                (Size | Extension, b'\n') | (SizeLf, b'\n') => self.size_line_ended()?,
                (DataCr, b'\r') => DataLf,
                (DataCr, b'\n') | (DataLf, b'\n') => {
                    self.line = 0;
                    SizeStart
                }
                (TrailerStart, b'\r') => FinalLf,
                (TrailerStart, b'\n') | (FinalLf, b'\n') => {
                    return Ok(Progress {
                        consumed: i,
                        done: true,
                    });
                }
                (Trailer, b'\r') => TrailerLf,
                (Trailer, b'\n') | (TrailerLf, b'\n') => TrailerStart,
                (TrailerStart | Trailer, _) => Trailer,
                _ => return Err(BodyError::Malformed),
            };
        }
        Ok(Progress {
            consumed: input.len(),
            done: false,
        })
    }

    /// One more hex digit of a chunk's size; a size past what 64 bits hold
    /// is too large.
    fn size_digit(&mut self, b: u8) -> Result<Chunk, BodyError> {
        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
        if self.remaining > (u64::MAX >> 4) {
            return Err(BodyError::TooLarge);
        }
        self.remaining = self.remaining * 16 + digit;
        Ok(Chunk::Size)
    }

    /// A chunk-size line ended: its data follows, or (size 0) the trailer.
    /// The limit counts the sizes announced, so a body too large is
    /// refused before its data is read.
    fn size_line_ended(&mut self) -> Result<Chunk, BodyError> {
        self.line = 0;
        self.total = self.total.saturating_add(self.remaining);
        if self.total > self.limit {
            return Err(BodyError::TooLarge);
        }
        Ok(if self.remaining == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::Parser;
    use super::*;
    use proptest::prelude::*;

    fn head(fields: &str) -> Head {
        let text = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        let mut p = Parser::new();
        assert!(p.feed(text.as_bytes()).unwrap().done);
        p.take()
    }

    #[test]
    fn framing_rules() {
        assert_eq!(framing(&head("")), Ok(Framing::None));
        assert_eq!(
            framing(&head("Content-Length: 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(&head("Content-Length: 5\r\nContent-Length: 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(framing(&head("Content-Length: 5, 6\r\n")), Err(400));
        assert_eq!(
            framing(&head("Content-Length: 5\r\nContent-Length: 6\r\n")),
            Err(400)
        );
        assert_eq!(framing(&head("Content-Length: -1\r\n")), Err(400));
        assert_eq!(framing(&head("Content-Length: +5\r\n")), Err(400));
        assert_eq!(
            framing(&head("Transfer-Encoding: chunked\r\n")),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(&head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")),
            Err(400)
        );
        assert_eq!(
            framing(&head("Transfer-Encoding: gzip, chunked\r\n")),
            Err(501)
        );
        assert_eq!(framing(&head("Transfer-Encoding: identity\r\n")), Err(501));
    }

    fn skip_all(
        framing: Framing,
        limit: u64,
        input: &[u8],
        step: usize,
    ) -> Result<usize, BodyError> {
        let mut s = BodySkipper::new(framing, limit)?;
        let mut at = 0;
        while at < input.len() {
            let end = (at + step).min(input.len());
            let r = s.skip(&input[at..end])?;
            at += r.consumed;
            if r.done {
                return Ok(at);
            }
            if r.consumed == 0 {
                break;
            }
        }
        if s.is_done() {
            Ok(at)
        } else {
            Err(BodyError::Malformed)
        }
    }

    #[test]
    fn chunked_bodies_are_skipped_exactly_in_any_chunking() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..body.len() {
            assert_eq!(
                skip_all(Framing::Chunked, 100, body, step),
                Ok(body.len() - 4)
            );
        }
        assert_eq!(skip_all(Framing::Length(3), 100, b"abcNEXT", 2), Ok(3));
    }

    /// Skips `input` as a driver would that receives it in pieces ending at
    /// `cuts` (sorted): the skipper is given what has arrived and is not yet
    /// consumed. Returns where the body ended.
    fn skip_as_it_arrives(
        framing: Framing,
        limit: u64,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<usize, BodyError> {
        let mut s = BodySkipper::new(framing, limit)?;
        let mut at = 0;
        for arrived in cuts.iter().copied().chain([input.len()]) {
            while at < arrived {
                let r = s.skip(&input[at..arrived])?;
                at += r.consumed;
                if r.done {
                    return Ok(at);
                }
                if r.consumed == 0 {
                    break;
                }
            }
        }
        if s.is_done() {
            Ok(at)
        } else {
            Err(BodyError::Malformed)
        }
    }

    /// A chunked body of `chunks`, each with an extension if `ext`, and a
    /// trailer field if `trailer`.
    fn chunked(chunks: &[Vec<u8>], ext: bool, trailer: bool) -> Vec<u8> {
        let mut body = Vec::new();
        for data in chunks {
            let extension = if ext { ";name=value" } else { "" };
            body.extend_from_slice(format!("{:x}{extension}\r\n", data.len()).as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        if trailer {
            body.extend_from_slice(b"Trailer: x\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    proptest! {
        /// Property: any chunked body, arriving in any pieces, is skipped
        /// exactly, to its last byte and not one further (what follows is
        /// the next request). A failure shrinks to the smallest body and
        /// fewest cuts, and its seed is saved in proptest-regressions/.
        #[test]
        fn any_chunked_body_in_any_pieces_is_skipped_exactly(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..6),
            ext in any::<bool>(),
            trailer in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let body = chunked(&chunks, ext, trailer);
            let mut input = body.clone();
            input.extend_from_slice(b"NEXT");
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(
                skip_as_it_arrives(Framing::Chunked, 1 << 20, &input, &cuts),
                Ok(body.len())
            );
        }
    }

    #[test]
    fn limits_and_malformed_chunks() {
        assert_eq!(
            BodySkipper::new(Framing::Length(101), 100).err(),
            Some(BodyError::TooLarge)
        );
        assert_eq!(
            skip_all(Framing::Chunked, 10, b"b\r\nhello world\r\n0\r\n\r\n", 64),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            skip_all(Framing::Chunked, 100, b"5\r\nhelloX\r\n0\r\n\r\n", 64),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            skip_all(Framing::Chunked, 100, b"zz\r\n", 64),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            skip_all(Framing::Chunked, u64::MAX, b"ffffffffffffffffff\r\n", 64),
            Err(BodyError::TooLarge)
        );
    }
}
