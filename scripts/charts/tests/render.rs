//! The binary end to end, on the CSV files of tests/fixtures (small ones,
//! shaped like what the measuring scripts write, for every chart's CSV).
//! Everything is written under cargo's temporary folder for tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

const CHARTS: [(&str, &str); 5] = [
    (
        "vs-nginx.svg",
        "stage06 / nginx requests/s, per dispatch mode",
    ),
    (
        "latency.svg",
        "Latency at a fixed request rate (open loop), 1 KiB",
    ),
    ("memory.svg", "Memory per connection (RSS of all processes)"),
    (
        "echo-ladder.svg",
        "Echo messages/s by stage (64-byte ping-pong)",
    ),
    ("models.svg", "stage06 requests/s by I/O model, 1 KiB"),
];

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("charts")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The committed traces: the timelines are drawn from them (read only).
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../notes/data/traces");

/// Runs the binary with --data DATA and its outputs in OUT/measured,
/// OUT/charts and OUT/timelines, plus `extra` flags.
/// A copy of the fixtures in `out/data`, for a test that spoils one.
fn fixtures_in(out: &Path) -> PathBuf {
    let data = out.join("data");
    fs::create_dir_all(&data).unwrap();
    for entry in fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, data.join(path.file_name().unwrap())).unwrap();
    }
    data
}

fn charts(data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charts"))
        .arg("--data")
        .arg(data)
        .arg("--tables")
        .arg(out.join("measured"))
        .arg("--charts")
        .arg(out.join("charts"))
        .arg("--traces")
        .arg(TRACES)
        .arg("--timelines")
        .arg(out.join("timelines"))
        .args(extra)
        .output()
        .unwrap()
}

fn succeeds(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fails(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file under `dir`, by path, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for sub in ["measured", "charts", "timelines"] {
        for entry in fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            all.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
        }
    }
    all.sort();
    all
}

const BENCH_MODELS_MD: &str = "\
**stage06 by I/O model, 1 KiB**, from `scripts/bench-models.sh`:

Machine: AMD EPYC 7B13, 2 cores, Linux 6.18.44; 2026-11-29; commit abc1234.
Each cell: the median of 3 rounds, their min–max under it. wrk -t2, 3 s runs, servers in alternation; system calls counted with perf in one more run.

| model | req/s, 50 conns | req/s, 1000 conns | system calls / request |
|---|---:|---:|---:|
| reactor | 112327<br><small>110609–114914</small> | 102381<br><small>101697–103587</small> | 2.31 |
| proactor-sim | 71368<br><small>68931–72584</small> | 67801<br><small>65540–68379</small> | 6.84 |
| uring | 97524<br><small>96301–98880</small> | 94078<br><small>93386–95652</small> | 0.92 |
";

#[test]
fn renders_tables_and_charts() {
    let out = scratch("render");
    succeeds(&charts(Path::new(FIXTURES), &out, &[]));
    let table = fs::read_to_string(out.join("measured/bench-models.md")).unwrap();
    assert_eq!(table, BENCH_MODELS_MD);
    let tables = fs::read_dir(out.join("measured")).unwrap().count();
    let csvs = fs::read_dir(FIXTURES).unwrap().count();
    assert_eq!(tables, csvs);
    for (file, title) in CHARTS {
        let svg = fs::read_to_string(out.join("charts").join(file)).unwrap();
        assert!(svg.starts_with("<svg "), "{file}: {}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"), "{file}");
        assert!(svg.contains(title), "{file} lacks its title");
        // Text is SVG text, set by the browser: no font was needed here.
        assert!(svg.contains("<text "), "{file}");
        // Every tag that opens closes (a cheap well-formedness check).
        let opens = svg.matches("<text ").count() + svg.matches("<svg ").count();
        let closes = svg.matches("</text>").count() + svg.matches("</svg>").count();
        assert_eq!(opens, closes, "{file}");
    }
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let (a, b) = (scratch("twice-a"), scratch("twice-b"));
    succeeds(&charts(Path::new(FIXTURES), &a, &[]));
    succeeds(&charts(Path::new(FIXTURES), &b, &[]));
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 7 + CHARTS.len() + 4);
    assert!(fa == fb, "two runs wrote different files");
    // And a second run over the first one changes nothing.
    let again = succeeds(&charts(Path::new(FIXTURES), &a, &[]));
    assert!(
        again.contains("0 written, 16 unchanged, 0 removed"),
        "{again}"
    );
}

