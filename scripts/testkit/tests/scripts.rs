//! The shell scripts in `scripts/`: the parts that need no build, no server
//! and no benchmark tool, so they can run with every `cargo test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `scripts/` folder.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in scripts/")
        .to_path_buf()
}

/// Runs `bash -c CODE` with lib.sh sourced first, from `scripts/`.
fn with_lib(code: &str, env: &[(&str, &str)]) -> Output {
    let dir = scripts_dir();
    Command::new("bash")
        .arg("-c")
        .arg(format!(". ./lib.sh\n{code}"))
        .current_dir(&dir)
        .env_remove("CARGO_TARGET_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run bash")
}

#[test]
fn every_script_answers_help_with_exit_0_and_its_usage() {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .expect("read scripts/")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let is_script = path.extension()? == "sh" && path.file_name()? != "lib.sh";
            is_script.then_some(path)
        })
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 10, "only {scripts:?}");
    for script in &scripts {
        let name = script.file_name().unwrap().to_string_lossy();
        for flag in ["--help", "-h"] {
            // Run as a user would, which needs the executable bit too.
            let out = Command::new(script).arg(flag).output().expect("run");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{name} {flag}: {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains(&format!("scripts/{name}")),
                "{name} {flag}: no usage line in {stdout:?}"
            );
        }
    }
}

#[test]
fn stage_diff_takes_its_flag_in_any_position() {
    let script = scripts_dir().join("stage-diff.sh");
    let run = |args: &[&str]| Command::new(&script).args(args).output().expect("run");
    let last = run(&["03", "04", "--stat"]);
    assert!(last.status.success());
    assert!(String::from_utf8_lossy(&last.stdout).contains("files changed"));
    for args in [["--stat", "03", "04"], ["03", "--stat", "04"]] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}");
        assert_eq!(out.stdout, last.stdout, "{args:?}");
    }
    let whole = run(&["03", "04"]);
    assert!(String::from_utf8_lossy(&whole.stdout).starts_with("diff --git"));
    assert!(!run(&["03"]).status.success(), "one stage is not a diff");
    assert!(!run(&["03", "04", "--bogus"]).status.success());
}

