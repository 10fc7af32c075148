//! A real browser loads the bundled demo site; the server's access log then
//! shows whether the page and every asset it references came back 200.
//! Skipped, with a printed reason, when no Chromium is installed (`.ci/run`
//! installs Debian's `chromium`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{PATIENCE, Server, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_stage06-full");

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

#[test]
fn a_browser_loads_the_demo_site_and_all_its_assets() {
    let Some(browser) = chromium() else {
        testkit::skip("no chromium installed (apt-get install chromium)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("stage06-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let server = Server::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--access-log",
            log.to_str().unwrap(),
        ],
    );
    let shot = dir.join("page.png");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1024,900",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://{}/", server.addr))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot"
    );
    let wanted = [
        "\"GET / HTTP/1.1\" 200 ",
        "\"GET /style.css HTTP/1.1\" 200 ",
        "\"GET /app.js HTTP/1.1\" 200 ",
        "\"GET /img/logo.svg HTTP/1.1\" 200 ",
        "\"GET /img/stages.png HTTP/1.1\" 200 ",
    ];
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let all_there = eventually(PATIENCE, || wanted.iter().all(|w| text().contains(w)));
    assert!(all_there, "missing from the access log:\n{}", text());
    // Nothing the page asked for failed.
    for line in text().lines() {
        let status = line.rsplit(' ').nth(1).unwrap_or("");
        assert!(
            status == "200" || status == "304" || line.contains("/favicon.ico"),
            "{line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