#[test]
fn check_passes_on_what_was_written_and_names_what_is_not() {
    let out = scratch("check");
    let data = Path::new(FIXTURES);
    succeeds(&charts(data, &out, &[]));
    succeeds(&charts(data, &out, &["--check"]));

    let table = out.join("measured/latency-http.md");
    let text = fs::read_to_string(&table).unwrap();
    fs::write(&table, text.replace("10000", "10001")).unwrap();
    fs::remove_file(out.join("charts/memory.svg")).unwrap();
    fs::write(out.join("measured/gone.md"), "old\n").unwrap();
    let before = files(&out);
    let stderr = fails(&charts(data, &out, &["--check"]));
    assert!(stderr.contains("differs: "), "{stderr}");
    assert!(stderr.contains("latency-http.md"), "{stderr}");
    assert!(stderr.contains("missing: "), "{stderr}");
    assert!(stderr.contains("memory.svg"), "{stderr}");
    assert!(stderr.contains("stale: "), "{stderr}");
    assert!(stderr.contains("gone.md"), "{stderr}");
    assert!(
        stderr.contains("3 of the book's tables and pictures"),
        "{stderr}"
    );
    assert!(files(&out) == before, "--check wrote something");

    // Writing repairs all three.
    let stdout = succeeds(&charts(data, &out, &[]));
    assert!(
        stdout.contains("2 written, 14 unchanged, 1 removed"),
        "{stdout}"
    );
    succeeds(&charts(data, &out, &["--check"]));
}

#[test]
fn no_data_is_an_error() {
    let out = scratch("no-data");
    let empty = out.join("data");
    fs::create_dir_all(&empty).unwrap();
    let stderr = fails(&charts(&empty, &out, &["--check"]));
    assert!(stderr.contains("no CSV file in"), "{stderr}");
    let stderr = fails(&charts(&out.join("nowhere"), &out, &["--check"]));
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn a_missing_csv_or_column_names_the_chart() {
    let out = scratch("missing");
    let data = fixtures_in(&out);
    let models = data.join("bench-models.csv");
    let text = fs::read_to_string(&models).unwrap();
    fs::write(
        &models,
        text.replace("req/s, 1000 conns", "req/s, 999 conns"),
    )
    .unwrap();
    let stderr = fails(&charts(&data, &out, &[]));
    assert!(
        stderr.contains("chart models.svg: series \"1000 connections\": bench-models.csv has no column \"req/s, 1000 conns\""),
        "{stderr}"
    );

    fs::remove_file(&models).unwrap();
    let stderr = fails(&charts(&data, &out, &["--check"]));
    assert!(stderr.contains("chart models.svg"), "{stderr}");
    assert!(stderr.contains("bench-models.csv"), "{stderr}");
}

#[test]
fn a_table_column_the_csv_lacks_is_named() {
    let out = scratch("missing-shown");
    let data = fixtures_in(&out);
    // catalog.rs shows this column of the pass table.
    let pass = data.join("bench-http-pass.csv");
    let text = fs::read_to_string(&pass).unwrap();
    fs::write(&pass, text.replace("wrk's CPU busy", "wrk's CPU")).unwrap();
    let stderr = fails(&charts(&data, &out, &[]));
    assert!(
        stderr.contains(
            "table bench-http-pass: catalog.rs shows a column \"wrk's CPU busy, beside stage06\" its CSV does not have"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_csv_names_file_and_line() {
    let out = scratch("bad-csv");
    let data = out.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("x.csv"), "# title: T\n# colour: red\n").unwrap();
    let stderr = fails(&charts(&data, &out, &[]));
    assert!(
        stderr.contains("x.csv: line 2: unknown key `colour`"),
        "{stderr}"
    );
}

#[test]
fn help_lists_the_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_charts"))
        .arg("--help")
        .output()
        .unwrap();
    let help = succeeds(&output);
    for flag in [
        "--data",
        "--tables",
        "--charts",
        "--traces",
        "--timelines",
        "--check",
    ] {
        assert!(help.contains(flag), "{help}");
    }
}

#[test]
fn check_covers_the_timelines_and_a_missing_trace_names_its_file() {
    let out = scratch("timelines");
    let data = Path::new(FIXTURES);
    succeeds(&charts(data, &out, &[]));
    let svg = fs::read_to_string(out.join("timelines/lt-et.svg")).unwrap();
    assert!(svg.contains("stage02-epoll --trigger et"), "{svg}");
    fs::remove_file(out.join("timelines/models.svg")).unwrap();
    fs::write(out.join("timelines/old.svg"), "<svg/>\n").unwrap();
    let stderr = fails(&charts(data, &out, &["--check"]));
    assert!(
        stderr.contains("missing: ") && stderr.contains("models.svg"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stale: ") && stderr.contains("old.svg"),
        "{stderr}"
    );

    let traces = out.join("traces");
    fs::create_dir_all(&traces).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_charts"))
        .arg("--data")
        .arg(data)
        .arg("--tables")
        .arg(out.join("measured"))
        .arg("--charts")
        .arg(out.join("charts"))
        .arg("--traces")
        .arg(&traces)
        .arg("--timelines")
        .arg(out.join("timelines"))
        .arg("--check")
        .output()
        .unwrap();
    let stderr = fails(&output);
    assert!(
        stderr.contains("timeline lt-et.svg: needs notes/data/traces/lt.json"),
        "{stderr}"
    );
}
