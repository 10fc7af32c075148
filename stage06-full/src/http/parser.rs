//! An incremental parser for the request line and header fields: a state
//! machine that consumes whatever bytes have arrived and resumes where it
//! stopped, so a request sent a byte at a time parses as one sent whole. It
//! refuses the first byte that cannot stand where it does, at once, not at
//! the end of its line: garbage is answered after one bad byte, not 8 KiB.
//!
//! ```text
//!            tchar            VCHAR                "HTTP/1.1"
//!  ┌────────┐ SP ┌────────┐ SP ┌─────────┐ CR? LF ┌─────────────┐
//!  │ Method ├───▶│ Target ├───▶│ Version ├───────▶│ HeaderStart │◀──────────┐
//!  └────────┘    └────────┘    └─────────┘        └──┬───────┬──┘           │
//!                                            CR? LF  │       │ tchar        │
//!                                           ┌────────▼┐   ┌──▼───┐ ':' ┌────┴──┐
//!                                           │  Done   │   │ Name ├────▶│ Value │
//!                                           └─────────┘   └──────┘     └───────┘
//!                                                                   CR? LF ends a field
//! ```

use std::fmt;

/// The longest request line accepted (method, target, version, CRLF).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// The most bytes of header fields accepted (all lines after the first).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields accepted.
pub const MAX_HEADERS: usize = 100;
/// The most bytes of empty lines (CR, LF) skipped before a request line.
/// RFC 9112 §2.2 asks a server to skip at least one empty line there (a
/// client may send a CRLF after a POST body); a few are plenty, and a
/// client that sends them for ever is refused rather than kept.
pub const MAX_EMPTY_LINE_BYTES: usize = 8;

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// As sent: methods are case-sensitive.
    pub method: String,
    /// The request-target, raw (still percent-encoded).
    pub target: Vec<u8>,
    pub version: Version,
    /// Field names in lower case; values without surrounding white space.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of the named field (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    /// Every value of the named field, in order.
    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// True if a comma-separated field (such as `Connection`) lists `token`,
    /// compared without regard to case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }
}

/// Why a head was rejected, each with its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ParseError {
    /// A byte that cannot stand where it does.
    BadRequest = 400,
    /// The request line is longer than [`MAX_REQUEST_LINE`].
    UriTooLong = 414,
    /// Header fields over [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`].
    HeadersTooLarge = 431,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    VersionNotSupported = 505,
}

impl ParseError {
    pub fn status(self) -> u16 {
        self as u16
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Before the method: empty lines are skipped (RFC 9112 §2.2).
    #[default]
    Start,
    Method,
    Target,
    /// Matching "HTTP/d.d"; the number is how many bytes matched.
    Version(u8),
    /// A CR ended the request line; LF must follow.
    RequestLineLf,
    /// At the start of a header line (or of the final empty line).
    HeaderStart,
    Name,
    /// After the colon, skipping white space before the value.
    ValueStart,
    Value,
    /// A CR ended a header line; LF must follow.
    HeaderLf,
    /// A CR started the final empty line; LF must follow.
    FinalLf,
    Done,
}

/// What one call to [`Parser::feed`] (or `BodySkipper::skip`) achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to this head or body (all of them
    /// unless it completed: the rest is what follows it).
    pub consumed: usize,
    /// The head (take it with [`Parser::take`]) or body is complete.
    pub done: bool,
}

/// The parser's state between calls; [`Parser::take`] resets it.
#[derive(Debug, Default)]
pub struct Parser {
    state: State,
    method: String,
    target: Vec<u8>,
    version: [u8; 8],
    headers: Vec<(String, Vec<u8>)>,
    name: String,
    value: Vec<u8>,
    line_bytes: usize,
    header_bytes: usize,
}

