//! `Range: bytes=…` for one range (RFC 9110 §14).

/// What to send for a `Range` header, given the file's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Ignore the header: send the whole file with 200. Used for several
    /// ranges (allowed: a server may ignore Range) and unknown units.
    Full,
    /// 206: bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: nothing of the file lies in the range.
    Unsatisfiable,
}

pub fn answer(header: &[u8], len: u64) -> RangeAnswer {
    let Ok(s) = std::str::from_utf8(header) else {
        return RangeAnswer::Full;
    };
    let Some(spec) = s.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    // Digits only (`parse` alone would take a sign); "" is no number.
    let parse = |x: &str| -> Option<u64> {
        let digits = x.bytes().all(|c| c.is_ascii_digit());
        digits.then(|| x.parse().ok()).flatten()
    };
    match (a.is_empty(), parse(a), parse(b)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) if n == 0 || len == 0 => RangeAnswer::Unsatisfiable,
        (true, _, Some(n)) => RangeAnswer::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        },
        // bytes=A- and bytes=A-B.
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            let end = end.map_or(len.saturating_sub(1), |e| e.min(len.saturating_sub(1)));
            if start >= len {
                RangeAnswer::Unsatisfiable
            } else if end < start {
                // A-B with B < A is invalid syntax: ignore the header.
                RangeAnswer::Full
            } else {
                RangeAnswer::Partial { start, end }
            }
        }
        _ => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn ranges() {
        assert_eq!(answer(b"bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(answer(b"bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(answer(b"bytes=90-200", 100), Partial { start: 90, end: 99 });
        assert_eq!(answer(b"bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(answer(b"bytes=-200", 100), Partial { start: 0, end: 99 });
        assert_eq!(answer(b"bytes=100-", 100), Unsatisfiable);
        assert_eq!(answer(b"bytes=-0", 100), Unsatisfiable);
        assert_eq!(answer(b"bytes=0-1,5-6", 100), Full);
        assert_eq!(answer(b"items=0-1", 100), Full);
        assert_eq!(answer(b"bytes=9-5", 100), Full);
        assert_eq!(answer(b"bytes=x-5", 100), Full);
    }
}