/// By default the diff is the lesson: no exercise or command-line tests,
/// no measuring examples, no Cargo.toml name or description; `--all` (in
/// any position, with `--stat` in any position) puts them back.
#[test]
fn stage_diff_leaves_out_what_is_not_the_lesson_unless_all() {
    let script = scripts_dir().join("stage-diff.sh");
    let run = |args: &[&str]| {
        let out = Command::new(&script).args(args).output().expect("run");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let lesson = run(&["05", "06", "--stat"]);
    for left_out in ["exercises.rs", "cli.rs", "browser.rs", "burst.rs"] {
        assert!(!lesson.contains(left_out), "{left_out} in {lesson}");
    }
    assert!(lesson.contains("src/http/parser.rs"), "{lesson}");
    let whole = run(&["05", "06"]);
    assert!(!whole.contains("description ="), "Cargo.toml's description");
    assert!(whole.contains("io-uring"), "a new dependency is the lesson");
    let all = run(&["05", "06", "--stat", "--all"]);
    for put_back in ["exercises.rs", "cli.rs", "browser.rs", "burst.rs"] {
        assert!(all.contains(put_back), "{put_back} not in {all}");
    }
    for args in [
        ["--all", "--stat", "05", "06"],
        ["05", "--all", "06", "--stat"],
    ] {
        assert_eq!(run(&args), all, "{args:?}");
    }
    assert!(run(&["05", "06", "--all"]).contains("description ="));
}

#[test]
fn lib_sh_builds_into_cargo_target_dir() {
    let root = scripts_dir().parent().unwrap().to_path_buf();
    let out = with_lib("echo \"$BIN\"", &[]);
    let bin = String::from_utf8_lossy(&out.stdout);
    assert_eq!(bin.trim(), root.join("target/release").to_str().unwrap());
    let out = with_lib("echo \"$BIN\"", &[("CARGO_TARGET_DIR", "/tmp/elsewhere")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "/tmp/elsewhere/release"
    );
    // Relative to where the script was started, not to where cargo runs.
    let out = with_lib("echo \"$BIN\"", &[("CARGO_TARGET_DIR", "t")]);
    let expected = scripts_dir().join("t/release");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected.to_str().unwrap()
    );
}

/// start_server empties the output file before the new server starts, so
/// a previous server's `listening on` line is never taken for the new one's.
/// (Without that, the old line was read only when the new server's shell was
/// slow to open the file, as on a loaded machine: this checks the outcome,
/// it cannot force that timing.)
#[test]
fn csv_row_writes_quoted_records_only_when_asked() {
    let dir = std::env::temp_dir().join(format!("csv-row-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("t.csv");
    let file_str = file.to_string_lossy().to_string();
    // Without CSV, nothing is written anywhere and nothing is printed.
    let out = with_lib("csv_row a b 1", &[]);
    assert!(out.status.success() && out.stdout.is_empty());
    // Quotes doubled, commas kept inside quotes; the round from the
    // argument, else CSV_ROUND, else 1; CSV_ROW replaces the row.
    let code = r#"csv_row 'a, "b"' 'x/s' 12 3
CSV_ROUND=2 csv_row r c "$(ratio 3 2)"
csv_row r c 7
CSV_ROW=only csv_row ignored c 8"#;
    let out = with_lib(code, &[("CSV", &file_str)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&file).expect("csv written");
    assert_eq!(
        written,
        "\"a, \"\"b\"\"\",\"x/s\",\"3\",\"12\"\n\"r\",\"c\",\"2\",\"1.50×\"\n\
         \"r\",\"c\",\"1\",\"7\"\n\"only\",\"c\",\"1\",\"8\"\n"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn measure_all_refuses_a_table_it_does_not_make_before_measuring_anything() {
    let out = Command::new(scripts_dir().join("measure-all.sh"))
        .arg("no-such-table")
        .output()
        .expect("run measure-all.sh");
    assert!(!out.status.success(), "an unknown table was accepted");
    assert!(out.stdout.is_empty(), "it started measuring");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "no table no-such-table (see --list)\n"
    );
}

#[test]
fn measure_all_lists_a_table_for_every_csv_the_book_includes() {
    let out = Command::new(scripts_dir().join("measure-all.sh"))
        .arg("--list")
        .output()
        .expect("run measure-all.sh");
    assert!(out.status.success());
    let tables = String::from_utf8_lossy(&out.stdout);
    let notes = scripts_dir().parent().expect("repo").join("notes/src");
    let mut included = Vec::new();
    for entry in std::fs::read_dir(&notes).expect("notes/src") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).expect("chapter");
            for part in text.split("{{#include measured/").skip(1) {
                let name = part.split(".md}}").next().expect("name");
                included.push(name.to_string());
            }
        }
    }
    assert!(!included.is_empty());
    for name in included {
        // NAME-placement-shared is NAME measured with PLACEMENT=shared.
        let table = name.strip_suffix("-placement-shared").unwrap_or(&name);
        assert!(
            tables.lines().any(|t| t == table),
            "the book includes measured/{name}.md, which measure-all.sh does not make"
        );
    }
}

#[test]
fn start_server_never_reads_the_previous_servers_address() {
    let code = r#"
        make_tmp
        echo 'listening on 10.0.0.1:1' >"$tmp/out"
        start_server "$tmp/out" sh -c 'sleep 0.3; echo "listening on 10.0.0.2:2"; sleep 5'
        echo "$SERVER_ADDR"
    "#;
    let out = with_lib(code, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10.0.0.2:2");
}

/// Runs `awk -f scripts/lab-stub.awk` (with `keep` if given) on `source`;
/// `None` where the stubber is not in this repository (a student's).
fn lab_stub(source: &str, keep: Option<&str>) -> Option<Output> {
    let awk = scripts_dir().join("lab-stub.awk");
    if !awk.exists() {
        testkit::skip("scripts/lab-stub.awk is not in this repository");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("lab-stub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary folder");
    let file = dir.join(format!("{}.rs", keep.unwrap_or("all")));
    std::fs::write(&file, source).expect("write the source");
    let mut cmd = Command::new("awk");
    if let Some(lab) = keep {
        cmd.arg("-v").arg(format!("keep={lab}"));
    }
    let out = cmd
        .arg("-f")
        .arg(&awk)
        .arg(&file)
        .output()
        .expect("run awk");
    let _ = std::fs::remove_file(&file);
    Some(out)
}

const LABBED: &str = "//! A module.
//! Its map.

use std::io;

pub fn kept() -> u32 {
    1
}

pub fn written(n: u32) -> io::Result<u32> {
    // LAB s9-demo BEGIN: double it {twice}
    let m = n * 2;
    Ok(m)
    // LAB END
}

fn other(n: u32) -> u32 {
    // LAB s9-other BEGIN: add one
    n + 1
    // LAB END
}
";

/// A lab region becomes one todo!() between its markers, with the hint as
/// a format string (braces doubled); the file gets its `allow` after the
/// `//!` lines; `keep` leaves one lab's regions as they are.
#[test]
fn lab_stub_turns_each_region_into_a_todo_and_keeps_the_rest() {
    let Some(out) = lab_stub(LABBED, None) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stubbed = String::from_utf8_lossy(&out.stdout);
    let expected = LABBED
        .replace(
            "//! Its map.\n",
            "//! Its map.\n// Until the labs below are done, their todo!() stubs leave code unused;\n\
             // delete this line once they pass.\n#![allow(unused)]\n",
        )
        .replace(
            "    let m = n * 2;\n    Ok(m)\n",
            "    todo!(\"s9-demo: double it {{twice}}\")\n",
        )
        .replace("    n + 1\n", "    todo!(\"s9-other: add one\")\n");
    assert_eq!(stubbed, expected);

    let Some(out) = lab_stub(LABBED, Some("s9-demo")) else {
        return;
    };
    let stubbed = String::from_utf8_lossy(&out.stdout);
    assert!(
        stubbed.contains("    let m = n * 2;\n    Ok(m)\n"),
        "{stubbed}"
    );
    assert!(
        stubbed.contains("todo!(\"s9-other: add one\")"),
        "{stubbed}"
    );

    // Nothing to stub: the file comes back as it was.
    let plain = "//! Nothing here.\nfn f() {}\n";
    let Some(out) = lab_stub(plain, None) else {
        return;
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain);
}

#[test]
fn lab_stub_refuses_a_marker_out_of_place() {
    for bad in [
        "fn f() {\n    // LAB a BEGIN: x\n    // LAB b BEGIN: y\n    // LAB END\n}\n",
        "fn f() {\n    // LAB END\n}\n",
        "fn f() {\n    // LAB a BEGIN: never closed\n}\n",
        "fn f() {\n    // LAB a BEGIN: a \"quote\"\n    // LAB END\n}\n",
        "fn f() {\n    // LAB a START: not a marker\n}\n",
    ] {
        let Some(out) = lab_stub(bad, None) else {
            return;
        };
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(".rs:"),
            "no file and line for {bad:?}"
        );
    }
}

/// Without notes/solutions/ (a student's repository) check-exercises.sh
/// has nothing to check, says so in one line, and passes.
#[test]
fn check_exercises_skips_without_solutions() {
    let dir = std::env::temp_dir().join(format!("no-solutions-{}", std::process::id()));
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).expect("temporary folder");
    for name in ["check-exercises.sh", "lib.sh"] {
        std::fs::copy(scripts_dir().join(name), scripts.join(name)).expect("copy");
    }
    let out = Command::new("bash")
        .arg(scripts.join("check-exercises.sh"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run check-exercises.sh");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "skipped: no notes/solutions/ (this repository has no reference solutions)"
    );
}
