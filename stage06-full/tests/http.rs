//! Black-box tests of stage06 over real sockets: every status code and
//! limit, keep-alive and pipelining, conditional and range requests, every
//! path-traversal form, timeouts, pools, and the probes the servers this
//! repository learns from failed.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use stage06_full::channel::QUEUE_BOUND;
use testkit::http::{Response, read_response};
use testkit::{PATIENCE, Server, enough_descriptors, reset, sees_close};

const BIN: &str = env!("CARGO_BIN_EXE_stage06-full");

/// A document root in a temporary folder, with a secret beside it.
struct Site {
    top: PathBuf,
}

impl Site {
    fn new() -> Site {
        static N: AtomicUsize = AtomicUsize::new(0);
        let top = std::env::temp_dir().join(format!(
            "stage06-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&top);
        let root = top.join("root");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(top.join("secret.txt"), "TOP SECRET").unwrap();
        std::fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
        std::fs::write(root.join("small.txt"), "hello world\n").unwrap();
        std::fs::write(root.join("style.css"), "body { color: red }\n").unwrap();
        std::fs::write(root.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
        std::fs::write(root.join("big.bin"), testkit::payload(1 << 20)).unwrap();
        std::os::unix::fs::symlink("small.txt", root.join("link-in")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("link-out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .unwrap();
        assert!(fifo.success());
        Site { top }
    }

    fn root(&self) -> PathBuf {
        self.top.join("root")
    }

    /// Starts the server with `--model MODEL` and `extra`.
    fn start_model(&self, model: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--model", model];
        args.extend_from_slice(extra);
        self.start(&args)
    }

    fn start(&self, extra: &[&str]) -> Server {
        self.start_nofile(None, extra)
    }

    /// Starts the server, under a descriptor limit of `nofile` if given.
    fn start_nofile(&self, nofile: Option<u32>, extra: &[&str]) -> Server {
        let root = self.root();
        let mut args = vec!["--addr", "127.0.0.1:0", "--root", root.to_str().unwrap()];
        // Two workers unless the test says otherwise.
        if !extra.contains(&"--workers") {
            args.extend_from_slice(&["--workers", "2"]);
        }
        args.extend_from_slice(extra);
        match nofile {
            Some(n) => Server::start_with_nofile(n, BIN, &args),
            None => Server::start(BIN, &args),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

/// A client connection: a writer and a buffered reader on one socket.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn new(server: &Server) -> Client {
        let stream = server.connect();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, raw: &str) {
        self.writer.write_all(raw.as_bytes()).unwrap();
    }

    fn response(&mut self) -> Response {
        read_response(&mut self.reader, false).expect("a response")
    }

    fn head_response(&mut self) -> Response {
        read_response(&mut self.reader, true).expect("a response")
    }

    fn closed(&mut self) -> bool {
        sees_close(self.reader.get_mut())
    }
}

/// One request on a fresh connection.
fn fetch(server: &Server, raw: &str) -> Response {
    let mut c = Client::new(server);
    c.send(raw);
    c.response()
}

fn get(server: &Server, path: &str) -> Response {
    fetch(server, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

/// Every byte the server sends on a fresh connection for `raw`, whose last
/// request says `Connection: close`, as text.
fn exchange(server: &Server, raw: &str) -> String {
    let mut c = Client::new(server);
    c.send(raw);
    let mut out = Vec::new();
    c.reader.read_to_end(&mut out).expect("the server closes");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_command_lines_are_refused_with_a_message() {
    let cases: [(&[&str], &str); 10] = [
        (&["--max-conns", "0"], "--max-conns"),
        (&["--steer", "round-robin"], "unknown steer"),
        (
            &["--steer", "cpu"],
            "--steer cpu needs --dispatch reuseport",
        ),
        (&["--pin", "auto"], "use on or off"),
        (&["--threads", "0"], "--threads"),
        (&["--root", "/nonexistent/stage06"], "does not exist"),
        (&["--model", "epoll"], "unknown model"),
        (&["--buffers", "some"], "unknown buffers"),
        (&["--keepalive-timeout", "-1"], "--keepalive-timeout"),
        (&["--trigger", "sometimes"], "trigger"),
    ];
    for (args, expected) in cases {
        let out = std::process::Command::new(BIN)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run the server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(out.stdout.is_empty(), "{args:?}: it started listening");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

// The whole suite runs once per model (`--model`), so that every model
// answers every request the same way: `cargo test -p stage06-full --test
// http reactor::` runs one model's share.
macro_rules! suite {
    ($model:literal) => {
        use super::*;

        fn start(site: &Site, extra: &[&str]) -> Server {
            site.start_model($model, extra)
        }

        each_test! { $model;
        #[test]
        fn serves_a_file_with_every_header() {
            let site = Site::new();
            let server = start(&site, &[]);
            let r = get(&server, "/small.txt");
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"hello world\n");
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(r.header("content-length"), Some("12"));
            assert_eq!(r.header("server"), Some("stage06"));
            assert_eq!(r.header("accept-ranges"), Some("bytes"));
            let date = r.header("date").unwrap();
            assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
            assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
            assert_eq!(
                get(&server, "/style.css").header("content-type"),
                Some("text/css; charset=utf-8")
            );
            assert_eq!(get(&server, "/big.bin").body, testkit::payload(1 << 20));
        }

        #[test]
        fn head_sends_the_headers_and_no_body() {
            let site = Site::new();
            let server = start(&site, &[]);
            let mut c = Client::new(&server);
            // A HEAD, then a GET on the same connection: if HEAD sent a body, the
            // second response would start inside it.
            c.send("HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
            let head = c.head_response();
            assert_eq!(head.status, 200);
            assert_eq!(head.header("content-length"), Some("12"));
            let next = c.response();
            assert_eq!(next.body, b"body { color: red }\n");
        }

        #[test]
        fn directories_serve_their_index_and_redirect_without_a_slash() {
            let site = Site::new();
            let server = start(&site, &[]);
            assert_eq!(get(&server, "/").body, b"<h1>home</h1>\n");
            let r = get(&server, "/docs");
            assert_eq!(r.status, 301);
            assert_eq!(r.header("location"), Some("/docs/"));
            assert_eq!(get(&server, "/docs/").body, b"<h1>docs</h1>\n");
            assert_eq!(get(&server, "/empty/").status, 404);
        }

        #[test]
        fn a_missing_file_gets_404_with_a_small_html_body() {
            let site = Site::new();
            let server = start(&site, &[]);
            let r = get(&server, "/nope.html");
            assert_eq!(r.status, 404);
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
            assert!(String::from_utf8_lossy(&r.body).contains("404 Not Found"));
        }

        #[test]
        fn no_traversal_form_reaches_outside_the_root() {
            let site = Site::new();
            let server = start(&site, &[]);
            for (path, expected) in [
                ("/../secret.txt", 403),
                ("/../../../../etc/passwd", 403),
                ("/docs/../../secret.txt", 403),
                ("/%2e%2e/secret.txt", 403),
                ("/%2E%2E/%2e%2e/etc/passwd", 403),
                ("/..%2fsecret.txt", 404),
                ("/docs%2f..%2f..%2fsecret.txt", 404),
                ("/small.txt%00.html", 400),
                ("/link-out", 403),
                ("/abs-link", 403),
                ("http://evil/../secret.txt", 403),
            ] {
                let r = get(&server, path);
                assert_eq!(r.status, expected, "{path}");
                let body = String::from_utf8_lossy(&r.body);
                assert!(
                    !body.contains("TOP SECRET") && !body.contains("root:"),
                    "{path} leaked"
                );
            }
            // A link that stays inside is fine.
            assert_eq!(get(&server, "/link-in").body, b"hello world\n");
        }

        #[test]
        fn only_regular_files_are_served_and_a_fifo_blocks_nobody() {
            let site = Site::new();
            let server = start(&site, &["--workers", "1"]);
            assert_eq!(get(&server, "/fifo").status, 403);
            // The single worker is not stuck opening the FIFO.
            assert_eq!(get(&server, "/small.txt").status, 200);
        }

        #[test]
        fn methods_other_than_get_and_head() {
            let site = Site::new();
            let server = start(&site, &[]);
            let r = fetch(
                &server,
                "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            );
            assert_eq!(r.status, 405);
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
            assert_eq!(
                fetch(&server, "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n").status,
                501
            );
            assert_eq!(
                fetch(&server, "DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n").status,
                405
            );
        }

        #[test]
        fn versions_and_host() {
            let site = Site::new();
            let server = start(&site, &[]);
            assert_eq!(
                fetch(&server, "GET / HTTP/2.0\r\nHost: t\r\n\r\n").status,
                505
            );
            assert_eq!(
                fetch(&server, "GET / HTTP/1.2\r\nHost: t\r\n\r\n").status,
                505
            );
            assert_eq!(fetch(&server, "GET / HTTP/1.1\r\n\r\n").status, 400);
            assert_eq!(
                fetch(&server, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status,
                400
            );
            assert_eq!(fetch(&server, "GET / HTTP/1.0\r\n\r\n").status, 200);
        }

        #[test]
        fn bad_bytes_get_400_and_a_closed_connection() {
            let site = Site::new();
            let server = start(&site, &[]);
            for raw in [
                "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                "GET /\x01 HTTP/1.1\r\n\r\n",
                "\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03",
                "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            ] {
                let mut c = Client::new(&server);
                c.send(raw);
                let r = c.response();
                assert_eq!(r.status, 400, "{raw:?}");
                assert_eq!(r.header("connection"), Some("close"));
                assert!(c.closed());
            }
        }

        #[test]
        fn limits_have_their_statuses() {
            let site = Site::new();
            let server = start(&site, &[]);
            let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
            assert_eq!(fetch(&server, &long).status, 414);
            let big = format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "b".repeat(17 * 1024)
            );
            assert_eq!(fetch(&server, &big).status, 431);
            let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
            for i in 0..100 {
                many.push_str(&format!("X-{i}: v\r\n"));
            }
            many.push_str("\r\n");
            assert_eq!(fetch(&server, &many).status, 431);
        }

        #[test]
        fn request_bodies_are_skipped_and_bounded() {
            let site = Site::new();
            let server = start(&site, &["--max-body", "1000"]);
            // A body by length, then a pipelined request: both answered.
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nxxxxxGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().body, b"hello world\n");
            assert_eq!(c.response().body, b"body { color: red }\n");
            // A chunked body, with an extension and a trailer.
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: v\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().status, 200);
            assert_eq!(c.response().body, b"body { color: red }\n");
            // Too large, either way: 413 and close.
            let mut c = Client::new(&server);
            c.send("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
            assert_eq!(c.response().status, 413);
            assert!(c.closed());
            let mut c = Client::new(&server);
            c.send("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n");
            c.send(&"z".repeat(2000));
            let r = c.response();
            assert_eq!(r.status, 413);
            assert!(c.closed());
        }

        #[test]
        fn smuggling_shapes_are_refused_and_the_connection_closed() {
            let site = Site::new();
            let server = start(&site, &[]);
            for (raw, status) in [
                (
                    "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                    400,
                ),
                (
                    "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                    400,
                ),
                (
                    "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
                    501,
                ),
                (
                    "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                    400,
                ),
            ] {
                let mut c = Client::new(&server);
                c.send(raw);
                let r = c.response();
                assert_eq!(r.status, status, "{raw:?}");
                assert!(c.closed(), "{raw:?}: still open");
            }
        }

        #[test]
        fn keep_alive_rules_of_both_versions() {
            let site = Site::new();
            let server = start(&site, &[]);
            // HTTP/1.1 keeps the connection open by default.
            let mut c = Client::new(&server);
            for _ in 0..3 {
                c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(c.response().status, 200);
            }
            // ... unless the client says close.
            c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            assert_eq!(c.response().header("connection"), Some("close"));
            assert!(c.closed());
            // HTTP/1.0 closes by default ...
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.0\r\n\r\n");
            assert_eq!(c.response().header("connection"), Some("close"));
            assert!(c.closed());
            // ... and keeps the connection only when asked.
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            assert_eq!(c.response().header("connection"), Some("keep-alive"));
            c.send("GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            assert_eq!(c.response().status, 200);
        }

        #[test]
        fn ten_pipelined_requests_in_one_write_are_answered_in_order() {
            let site = Site::new();
            let server = start(&site, &[]);
            let files = ["/small.txt", "/style.css", "/", "/docs/", "/nope"];
            let mut batch = String::new();
            for i in 0..10 {
                batch.push_str(&format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", files[i % 5]));
            }
            let mut c = Client::new(&server);
            c.send(&batch);
            for i in 0..10 {
                let r = c.response();
                let expected: &[u8] = match files[i % 5] {
                    "/small.txt" => b"hello world\n",
                    "/style.css" => b"body { color: red }\n",
                    "/" => b"<h1>home</h1>\n",
                    "/docs/" => b"<h1>docs</h1>\n",
                    _ => {
                        assert_eq!(r.status, 404);
                        continue;
                    }
                };
                assert_eq!(r.body, expected, "response {i}");
            }
        }

        #[test]
        fn both_triggers_see_a_fin_sent_with_the_request_and_a_pipeline_longer_than_the_buffer() {
            let site = Site::new();
            for trigger in ["level", "edge"] {
                let server = start(&site, &["--trigger", trigger]);
                // The request and the FIN arrive together: a short read must not
                // end reading before EOF is seen, or the connection would wait out
                // its keep-alive timeout instead of closing after the response.
                let mut c = Client::new(&server);
                c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                c.writer.shutdown(std::net::Shutdown::Write).unwrap();
                assert_eq!(c.response().body, b"hello world\n", "{trigger}");
                assert!(c.closed(), "{trigger}: not closed after the FIN");
                // 2,000 pipelined requests (about 70 KiB, more than a read buffer).
                let one = "GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n";
                let mut c = Client::new(&server);
                let writer = c.writer.try_clone().unwrap();
                let sender = thread::spawn(move || {
                    let mut writer = writer;
                    writer.write_all(one.repeat(2000).as_bytes()).unwrap();
                });
                for i in 0..2000 {
                    assert_eq!(
                        c.response().body,
                        b"hello world\n",
                        "{trigger}: response {i}"
                    );
                }
                sender.join().unwrap();
            }
        }

        #[test]
        fn a_request_sent_one_byte_at_a_time_is_understood() {
            let site = Site::new();
            let server = start(&site, &[]);
            let mut c = Client::new(&server);
            for b in "GET /small.txt HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n".bytes() {
                c.writer.write_all(&[b]).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(c.response().body, b"hello world\n");
        }

        #[test]
        fn if_modified_since_gets_304() {
            let site = Site::new();
            let server = start(&site, &[]);
            let first = get(&server, "/small.txt");
            let stamp = first.header("last-modified").unwrap().to_string();
            let mut c = Client::new(&server);
            c.send(&format!(
                "GET /small.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {stamp}\r\n\r\n"
            ));
            let r = c.response();
            assert_eq!(r.status, 304);
            assert!(r.body.is_empty());
            // Older than the file: the full response.
            let r = fetch(
                &server,
                "GET /small.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
            );
            assert_eq!(r.status, 200);
        }

        #[test]
        fn if_unmodified_since_before_the_file_gets_412_even_with_a_range() {
            let site = Site::new();
            let server = start(&site, &[]);
            let first = get(&server, "/small.txt");
            let stamp = first.header("last-modified").unwrap();
            let old = "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
            let failed = "HTTP/1.1 412 Precondition Failed\r\n";
            for (fields, status_line) in [
                // The file changed after the client's date: 412, range or not.
                (old.to_string(), failed),
                (format!("{old}Range: bytes=0-4\r\n"), failed),
                // At the file's time: served as usual.
                (format!("If-Unmodified-Since: {stamp}\r\n"), "HTTP/1.1 200 OK\r\n"),
                (
                    format!("If-Unmodified-Since: {stamp}\r\nRange: bytes=0-4\r\n"),
                    "HTTP/1.1 206 Partial Content\r\n",
                ),
                // Not a date: ignored.
                ("If-Unmodified-Since: yesterday\r\n".to_string(), "HTTP/1.1 200 OK\r\n"),
            ] {
                let request = format!(
                    "GET /small.txt HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n"
                );
                let out = exchange(&server, &request);
                assert!(out.starts_with(status_line), "{fields:?} gave {out}");
            }
        }

        #[test]
        fn a_412_is_an_error_page_on_a_connection_kept_alive() {
            let site = Site::new();
            let server = start(&site, &[]);
            let old = "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
            let mut c = Client::new(&server);
            c.send(&format!("GET /small.txt HTTP/1.1\r\nHost: t\r\n{old}\r\n"));
            let r = c.response();
            assert_eq!(r.status, 412);
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
            let page = String::from_utf8_lossy(&r.body);
            assert!(page.contains("<h1>412 Precondition Failed</h1>"), "{page}");
            assert_eq!(r.header("connection"), None);
            assert_eq!(r.header("last-modified"), None);
            // HEAD: the same head and no body (a body would spoil the next
            // response); a missing file stays 404.
            c.send(&format!("HEAD /small.txt HTTP/1.1\r\nHost: t\r\n{old}\r\n"));
            let head = c.head_response();
            assert_eq!(head.status, 412);
            let length = r.body.len().to_string();
            assert_eq!(head.header("content-length"), Some(length.as_str()));
            c.send(&format!("GET /nope HTTP/1.1\r\nHost: t\r\n{old}\r\n"));
            assert_eq!(c.response().status, 404);
            c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().body, b"hello world\n");
        }

        #[test]
        fn single_ranges_get_206_and_impossible_ones_416() {
            let site = Site::new();
            let server = start(&site, &[]);
            let range = |spec: &str, path: &str| {
                fetch(
                    &server,
                    &format!("GET {path} HTTP/1.1\r\nHost: t\r\nRange: {spec}\r\n\r\n"),
                )
            };
            let r = range("bytes=0-4", "/small.txt");
            assert_eq!(r.status, 206);
            assert_eq!(r.body, b"hello");
            assert_eq!(r.header("content-range"), Some("bytes 0-4/12"));
            assert_eq!(range("bytes=-6", "/small.txt").body, b"world\n");
            let r = range("bytes=20-", "/small.txt");
            assert_eq!(r.status, 416);
            assert_eq!(r.header("content-range"), Some("bytes */12"));
            // A large range goes by sendfile from an offset.
            let all = testkit::payload(1 << 20);
            let r = range("bytes=100000-899999", "/big.bin");
            assert_eq!(r.status, 206);
            assert!(r.body == all[100_000..900_000]);
            // Several ranges: the whole file, which is allowed.
            assert_eq!(range("bytes=0-1,5-6", "/small.txt").status, 200);
            // If-Range is not evaluated: with it, the whole file, never a
            // range of what may be a different version.
            let r = fetch(
                &server,
                "GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4\r\nIf-Range: \"x\"\r\n\r\n",
            );
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"hello world\n");
        }

        #[test]
        fn a_fifty_mib_file_arrives_byte_exact() {
            let site = Site::new();
            let data = testkit::payload(50 << 20);
            std::fs::write(site.root().join("fifty.bin"), &data).unwrap();
            let server = start(&site, &[]);
            let r = get(&server, "/fifty.bin");
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), data.len());
            assert!(r.body == data, "the 50 MiB body differs");
        }

        #[test]
        fn a_file_that_shrinks_mid_download_ends_the_connection_not_the_server() {
            let site = Site::new();
            let path = site.root().join("shrinking.bin");
            std::fs::write(&path, testkit::payload(20 << 20)).unwrap();
            let server = start(&site, &[]);
            let mut c = Client::new(&server);
            c.send("GET /shrinking.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut first = [0u8; 4096];
            c.reader.read_exact(&mut first).unwrap();
            // The promised Content-Length can no longer be kept: the server
            // must close (not hang, not pad, not crash).
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(1 << 20)
                .unwrap();
            let mut rest = Vec::new();
            c.reader
                .read_to_end(&mut rest)
                .expect("the connection closes rather than hangs");
            assert!(
                first.len() + rest.len() < 20 << 20,
                "all {} bytes arrived from a 1 MiB file",
                first.len() + rest.len()
            );
            assert_eq!(get(&server, "/small.txt").status, 200);
        }

        #[test]
        fn a_slowloris_client_gets_408_and_is_cut_off() {
            let site = Site::new();
            let server = start(&site, &["--header-timeout", "0.5"]);
            let mut c = Client::new(&server);
            let start = Instant::now();
            c.send("GET / HTTP/1.1\r\nHost: t\r\n");
            // Trickle a byte every 100 ms until the answer comes: activity
            // must not extend the deadline. The client is still sending when
            // the 408 leaves, so the server must linger, not reset.
            let stream = c.reader.get_ref().try_clone().unwrap();
            stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            loop {
                match stream.peek(&mut [0u8; 1]) {
                    Ok(_) => break,
                    // Nothing yet; or a signal to this test process (the
                    // tests that stop and kill workers cause some).
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("no answer: {e}"),
                }
                assert!(start.elapsed() < Duration::from_secs(3), "no 408 in 3 s");
                c.writer.write_all(b"X").expect("the server reset us");
            }
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let r = c.response();
            assert_eq!(r.status, 408);
            assert_eq!(r.header("connection"), Some("close"));
            // Our half-close ends the server's lingering at once.
            c.writer.shutdown(std::net::Shutdown::Write).unwrap();
            assert!(c.closed());
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{:?}",
                start.elapsed()
            );
        }

        #[test]
        fn idle_keep_alive_connections_are_closed_quietly() {
            let site = Site::new();
            let server = start(&site, &["--keepalive-timeout", "0.5"]);
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().status, 200);
            let start = Instant::now();
            // EOF with no response: an idle connection owes the client nothing.
            let mut rest = Vec::new();
            c.reader.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(450), "{waited:?}");
            assert!(waited < Duration::from_secs(3), "{waited:?}");
        }

        #[test]
        fn a_silent_client_is_accepted_late_then_closed_by_the_header_timeout() {
            let site = Site::new();
            // TCP_DEFER_ACCEPT holds a silent connection back for about a
            // second; then the header timeout (1 s) closes it, quietly.
            for dispatch in ["pass", "reuseport"] {
                let server = start(&site, &["--header-timeout", "1", "--dispatch", dispatch]);
                let mut c = Client::new(&server);
                let start = Instant::now();
                let mut rest = Vec::new();
                let _ = c.reader.read_to_end(&mut rest);
                assert!(rest.is_empty(), "{dispatch}: {rest:?}");
                let waited = start.elapsed();
                assert!(waited >= Duration::from_millis(900), "{dispatch}: {waited:?}");
                assert!(waited < Duration::from_secs(8), "{dispatch}: {waited:?}");
                // And a client that speaks at once is answered at once.
                assert_eq!(get(&server, "/small.txt").status, 200);
            }
        }

        #[test]
        fn a_burst_of_two_thousand_connections_is_answered_in_every_dispatch_mode() {
            if !enough_descriptors(2 * 2000 + 200) {
                return;
            }
            let site = Site::new();
            let modes: [&[&str]; 4] = [
                &["--dispatch", "pass"],
                &["--dispatch", "shared"],
                &["--dispatch", "shared", "--exclusive"],
                &["--dispatch", "reuseport"],
            ];
            let request = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
            for mode in modes {
                let server = start(&site, mode);
                let answers = testkit::burst(server.addr, 2000, request);
                let unanswered: Vec<String> = answers
                    .iter()
                    .filter_map(|a| match a {
                        Ok(bytes) if bytes.starts_with(b"HTTP/1.1 200 OK\r\n")
                            && bytes.ends_with(b"hello world\n") => None,
                        Ok(bytes) => Some(format!("{:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(20)]))),
                        Err(e) => Some(e.kind().to_string()),
                    })
                    .collect();
                assert!(unanswered.is_empty(), "{mode:?}: {} of 2000 unanswered: {:?}", unanswered.len(), &unanswered[..unanswered.len().min(5)]);
                // And the server still answers a lone client afterwards.
                assert_eq!(get(&server, "/small.txt").status, 200, "{mode:?}");
            }
        }

        #[test]
        fn steer_cpu_gives_a_client_on_one_cpu_one_worker() {
            let Some(cpus) = two_cpus_to_steer_by() else {
                return;
            };
            let site = Site::new();
            // Each server inherits the affinity of the thread that starts it.
            let all = cpus_allowed();
            let server = start(&site, &["--dispatch", "reuseport", "--steer", "cpu", "--pin", "on"]);
            let grown = connections_per_worker(&server);
            let mut held = Vec::new();
            // On loopback a connection's packets are processed on the
            // sending thread's CPU: pinned there, every connection goes to
            // the worker whose listener is labelled with that CPU.
            for (k, &cpu) in cpus.iter().enumerate() {
                pin_this_thread(&[cpu]);
                for _ in 0..8 {
                    // A 404 opens no file: the workers' descriptors grow by
                    // their connections alone.
                    let mut c = Client::new(&server);
                    c.send("GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
                    assert_eq!(c.response().status, 404);
                    held.push(c);
                }
                let mut by_worker = grown();
                by_worker.sort();
                let want = if k == 0 { vec![0, 8] } else { vec![8, 8] };
                assert_eq!(by_worker, want, "connections per worker after CPU {cpu}");
            }
            pin_this_thread(&all);
        }

        #[test]
        fn pin_on_keeps_each_worker_and_its_threads_on_its_own_cpu() {
            let cpus = cpus_allowed();
            if cpus.len() < 2 {
                testkit::skip("--pin on needs two CPUs to tell one from all");
                return;
            }
            let cpus = cpus[..2].to_vec();
            let site = Site::new();
            let all = cpus_allowed();
            // Each server inherits the affinity of the thread that starts it.
            pin_this_thread(&cpus);
            let cpus_of = |server: &Server| -> Vec<Vec<usize>> {
                let mut v: Vec<Vec<usize>> = testkit::children_of(server.pid()).into_iter().map(worker_cpus).collect();
                v.sort();
                v
            };
            // `listening on` comes once every worker is ready, after it pinned itself.
            let server = start(&site, &[]);
            assert_eq!(cpus_of(&server), [cpus.clone(), cpus.clone()], "by default the scheduler places them");
            for dispatch in ["pass", "shared", "reuseport"] {
                let server = start(&site, &["--pin", "on", "--dispatch", dispatch]);
                assert_eq!(cpus_of(&server), [vec![cpus[0]], vec![cpus[1]]], "--pin on --dispatch {dispatch}");
            }
            pin_this_thread(&all);
        }

        #[test]
        fn a_killed_worker_loses_only_what_its_channel_held() {
            if !enough_descriptors(4096) {
                return;
            }
            let site = Site::new();
            let mut server = start(&site, &["--dispatch", "pass"]);
            let (workers, _) = channels(&mut server);
            let (victim, survivor) = (workers[0].pid, workers[1].pid);
            // Stop both workers, one after the other, and open keep-alive
            // clients (each sends a request) until both channels are full
            // and both queues at their bound: the master stops accepting.
            stop(victim);
            let mut clients = Vec::new();
            while channels(&mut server).0[0].queued == 0 {
                assert!(clients.len() < 10_000, "the stopped worker's channel never filled");
                clients.push(requesting(&server));
            }
            stop(survivor);
            while channels(&mut server).1 {
                assert!(clients.len() < 20_000, "the master never stopped accepting");
                clients.push(requesting(&server));
            }
            // A few more wait in the listen backlog.
            for _ in 0..10 {
                clients.push(requesting(&server));
            }
            let (full, _) = channels(&mut server);
            assert_eq!(full[0].queued, QUEUE_BOUND as u64, "{full:?}");
            assert_eq!(full[1].queued, QUEUE_BOUND as u64, "{full:?}");
            // The survivor resumes and takes in its channel, its queue and
            // the backlog; the victim's queue waits.
            signal(survivor, Signal::SIGCONT);
            let opened = clients.len() as u64;
            let before = settled(&mut server, opened);
            assert_eq!(before[0].queued, QUEUE_BOUND as u64, "{before:?}");
            // What the victim's channel held dies with it; what the master
            // had queued for it goes to the survivor, and is answered.
            signal(victim, Signal::SIGKILL);
            let got = answered(&mut clients);
            assert_eq!(got, opened - before[0].sent, "{before:?}");
            assert_eq!(get(&server, "/small.txt").status, 200);
        }

        #[test]
        fn buffers_and_cache_lookups_are_counted_and_come_back_to_the_pools() {
            let site = Site::new();
            let mut server = site.start(&["--model", $model, "--workers", "1", "--threads", "2"]);
            let mut clients: Vec<Client> = (0..5).map(|_| Client::new(&server)).collect();
            for _ in 0..100 {
                for c in &mut clients {
                    c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                    assert_eq!(c.response().body, b"hello world\n");
                }
            }
            server.signal("TERM");
            assert!(server.wait_exit(PATIENCE).is_some_and(|s| s.success()));
            let stderr = server.stderr_to_end();
            let line = stderr
                .lines()
                .find(|l| l.contains("buffers allocated"))
                .unwrap_or_else(|| panic!("no report in {stderr:?}"));
            let numbers: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            let [_pid, allocated, reused, hits, misses] = numbers[..] else {
                panic!("{line}");
            };
            // 500 responses, each with a head and a body buffer: all but the
            // first few come from the pools, whichever thread built them.
            assert!(allocated <= 20, "{line}");
            assert!(reused >= 900, "{line}");
            // Every lookup is counted, the pool threads' included.
            assert!(hits + misses >= 500, "{line}");
        }

        #[test]
        fn no_client_gets_503_while_a_worker_has_a_free_slot() {
            let site = Site::new();
            let server = start(&site, &["--workers", "2", "--max-conns", "2"]);
            let mut kept: Vec<Client> = (0..4).map(|_| Client::new(&server)).collect();
            for c in &mut kept {
                c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(c.response().status, 200);
            }
            let mut fifth = Client::new(&server);
            assert_eq!(fifth.response().status, 503);
            assert!(fifth.closed());
        }

        #[test]
        fn the_master_hears_every_worker_go_idle() {
            // The master chooses the least loaded worker by what each one
            // reports. The last change of a busy moment, here forty closes
            // at once, must reach it even though the worker then sleeps.
            let site = Site::new();
            let mut server = start(&site, &["--dispatch", "pass"]);
            for round in 1..=20 {
                let mut clients: Vec<Client> = (0..40).map(|_| requesting(&server)).collect();
                for c in &mut clients {
                    assert_eq!(c.response().status, 200);
                }
                // Each worker has closed its socket once the client sees
                // EOF: from then on the report is the worker's to send.
                for c in &mut clients {
                    c.writer.shutdown(std::net::Shutdown::Write).unwrap();
                    assert!(c.closed(), "round {round}: the server kept a half-closed connection");
                }
                if let Err(live) = idle_within_100_ms(&mut server) {
                    panic!(
                        "round {round}: 100 ms after every connection closed, the master still \
                         counts (worker pid, live) {live:?}: a worker's last load report was never sent"
                    );
                }
            }
        }

        #[test]
        fn a_report_that_found_the_channel_full_is_sent_once_the_master_reads() {
            // Each report is charged to the worker's send buffer until the
            // master reads it, at least 256 bytes of it: this many reports
            // overfill it while the master is stopped.
            let sndbuf: u64 = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .expect("net.core.wmem_default");
            let conns = sndbuf / 256;
            if conns > 4096 {
                testkit::skip(&format!("net.core.wmem_default is {sndbuf}: filling a channel takes {conns} connections"));
                return;
            }
            if !enough_descriptors(conns + 64) {
                return;
            }
            let site = Site::new();
            let mut server = start(&site, &["--workers", "1", "--dispatch", "pass"]);
            let mut clients: Vec<Client> = (0..conns).map(|_| requesting(&server)).collect();
            for c in &mut clients {
                assert_eq!(c.response().status, 200);
            }
            // The master closes its copy of a connection just after passing
            // it; its answer to SIGUSR1 comes after that, so no copy stays
            // open in the stopped master to hide a close from the client.
            assert_eq!(worker_loads(&mut server)[0].1, conns);
            stop(server.pid());
            // One at a time, each close seen before the next: a report each.
            for c in &mut clients {
                c.writer.shutdown(std::net::Shutdown::Write).unwrap();
                assert!(c.closed(), "a connection was not closed");
            }
            signal(server.pid(), Signal::SIGCONT);
            if let Err(live) = idle_within_100_ms(&mut server) {
                panic!(
                    "100 ms after the master resumed, it still counts (worker pid, live) {live:?} \
                     after {conns} closes: a report that found the channel full was never sent"
                );
            }
        }

        #[test]
        fn a_thousand_concurrent_keep_alive_connections() {
            if !enough_descriptors(2100) {
                return;
            }
            let site = Site::new();
            let server = start(&site, &[]);
            let mut clients: Vec<Client> = (0..1000).map(|_| Client::new(&server)).collect();
            for round in 0..2 {
                for c in &mut clients {
                    c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                }
                for c in &mut clients {
                    assert_eq!(c.response().body, b"hello world\n", "round {round}");
                }
            }
        }

        #[test]
        fn out_of_descriptors_sheds_clients_without_hanging_or_spinning() {
            let site = Site::new();
            let server = site.start_nofile(Some(64), &["--model", $model]);
            let mut held = Vec::new();
            let mut shed = 0;
            for _ in 0..120 {
                let Ok(stream) = TcpStream::connect(server.addr) else {
                    shed += 1;
                    continue;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(3)))
                    .unwrap();
                let mut c = Client {
                    writer: stream.try_clone().unwrap(),
                    reader: BufReader::new(stream),
                };
                if c.writer
                    .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                    .is_err()
                {
                    shed += 1;
                    continue;
                }
                match read_response(&mut c.reader, false) {
                    // Its file could not be opened for want of a
                    // descriptor (a pool thread's cache was cold, say).
                    Ok(r) if r.status == 503 => shed += 1,
                    Ok(r) => {
                        assert_eq!(r.status, 200);
                        held.push(c);
                    }
                    // Closed or reset: shed, the clear answer we want. A
                    // read timeout is a hang, and fails here.
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => shed += 1,
                    Err(e) => panic!("a client hung: {e}"),
                }
            }
            assert!(shed > 0, "nobody was shed at 64 descriptors");
            assert!(held.len() > 20, "only {} served", held.len());
            // No busy loop while out of descriptors.
            let before = server.tree_cpu_ticks();
            thread::sleep(Duration::from_millis(500));
            let used = server.tree_cpu_ticks() - before;
            assert!(used < 25, "{used} ticks in 0.5 s");
            // Once clients leave, new ones are served again.
            drop(held);
            assert!(testkit::eventually(Duration::from_secs(3), || {
                TcpStream::connect(server.addr)
                    .ok()
                    .and_then(|s| {
                        let mut c = Client {
                            writer: s.try_clone().ok()?,
                            reader: BufReader::new(s),
                        };
                        c.writer
                            .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                            .ok()?;
                        read_response(&mut c.reader, false).ok()
                    })
                    .is_some_and(|r| r.status == 200)
            }));
        }

        #[test]
        fn a_full_connection_pool_answers_503() {
            let site = Site::new();
            let server = start(&site, &["--workers", "1", "--max-conns", "2"]);
            let mut kept: Vec<Client> = (0..2).map(|_| Client::new(&server)).collect();
            for c in &mut kept {
                c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(c.response().status, 200);
            }
            let mut third = Client::new(&server);
            let r = third.response();
            assert_eq!(r.status, 503);
            assert!(third.closed());
            // A refused client whose request (and body) arrived before the
            // refusal still reads the 503, then a close, not a reset: the
            // server shuts down its side and lingers instead of closing a
            // socket with unread input.
            let mut eager = Client::new(&server);
            let body = "x".repeat(60_000);
            eager.send(&format!(
                "GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
            assert_eq!(eager.response().status, 503);
            let mut rest = Vec::new();
            let end = eager.reader.read_to_end(&mut rest);
            assert!(end.is_ok(), "{end:?}: reset instead of closed");
            // A slot freed is a slot available again.
            drop(kept.pop());
            assert!(testkit::eventually(PATIENCE, || {
                let mut c = Client::new(&server);
                c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                c.response().status == 200
            }));
        }

        #[test]
        fn client_resets_mid_download_harm_nobody() {
            let site = Site::new();
            std::fs::write(site.root().join("huge.bin"), vec![7u8; 8 << 20]).unwrap();
            let server = start(&site, &["--workers", "1"]);
            for _ in 0..10 {
                let mut c = Client::new(&server);
                c.send("GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n");
                let mut some = [0u8; 1000];
                c.reader.read_exact(&mut some).unwrap();
                let stream = c.reader.into_inner();
                reset(stream);
            }
            assert_eq!(get(&server, "/small.txt").status, 200);
        }

        #[test]
        fn a_killed_worker_is_replaced_and_the_server_keeps_serving() {
            let site = Site::new();
            let mut server = start(&site, &[]);
            let workers = testkit::children_of(server.pid());
            assert_eq!(workers.len(), 2, "{workers:?}");
            let victim = workers[0];
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &victim.to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            let replaced = testkit::eventually(Duration::from_secs(3), || {
                let now = testkit::children_of(server.pid());
                now.len() == 2 && !now.contains(&victim)
            });
            assert!(replaced, "no replacement for worker {victim}");
            // Every new connection is answered, whichever worker it lands on.
            for _ in 0..8 {
                assert_eq!(get(&server, "/small.txt").status, 200);
            }
            let workers = testkit::children_of(server.pid());
            server.signal("TERM");
            let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
            assert!(status.success(), "{status:?}");
            let left: Vec<u32> = workers
                .into_iter()
                .filter(|&w| testkit::process_exists(w))
                .collect();
            assert!(left.is_empty(), "workers outlived the master: {left:?}");
        }

        #[test]
        fn sigterm_lets_a_response_in_flight_finish_then_exits_zero() {
            let site = Site::new();
            let data = testkit::payload(20 << 20);
            std::fs::write(site.root().join("twenty.bin"), &data).unwrap();
            let mut server = start(&site, &[]);
            let mut c = Client::new(&server);
            // An idle keep-alive client is closed at once.
            let mut idle = Client::new(&server);
            idle.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(idle.response().status, 200);
            c.send("GET /twenty.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            // Read the head and a little of the body, then stop the server.
            let mut first = [0u8; 4096];
            c.reader.read_exact(&mut first).unwrap();
            server.signal("TERM");
            let mut rest = Vec::new();
            c.reader.read_to_end(&mut rest).unwrap();
            let mut all = first.to_vec();
            all.extend_from_slice(&rest);
            let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert!(all[split..] == data[..], "the download was cut short");
            assert!(idle.closed());
            let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
            assert!(status.success(), "{status:?}");
        }

        #[test]
        fn redirects_stay_on_this_host() {
            let site = Site::new();
            let server = start(&site, &[]);
            for target in [
                "/docs",
                "//evil.example/..//docs",
                "/\\evil.example/..//docs",
                "///evil.example/../docs",
            ] {
                let r = fetch(&server, &format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
                assert_eq!(r.status, 301, "{target}");
                assert_eq!(r.header("location"), Some("/docs/"), "{target}");
            }
        }

        #[test]
        fn empty_lines_are_skipped_but_keep_no_connection_alive() {
            let site = Site::new();
            let server = start(&site, &["--header-timeout", "1", "--keepalive-timeout", "1"]);
            // A few empty lines before a request line are skipped (RFC 9112
            // §2.2); too many are refused.
            let r = fetch(&server, "\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(r.status, 200);
            assert_eq!(fetch(&server, &"\r\n".repeat(20)).status, 400);
            // Trickled, they restart no timer: a new connection, and one
            // after a response, are closed quietly when their 1 s is up,
            // long before the trickle would have reached the cap (2 s).
            let mut fresh = Client::new(&server);
            assert_eq!(trickle_until_answered(&mut fresh), b"", "a 400 means the timer restarted");
            let mut kept = Client::new(&server);
            kept.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(kept.response().status, 200);
            assert_eq!(trickle_until_answered(&mut kept), b"", "a 400 means the timer restarted");
        }

        #[test]
        fn a_host_must_be_a_host() {
            let site = Site::new();
            let server = start(&site, &[]);
            for (host, status) in [("a b", 400), ("a/b", 400), ("x@y", 400), ("[::1]:80", 200), ("t:8080", 200)] {
                let r = fetch(&server, &format!("GET /small.txt HTTP/1.1\r\nHost: {host}\r\n\r\n"));
                assert_eq!(r.status, status, "Host: {host}");
            }
        }

        #[test]
        fn http_1_0_with_transfer_encoding_is_refused_and_closed() {
            let site = Site::new();
            let server = start(&site, &[]);
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n");
            let r = c.response();
            assert_eq!(r.status, 400);
            assert_eq!(r.header("connection"), Some("close"));
            assert!(c.closed());
        }

        #[test]
        fn expect_100_continue_is_answered_without_waiting_for_the_body() {
            let site = Site::new();
            let server = start(&site, &["--max-body", "1000"]);
            let expect = |path: &str, length: usize| {
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n")
            };
            // The body will be read: 100 first, then the answer to the body.
            let mut c = Client::new(&server);
            c.send(&expect("/small.txt", 5));
            let interim = c.head_response();
            assert_eq!(interim.status, 100);
            c.send("hello");
            assert_eq!(c.response().body, b"hello world\n");
            // It will not be: the final answer at once, and a close.
            for (path, length, status) in [("/nope", 5, 404), ("/small.txt", 5000, 413)] {
                let mut c = Client::new(&server);
                c.send(&expect(path, length));
                let r = c.response();
                assert_eq!(r.status, status, "{path}");
                assert_eq!(r.header("connection"), Some("close"), "{path}");
                c.writer.shutdown(std::net::Shutdown::Write).unwrap();
                assert!(c.closed(), "{path}");
            }
            // HTTP/1.0 knows no 100: the body is read as usual.
            let mut c = Client::new(&server);
            c.send("GET /small.txt HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
            let r = c.response();
            assert_eq!(r.status, 200);
        }

        #[test]
        fn the_access_log_has_a_common_log_format_line_per_request() {
            let site = Site::new();
            let log = site.top.join("access.log");
            let server = start(&site, &["--access-log", log.to_str().unwrap()]);
            assert_eq!(get(&server, "/small.txt").status, 200);
            assert_eq!(get(&server, "/nope").status, 404);
            let mut c = Client::new(&server);
            c.send("BREW / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().status, 501);
            // A quote or a backslash in the target must not break the line.
            assert_eq!(get(&server, "/a\"b\\c").status, 404);
            let text = || std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                testkit::eventually(PATIENCE, || text().lines().count() >= 4),
                "{}",
                text()
            );
            for line in text().lines() {
                assert_eq!(line.matches('"').count(), 2, "not Common Log Format: {line}");
            }
            assert!(text().contains("\"GET /a\\x22b\\x5Cc HTTP/1.1\" 404 "), "{}", text());
            let text = text();
            assert!(
                text.contains("\"GET /small.txt HTTP/1.1\" 200 12"),
                "{text}"
            );
            assert!(text.contains("\"GET /nope HTTP/1.1\" 404 "), "{text}");
            assert!(text.contains("\"BREW / HTTP/1.1\" 501 "), "{text}");
            assert!(text.starts_with("127.0.0.1 - - ["), "{text}");
        }

        #[test]
        fn curl_understands_it() {
            if std::process::Command::new("curl")
                .arg("--version")
                .output()
                .is_err()
            {
                testkit::skip("curl is not installed");
                return;
            }
            let site = Site::new();
            let server = start(&site, &[]);
            let curl = |args: &[&str]| {
                let out = std::process::Command::new("curl")
                    .args(["-s", "--max-time", "10"])
                    .args(args)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "curl {args:?}");
                out.stdout
            };
            let url = format!("http://{}/small.txt", server.addr);
            assert_eq!(curl(&[&url]), b"hello world\n");
            assert_eq!(curl(&["--http1.0", &url]), b"hello world\n");
            let head = String::from_utf8(curl(&["-I", &url])).unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            // Two URLs: curl reuses the connection (keep-alive).
            let both = curl(&[&url, &format!("http://{}/style.css", server.addr)]);
            assert_eq!(both, b"hello world\nbody { color: red }\n");
            let big = curl(&[&format!("http://{}/big.bin", server.addr)]);
            assert!(big == testkit::payload(1 << 20));
        }

        #[test]
        fn a_rust_http_client_understands_it() {
            let site = Site::new();
            let server = start(&site, &[]);
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(PATIENCE))
                .build()
                .into();
            for _ in 0..3 {
                let mut r = agent
                    .get(&format!("http://{}/big.bin", server.addr))
                    .call()
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body = r
                    .body_mut()
                    .with_config()
                    .limit(2 << 20)
                    .read_to_vec()
                    .unwrap();
                assert!(body == testkit::payload(1 << 20));
            }
            let text = agent
                .get(&format!("http://{}/small.txt", server.addr))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            assert_eq!(text, "hello world\n");
        }

        #[test]
        fn the_demo_site_is_there() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
            for asset in [
                "index.html",
                "style.css",
                "app.js",
                "img/logo.svg",
                "img/stages.png",
            ] {
                assert!(root.join(asset).is_file(), "{asset}");
            }
            let server = Server::start(
                BIN,
                &["--addr", "127.0.0.1:0", "--workers", "1", "--model", $model],
            );
            let r = get(&server, "/");
            assert_eq!(r.status, 200);
            assert!(String::from_utf8_lossy(&r.body).contains("It works."));
            // The script puts the real address in the curl examples.
            let script = String::from_utf8_lossy(&get(&server, "/app.js").body).into_owned();
            assert!(script.contains("location.host"), "{script}");
            // The large file, made at start, and a range of it.
            let part = fetch(
                &server,
                "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n",
            );
            assert_eq!(part.status, 206);
            assert_eq!(part.header("content-range"), Some("bytes 0-9/67108864"));
            assert_eq!(part.body, [0; 10]);
            // A missing page is styled like the rest.
            let missing = get(&server, "/missing.html");
            assert_eq!(missing.status, 404);
            assert!(String::from_utf8_lossy(&missing.body).contains("<style>"));
        }
        }
    };
}

/// Wraps every test so that the `uring` model's are skipped, with the
/// reason printed, where this kernel or sandbox forbids io_uring.
macro_rules! each_test {
    ($model:literal; $( #[test] fn $name:ident() $body:block )*) => {
        $(
            #[test]
            fn $name() {
                if skipped($model) {
                    return;
                }
                $body
            }
        )*
    };
}

/// Asks the master for `workers PID:LIVE:TAKEN …` (SIGUSR1): each worker's
/// pid and live connections, as the master counts them.
fn worker_loads(server: &mut Server) -> Vec<(u32, u64)> {
    server.signal("USR1");
    let line = server.read_stdout_line().expect("status line");
    line.trim()
        .strip_prefix("workers ")
        .unwrap_or_else(|| panic!("unexpected status line {line:?}"))
        .split(' ')
        .map(|w| {
            let f: Vec<u64> = w.split(':').map(|x| x.parse().expect("number")).collect();
            (f[0] as u32, f[1])
        })
        .collect()
}

/// Whether the master counts every worker idle within 100 ms; if not, the
/// last counts it gave. The workers must tell it by themselves: the test
/// only gives the report time to cross the channel.
fn idle_within_100_ms(server: &mut Server) -> Result<(), Vec<(u32, u64)>> {
    let mut live = Vec::new();
    let idle = testkit::eventually(Duration::from_millis(100), || {
        live = worker_loads(server);
        live.iter().all(|&(_, n)| n == 0)
    });
    if idle { Ok(()) } else { Err(live) }
}

/// One worker's entry in the master's SIGUSR2 status line.
#[derive(Debug, Clone, Copy)]
struct Channel {
    pid: u32,
    queued: u64,
    sent: u64,
}

/// Asks the master for `channels PID:QUEUED:SENT:RECEIVED … accepting|paused`
/// (SIGUSR2): an entry per worker, and whether it is accepting.
fn channels(server: &mut Server) -> (Vec<Channel>, bool) {
    server.signal("USR2");
    let line = server.read_stdout_line().expect("status line");
    let mut words: Vec<&str> = line
        .trim()
        .strip_prefix("channels ")
        .unwrap_or_else(|| panic!("unexpected status line {line:?}"))
        .split(' ')
        .collect();
    let accepting = match words.pop() {
        Some("accepting") => true,
        Some("paused") => false,
        other => panic!("no accepting|paused in {line:?}: {other:?}"),
    };
    let workers = words
        .iter()
        .map(|w| {
            let f: Vec<u64> = w.split(':').map(|x| x.parse().expect("number")).collect();
            Channel {
                pid: f[0] as u32,
                queued: f[1],
                sent: f[2],
            }
        })
        .collect();
    (workers, accepting)
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("kill");
}

/// SIGSTOPs `pid` and returns once it is stopped.
fn stop(pid: u32) {
    signal(pid, Signal::SIGSTOP);
    assert!(
        testkit::eventually(PATIENCE, || testkit::process_state(pid) == Some('T')),
        "worker {pid} did not stop"
    );
}

/// Sends an empty line every 400 ms until something comes back or the
/// connection closes (10 s at most); returns what came back, which is
/// empty when the server closed quietly.
fn trickle_until_answered(c: &mut Client) -> Vec<u8> {
    let start = Instant::now();
    let stream = c.reader.get_mut();
    while start.elapsed() < Duration::from_secs(10) {
        if !testkit::stays_silent(stream, Duration::from_millis(400)) {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            return answer;
        }
        if c.writer.write_all(b"\r\n").is_err() {
            return Vec::new();
        }
    }
    panic!("still open after 10 s of empty lines");
}

/// A keep-alive client that has sent one request.
fn requesting(server: &Server) -> Client {
    let mut c = Client::new(server);
    c.send("GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    c
}

/// How many clients got their answer; every other one must have seen its
/// connection closed, not a hang.
fn answered(clients: &mut [Client]) -> u64 {
    let mut answered = 0;
    for c in clients.iter_mut() {
        match read_response(&mut c.reader, false) {
            Ok(r) => {
                assert_eq!(r.body, b"hello world\n");
                answered += 1;
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "a lost client must see its connection closed, not {e}"
            ),
        }
    }
    answered
}

/// Waits until the master has taken in all `opened` connections (each in a
/// channel or queued) and returns the channels' status.
fn settled(server: &mut Server, opened: u64) -> Vec<Channel> {
    let mut last = Vec::new();
    let done = testkit::eventually(PATIENCE, || {
        last = channels(server).0;
        last.iter().map(|c| c.sent + c.queued).sum::<u64>() == opened
    });
    assert!(
        done,
        "the master did not take {opened} connections in: {last:?}"
    );
    last
}

/// The CPUs this test may run on (the server started from it inherits them).
fn cpus_allowed() -> Vec<usize> {
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// The CPUs process `pid` may run on: its main thread's, which every
/// other thread of it must share (the simulated Proactor's pool, the
/// access log's writer; not the kernel's io_uring workers, `iou-*`).
fn worker_cpus(pid: u32) -> Vec<usize> {
    let main = task_cpus(&format!("/proc/{pid}"));
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("iou-") && dir.exists() {
            assert_eq!(
                task_cpus(&dir.to_string_lossy()),
                main,
                "{} ({})",
                dir.display(),
                comm.trim()
            );
        }
    }
    main
}

/// The CPUs the task at `dir` may run on (its `Cpus_allowed_list`, proc(5)).
fn task_cpus(dir: &str) -> Vec<usize> {
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    cpus
}

/// Pins the calling thread (only it: a pid of 0 names the caller) to `cpus`.
fn pin_this_thread(cpus: &[usize]) {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).unwrap();
    }
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set).unwrap();
}

/// Connections each worker of `server` has taken since this call, counted
/// by the growth of its descriptors (clients that ask for a missing file:
/// a 404 opens none).
fn connections_per_worker(server: &Server) -> impl Fn() -> Vec<usize> {
    let workers = testkit::children_of(server.pid());
    let fds =
        move || -> Vec<usize> { workers.iter().map(|&w| testkit::proc_fd_count(w)).collect() };
    let before = fds();
    move || {
        fds()
            .iter()
            .zip(&before)
            .map(|(now, was)| now - was)
            .collect()
    }
}

/// Two CPUs for the `--steer cpu` test, or why it cannot run here: it needs
/// two CPUs, Linux 6.1 or later (where the kernel picks a `SO_REUSEPORT`
/// listener by its `SO_INCOMING_CPU`), and loopback packets processed on
/// the sender's CPU (no RPS on `lo`).
fn two_cpus_to_steer_by() -> Option<Vec<usize>> {
    let cpus = cpus_allowed();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut version = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    let rps = std::fs::read_to_string("/sys/class/net/lo/queues/rx-0/rps_cpus").unwrap_or_default();
    let reason = if cpus.len() < 2 {
        "--steer cpu needs two CPUs".to_string()
    } else if (major, minor) < (6, 1) {
        format!("--steer cpu needs Linux 6.1, this is {release}")
    } else if rps.trim().chars().any(|c| c != '0' && c != ',') {
        "RPS moves loopback packets to other CPUs".to_string()
    } else {
        return Some(cpus[..2].to_vec());
    };
    testkit::skip(&reason);
    None
}

/// A start that stops right after the io_uring check, and what the
/// server says where it fails.
const URING_CHECK: [&str; 6] = [
    "--model",
    "uring",
    "--addr",
    "127.0.0.1:0",
    "--max-conns",
    "0",
];
const URING_MISSING: &str = "io_uring is not available";

/// Whether the tests of `model` cannot run here: only `uring`, and only
/// where the server says io_uring is not available.
fn skipped(model: &str) -> bool {
    static REASON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if model != "uring" {
        return false;
    }
    // --max-conns 0 is refused after the io_uring check: reaching it
    // means io_uring works.
    let reason = REASON.get_or_init(|| testkit::refusal(BIN, &URING_CHECK, URING_MISSING));
    if let Some(reason) = reason {
        testkit::skip(reason);
    }
    reason.is_some()
}

mod reactor {
    suite!("reactor");
}

mod proactor_sim {
    suite!("proactor-sim");
}

mod uring {
    suite!("uring");
}