fn is_tchar(b: u8) -> bool {
    // RFC 9110 §5.6.2: token characters.
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Characters of a request-target: visible ASCII (RFC 3986 is stricter; the
/// path code decodes and checks what it uses).
fn is_target_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

/// Characters of a field value: visible ASCII, obs-text, space and tab.
fn is_value_char(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..0x7f).contains(&b) || b >= 0x80
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// True once any byte of a request has arrived (empty lines before a
    /// request do not count): the header timeout then applies.
    pub fn started(&self) -> bool {
        self.state != State::Start
    }

    // ANCHOR: feed
    // ANCHOR: feed_step
    /// Consumes as much of `input` as belongs to the head.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ParseError> {
        // LAB s6-parser BEGIN: step byte by byte; stop right after the byte that completes the head
        for (i, &b) in input.iter().enumerate() {
            self.step(b)?;
            if self.state == State::Done {
                return Ok(Progress {
                    consumed: i + 1,
                    done: true,
                });
            }
        }
        Ok(Progress {
            consumed: input.len(),
            done: false,
        })
        // LAB END
    }

    /// One byte: counted against its part's limit, then handed to the part
    /// of the head it belongs to.
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        // LAB s6-parser BEGIN: count the byte against its part's limit, then take the next state
        use State::*;
        self.state = match self.state {
            Start | Method | Target | Version(_) | RequestLineLf => {
                self.line_bytes += 1;
                if self.line_bytes > MAX_REQUEST_LINE {
                    return Err(ParseError::UriTooLong);
                }
                self.request_line(b)?
            }
            _ => {
                self.header_bytes += 1;
                if self.header_bytes > MAX_HEADER_BYTES {
                    return Err(ParseError::HeadersTooLarge);
                }
                self.header_line(b)?
            }
        };
        Ok(())
        // LAB END
    }
    // ANCHOR_END: feed_step

    // ANCHOR: request_line
    /// The request line: `METHOD SP TARGET SP HTTP/d.d CRLF`.
    fn request_line(&mut self, b: u8) -> Result<State, ParseError> {
        // LAB s6-parser BEGIN: METHOD SP TARGET SP HTTP/d.d, then CRLF or a bare LF
        use State::*;
        Ok(match (self.state, b) {
            (Start, b'\r' | b'\n') if self.line_bytes <= MAX_EMPTY_LINE_BYTES => Start,
            (Start | Method, b) if is_tchar(b) => {
                self.method.push(b as char);
                Method
            }
            (Method, b' ') => Target,
            (Target, b' ') if !self.target.is_empty() => Version(0),
            (Target, b) if is_target_char(b) => {
                self.target.push(b);
                Target
            }
            (Version(n), b) if n < 8 => {
                let fits = match n {
                    0..=4 => b == b"HTTP/"[n as usize],
                    5 | 7 => b.is_ascii_digit(),
                    _ => b == b'.',
                };
                if !fits {
                    return Err(ParseError::BadRequest);
                }
                self.version[n as usize] = b;
                Version(n + 1)
            }
            (Version(8), b'\r') => {
                self.check_version()?;
                RequestLineLf
            }
            // A bare LF ends a line too (RFC 9112 §2.2 allows accepting it).
            (Version(8), b'\n') | (RequestLineLf, b'\n') => {
                self.check_version()?;
                HeaderStart
            }
            // A control character, a second space, a CR not followed by LF.
            _ => return Err(ParseError::BadRequest),
        })
        // LAB END
    }
    // ANCHOR_END: request_line

    // ANCHOR: header_line
    /// Header fields, `NAME: VALUE CRLF` each, then the empty line.
    fn header_line(&mut self, b: u8) -> Result<State, ParseError> {
        // LAB s6-parser BEGIN: NAME: VALUE lines, each ended by CRLF or LF, then an empty line
        use State::*;
        Ok(match (self.state, b) {
            (HeaderStart, b'\r') => FinalLf,
            (HeaderStart, b'\n') | (FinalLf, b'\n') => Done,
            (HeaderStart, b) if is_tchar(b) => {
                if self.headers.len() == MAX_HEADERS {
                    return Err(ParseError::HeadersTooLarge);
                }
                self.name.push(b.to_ascii_lowercase() as char);
                Name
            }
            (Name, b) if is_tchar(b) => {
                self.name.push(b.to_ascii_lowercase() as char);
                Name
            }
            (Name, b':') => ValueStart,
            (ValueStart, b' ' | b'\t') => ValueStart,
            (ValueStart | Value, b'\r') => {
                self.end_field();
                HeaderLf
            }
            (ValueStart | Value, b'\n') | (HeaderLf, b'\n') => {
                if self.state != HeaderLf {
                    self.end_field();
                }
                HeaderStart
            }
            (ValueStart | Value, b) if is_value_char(b) => {
                self.value.push(b);
                Value
            }
            // Anything else cannot stand here: a space in a name, a control
            // character, a CR not followed by LF, a line folded with leading
            // white space (obsolete, and a smuggling risk), bytes after Done.
            _ => return Err(ParseError::BadRequest),
        })
        // LAB END
    }
    // ANCHOR_END: header_line
    // ANCHOR_END: feed

    fn check_version(&self) -> Result<(), ParseError> {
        match &self.version {
            b"HTTP/1.1" | b"HTTP/1.0" => Ok(()),
            _ => Err(ParseError::VersionNotSupported),
        }
    }

    fn end_field(&mut self) {
        let mut value = std::mem::take(&mut self.value);
        // Only spaces and tabs can trail: a value holds no other white space.
        value.truncate(value.trim_ascii_end().len());
        let name = std::mem::take(&mut self.name);
        self.headers.push((name, value));
    }

    /// Returns the completed head and resets the parser for the next
    /// request. Call only after `feed` reported `done`.
    pub fn take(&mut self) -> Head {
        let done = std::mem::take(self);
        Head {
            method: done.method,
            target: done.target,
            version: if &done.version == b"HTTP/1.0" {
                Version::Http10
            } else {
                Version::Http11
            },
            headers: done.headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_whole(input: &[u8]) -> Result<(Head, usize), ParseError> {
        let mut p = Parser::new();
        let progress = p.feed(input)?;
        assert!(
            progress.done,
            "incomplete: {:?}",
            String::from_utf8_lossy(input)
        );
        Ok((p.take(), progress.consumed))
    }

    #[test]
    fn parses_a_simple_request() {
        let (head, used) =
            parse_whole(b"GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\nX-Long:  b c \r\n\r\nrest")
                .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, b"/index.html?x=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.header("host"), Some(&b"a"[..]));
        assert_eq!(head.header("x-long"), Some(&b"b c"[..]));
        assert_eq!(
            used, 56,
            "consumed {used} bytes of a 56-byte head: what follows the head is the next request's"
        );
    }

    #[test]
    fn accepts_bare_lf_and_leading_empty_lines() {
        let (head, _) = parse_whole(b"\r\n\nHEAD / HTTP/1.0\nA:1\n\n").unwrap();
        assert_eq!(head.method, "HEAD");
        assert_eq!(head.version, Version::Http10);
        assert_eq!(head.header("a"), Some(&b"1"[..]));
    }

    #[test]
    fn rejects_a_bad_byte_as_soon_as_it_arrives() {
        let mut p = Parser::new();
        assert!(p.feed(b"GET / HTTP/1.1\r\nBad").is_ok());
        // A space inside a field name: rejected at that byte.
        assert_eq!(
            p.feed(b" "),
            Err(ParseError::BadRequest),
            "a space in a field name, before its colon, was accepted: refuse it (400) at that byte"
        );
        for bad in [
            &b"GE\x01T / HTTP/1.1\r\n\r\n"[..],
            b"GET /a\x7f HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTX/1.1\r\n\r\n",
            b"GET / HTTP/1.1\rX",
            b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA : b\r\n\r\n",
        ] {
            let mut p = Parser::new();
            assert_eq!(p.feed(bad), Err(ParseError::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn limits_have_their_own_errors() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST_LINE + 10, b'a');
        assert_eq!(Parser::new().feed(&long), Err(ParseError::UriTooLong));

        let mut big = b"GET / HTTP/1.1\r\nA: ".to_vec();
        big.resize(MAX_HEADER_BYTES + 100, b'b');
        assert_eq!(Parser::new().feed(&big), Err(ParseError::HeadersTooLarge));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        assert_eq!(
            Parser::new().feed(&many),
            Err(ParseError::HeadersTooLarge),
            "{} header fields were accepted: the limit is MAX_HEADERS ({MAX_HEADERS})",
            MAX_HEADERS + 1
        );

        assert_eq!(
            Parser::new().feed(b"GET / HTTP/2.0\r\n"),
            Err(ParseError::VersionNotSupported)
        );
    }

    /// A head whose request line is `len` bytes long, CRLF included.
    fn request_line_of(len: usize) -> Vec<u8> {
        let mut head = b"GET /".to_vec();
        head.resize(len - b" HTTP/1.1\r\n".len(), b'a');
        head.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        head
    }

    /// A head whose header fields are `len` bytes long, the final empty
    /// line included.
    fn header_fields_of(len: usize) -> Vec<u8> {
        let mut head = b"GET / HTTP/1.1\r\nA: ".to_vec();
        let line = head.len();
        head.resize(line + len - b"A: \r\n\r\n".len(), b'b');
        head.extend_from_slice(b"\r\n\r\n");
        head
    }

    /// The limits are inclusive: a part exactly at its limit is accepted,
    /// one byte more is refused with the part's own status.
    #[test]
    fn a_part_at_its_limit_is_accepted_and_one_byte_more_refused() {
        let at = MAX_REQUEST_LINE;
        assert!(
            parse_whole(&request_line_of(at)).is_ok(),
            "a request line of {at} bytes, exactly MAX_REQUEST_LINE, was refused: \
             414 is for one longer than the limit"
        );
        assert_eq!(
            Parser::new().feed(&request_line_of(at + 1)),
            Err(ParseError::UriTooLong),
            "a request line of {} bytes, MAX_REQUEST_LINE + 1, was not refused with 414",
            at + 1
        );
        let at = MAX_HEADER_BYTES;
        assert!(
            parse_whole(&header_fields_of(at)).is_ok(),
            "header fields of {at} bytes, exactly MAX_HEADER_BYTES, were refused: \
             431 is for more than the limit"
        );
        assert_eq!(
            Parser::new().feed(&header_fields_of(at + 1)),
            Err(ParseError::HeadersTooLarge),
            "header fields of {} bytes, MAX_HEADER_BYTES + 1, were not refused with 431",
            at + 1
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(
            parse_whole(&many).is_ok(),
            "{MAX_HEADERS} header fields, exactly MAX_HEADERS, were refused: 431 is for more"
        );
    }

    /// A header line ends with CRLF or a bare LF; a CR followed by anything
    /// but LF is refused (400), never taken as the end of the line:
    /// servers that disagree on where a line ends can be smuggled past.
    #[test]
    fn a_bare_cr_never_ends_a_header_line() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\rX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\rX: b\r\n\r\n",
        ] {
            assert_eq!(
                Parser::new().feed(head),
                Err(ParseError::BadRequest),
                "a bare CR ended a header line in {:?}: only CRLF or LF may end one (400)",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// A CR that is the last byte of one `feed` must still be there when
    /// the next begins: whatever follows it decides, LF or a 400.
    #[test]
    fn a_cr_at_the_end_of_one_feed_is_remembered_by_the_next() {
        let head = b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n";
        for (cut, _) in head.iter().enumerate().filter(|&(_, &b)| b == b'\r') {
            assert_eq!(
                parse_in_pieces(head, &[cut + 1]),
                Some(Err(ParseError::BadRequest)),
                "a CR at the end of one feed was forgotten (cut after byte {cut} of {:?}): \
                 the next feed must see it, and refuse the bare CR with 400",
                String::from_utf8_lossy(head)
            );
        }
    }

    const SAMPLES: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        b"HEAD /a/b%20c?q=1 HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: x y\r\n\r\n",
        b"GET /x HTTP/1.1\nHost: h\nAccept: */*\n\n",
        b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    ];

    /// What parsing `sample` in one piece gives: the bytes consumed and the
    /// head, or the error.
    fn parse_in_one(sample: &[u8]) -> Result<(usize, Head), ParseError> {
        let mut p = Parser::new();
        p.feed(sample).map(|pr| (pr.consumed, p.take()))
    }

    /// What parsing `sample` in pieces ending at `cuts` (sorted) gives, as
    /// for [`parse_in_one`]; `None` if the parser never finished.
    fn parse_in_pieces(sample: &[u8], cuts: &[usize]) -> Option<Result<(usize, Head), ParseError>> {
        let mut p = Parser::new();
        let mut start = 0;
        for end in cuts.iter().copied().chain([sample.len()]) {
            match p.feed(&sample[start..end]) {
                Err(e) => return Some(Err(e)),
                Ok(pr) if pr.done => return Some(Ok((start + pr.consumed, p.take()))),
                Ok(_) => start = end,
            }
        }
        None
    }

    /// Property: a head split at any single point parses exactly as it does
    /// whole, to the same head or the same error. Every point, every sample.
    #[test]
    fn any_single_split_parses_the_same_as_whole() {
        for sample in SAMPLES {
            for cut in 0..=sample.len() {
                assert_eq!(
                    parse_in_pieces(sample, &[cut]),
                    Some(parse_in_one(sample)),
                    "cut at {cut}, {:?} parses otherwise than whole: any chunking must parse \
                     the same",
                    String::from_utf8_lossy(sample)
                );
            }
        }
    }

    /// Bytes the parser cares about, and now and then any byte.
    fn head_byte() -> impl Strategy<Value = u8> {
        const ALPHABET: &[u8] = b"GET HEAD/ HTTP/1.01\r\n:abc%\x00\x7f\xff \t";
        prop_oneof![
            3 => prop::sample::select(ALPHABET),
            1 => any::<u8>(),
        ]
    }

    proptest! {
        /// Property: a head split at any points parses exactly as it does
        /// whole, to the same head or the same error. A failure shrinks to
        /// the fewest cuts, and its seed is saved in proptest-regressions/.
        #[test]
        fn any_chunking_parses_the_same_as_whole(
            sample in prop::sample::select(&SAMPLES[..]),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(sample.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(parse_in_pieces(sample, &cuts), Some(parse_in_one(sample)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        /// Property: no input makes the parser panic, and it never claims to
        /// have consumed more than it was given.
        #[test]
        fn no_input_makes_it_panic(input in prop::collection::vec(head_byte(), 0..64)) {
            let mut p = Parser::new();
            if let Ok(pr) = p.feed(&input) {
                prop_assert!(pr.consumed <= input.len());
            }
        }
    }
}
