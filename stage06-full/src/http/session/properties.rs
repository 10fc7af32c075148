//! The session's property: a pipelined input cut into any pieces is
//! answered with the same bytes, and logged the same, as the whole input
//! in one piece. Built for `cargo test` only (`#[cfg(test)]` in
//! session.rs); the fake driver is in `tests.rs`.

use proptest::prelude::*;

use super::tests::serve;

/// Requests to pipeline, in any order and number.
fn requests() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /nope?x=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
            "GET /a.txt HTTP/1.1\nHost: t\nRange: bytes=-2\n\n",
            "GET /docs HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            "\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        ]),
        1..8,
    )
}

proptest! {
    /// Property: a pipelined input cut into any pieces is answered with the
    /// same bytes, and logged the same, as the whole input in one piece.
    #[test]
    fn any_chunking_of_a_pipeline_gives_the_same_responses(
        requests in requests(),
        last_closes in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = requests.concat();
        if last_closes {
            input.push_str("GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        }
        let input = input.into_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([input.len()]) {
            pieces.push(&input[from..p]);
            from = p;
        }
        let (whole, d1) = serve(&[&input]);
        let (cut, d2) = serve(&pieces);
        prop_assert_eq!(&whole, &cut);
        prop_assert_eq!(d1.log, d2.log);
        prop_assert!(whole.matches("HTTP/1.1 ").count() >= requests.len());
    }
}
