//! The chapter's exercises, one test each. They fail on the stage as
//! shipped and pass once the exercise is done:
//!
//! ```text
//! cargo test -p stage06-full --test exercises -- --ignored ex6_1
//! ```

use std::io::{BufReader, Write};
use std::path::PathBuf;

use testkit::Server;
use testkit::http::{Response, read_response};

const BIN: &str = env!("CARGO_BIN_EXE_stage06-full");

/// A document root of its own for each test.
struct Site(PathBuf);

impl Site {
    fn new(name: &str) -> Site {
        let dir = std::env::temp_dir().join(format!("stage06-ex-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>home</h1>\n").unwrap();
        std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
        std::fs::write(dir.join("files/a.txt"), "a\n").unwrap();
        std::fs::write(dir.join("files/b <&>.txt"), "b\n").unwrap();
        Site(dir)
    }

    fn start(&self, extra: &[&str]) -> Server {
        let root = self.0.to_str().unwrap();
        let mut args = vec!["--addr", "127.0.0.1:0", "--root", root, "--workers", "1"];
        args.extend_from_slice(extra);
        Server::start(BIN, &args)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(server: &Server, raw: &str) -> Response {
    let mut stream = server.connect();
    stream.write_all(raw.as_bytes()).unwrap();
    let head_only = raw.starts_with("HEAD ");
    read_response(&mut BufReader::new(stream), head_only).expect("a response")
}

#[test]
#[ignore = "ex6.1 (easy): ETag and If-None-Match"]
fn ex6_1_etag_and_if_none_match() {
    let site = Site::new("etag");
    let server = site.start(&[]);
    let first = request(&server, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("an ETag field").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let again = request(
        &server,
        &format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let listed = request(
        &server,
        &format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"x\", {etag}\r\n\r\n"),
    );
    assert_eq!(listed.status, 304, "a list of tags");
    let any = request(
        &server,
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n",
    );
    assert_eq!(any.status, 304, "*");
    let other = request(
        &server,
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\"\r\n\r\n",
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.body, b"hello\n");
    // Another file has another tag.
    let index = request(&server, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_ne!(index.header("etag"), Some(etag.as_str()));
}

#[test]
#[ignore = "ex6.2 (medium): directory listings (--autoindex)"]
fn ex6_2_a_directory_without_index_is_listed() {
    let site = Site::new("autoindex");
    let server = site.start(&["--autoindex"]);
    let r = request(&server, "GET /files/ HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = String::from_utf8(r.body).unwrap();
    assert!(page.contains("href=\"a.txt\""), "{page}");
    // Names are escaped for HTML (and the link for URLs).
    assert!(page.contains("b &lt;&amp;&gt;.txt"), "{page}");
    assert!(!page.contains("b <&>.txt"), "{page}");
    // A directory with an index still serves it.
    let home = request(&server, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(home.body, b"<h1>home</h1>\n");
    // Without the flag: no listing.
    drop(server);
    let server = site.start(&[]);
    let r = request(&server, "GET /files/ HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 404);
}

#[test]
#[ignore = "ex6.3 (easy): OPTIONS answered with 204 and Allow"]
fn ex6_3_options_says_what_is_allowed() {
    let site = Site::new("options");
    let server = site.start(&[]);
    for target in ["*", "/hello.txt"] {
        let r = request(
            &server,
            &format!("OPTIONS {target} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(r.status, 204, "OPTIONS {target}");
        assert_eq!(
            r.header("allow"),
            Some("GET, HEAD, OPTIONS"),
            "OPTIONS {target}"
        );
        assert!(r.body.is_empty());
    }
    // The other refusals now name OPTIONS too.
    let r = request(&server, "DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
}

/// Pipes a process holds open.
fn pipes(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with("pipe:"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "ex6.4 (hard): splice through a pipe in place of sendfile (--send splice)"]
fn ex6_4_splice_sends_files_byte_exact_even_to_a_slow_reader() {
    use std::io::Read;
    use std::time::Duration;

    let site = Site::new("splice");
    let big = testkit::payload(3 << 20);
    std::fs::write(site.0.join("big.bin"), &big).unwrap();
    let server = site.start(&["--send", "splice"]);
    let worker = testkit::children_of(server.pid())[0];
    let before = pipes(worker);

    // Two whole files and a range on one keep-alive connection, read
    // slowly: the socket's buffer fills while bytes wait in the pipe, and
    // those must go out before any more is read from the file.
    let stream = server.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer
        .write_all(
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-2999999\r\n\r\n\
              GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pipes(worker) > before,
        "no pipe in the worker while a file is on its way: not splice"
    );
    // The head of the first response, then its body in slow sips.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let mut body = vec![0u8; big.len()];
    for (k, chunk) in body.chunks_mut(256 * 1024).enumerate() {
        if k < 4 {
            std::thread::sleep(Duration::from_millis(50));
        }
        reader.read_exact(chunk).unwrap();
    }
    assert!(body == big, "the first body differs");
    let ranged = read_response(&mut reader, false).expect("the ranged response");
    assert_eq!(ranged.status, 206);
    assert!(
        ranged.body == big[1000..3_000_000],
        "the ranged body differs"
    );
    let small = read_response(&mut reader, false).expect("the small response");
    assert_eq!(small.body, b"hello\n");

    // Every pipe goes with its connection.
    drop(reader);
    drop(writer);
    for _ in 0..20 {
        let got = request(
            &server,
            "GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert!(got.body == big, "a body differs");
    }
    assert!(
        testkit::eventually(Duration::from_secs(3), || pipes(worker) <= before),
        "pipes left open: {} before, {} after",
        before,
        pipes(worker)
    );
}

#[test]
#[ignore = "ex6.5 (easy): the pool's process span says how long the request waited for a pool thread (`queued_us`)"]
fn ex6_5_a_pool_thread_says_how_long_the_request_queued() {
    use testkit::PATIENCE;
    use testkit::timeline::Timeline;

    let site = Site::new("ex6_5");
    let path = site.0.join("timeline.json");
    let mut server = site.start(&["--model", "proactor-sim", "--trace", path.to_str().unwrap()]);
    let mut stream = server.connect();
    let get = "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    stream.write_all(get.repeat(3).as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..3 {
        let response = read_response(&mut reader, false).expect("a response");
        assert_eq!(response.status, 200);
    }
    drop(reader);
    server.signal("TERM");
    let exit = server.wait_exit(PATIENCE).expect("the server exits");
    assert!(exit.success(), "exit {exit:?}");
    let timeline = Timeline::read(&path);

    let worker = timeline
        .processes
        .iter()
        .find(|(_, name)| name.contains("worker"))
        .map(|(pid, _)| *pid)
        .expect("a worker on the timeline");
    // The pool threads' `process` spans: off the loop's thread.
    let pooled: Vec<_> = timeline
        .named("process")
        .filter(|s| s.pid == worker && s.tid != worker)
        .collect();
    assert!(!pooled.is_empty(), "no request was parsed on a pool thread");
    for span in pooled {
        assert!(
            span.num("queued_us").is_some(),
            "a pool thread's process span without `queued_us` (µs from the hand-off to the \
             pool thread taking it): {:?}",
            span.args
        );
    }
}
