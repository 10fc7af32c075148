//! The book's rules that can be checked without building it.

use std::path::{Path, PathBuf};

/// The files of `notes/src/DIR` whose names end in `.EXT`, sorted.
fn book_files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../notes/src")
        .join(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

/// The book's chapters, `notes/src/*.md`.
fn chapters() -> Vec<PathBuf> {
    book_files("", "md")
}

/// Words of prose: what a reader reads as text. Fenced code, tables,
/// `{{#include}}` lines, images, HTML comments and lines that are a bare
/// tag (`<details>`) are left out; a `<summary>`'s text counts.
fn prose_words(text: &str) -> usize {
    let mut words = 0;
    let mut fenced = false;
    let mut in_comment = false;
    for line in text.lines() {
        let mut line = line.to_string();
        // HTML comments, which may span lines.
        loop {
            if in_comment {
                match line.find("-->") {
                    Some(end) => {
                        line = line[end + 3..].to_string();
                        in_comment = false;
                    }
                    None => {
                        line.clear();
                        break;
                    }
                }
            } else if let Some(start) = line.find("<!--") {
                let rest = line[start..].to_string();
                line.truncate(start);
                match rest.find("-->") {
                    Some(end) => line.push_str(&rest[end + 3..]),
                    None => {
                        in_comment = true;
                        break;
                    }
                }
            } else {
                break;
            }
        }
        let t = line.trim();
        if t.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || t.starts_with('|') || t.starts_with("{{#") || t.starts_with("![") {
            continue;
        }
        if is_bare_tag(t) {
            continue;
        }
        words += strip_tags(t).split_whitespace().count();
    }
    words
}

/// `<details>`, `</details>` and the like: a line that is one tag alone.
fn is_bare_tag(t: &str) -> bool {
    let inner = t.strip_prefix('<').and_then(|s| s.strip_suffix('>'));
    inner.is_some_and(|s| {
        let s = s.strip_prefix('/').unwrap_or(s);
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// The text of a line with its simple tags (`<summary>`, `</summary>`)
/// taken out.
fn strip_tags(t: &str) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(start) = rest.find('<') {
        let tag_end = rest[start..].find('>').map(|e| start + e);
        match tag_end {
            Some(end) if is_bare_tag(&rest[start..=end]) => {
                out.push_str(&rest[..start]);
                out.push(' ');
                rest = &rest[end + 1..];
            }
            _ => {
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn prose_words_leave_out_code_tables_includes_and_comments() {
    let text = "One two three.\n\n```rust\nfn not_counted() {}\n```\n\
                | a | table |\n{{#include x.md}}\n![alt text](a.svg)\n\
                <!-- a comment\nover lines -->\n<details>\n\
                <summary>Four five?</summary>\nsix <!-- no --> seven\n</details>\n";
    assert_eq!(prose_words(text), 7);
}

#[test]
fn every_chapter_reads_in_one_sitting() {
    const LIMIT: usize = 3500;
    let mut long = Vec::new();
    for path in chapters() {
        let text = std::fs::read_to_string(&path).expect("chapter");
        let words = prose_words(&text);
        if words > LIMIT {
            long.push(format!("{}: {words} words of prose", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "chapters over {LIMIT} words of prose, more than one sitting:\n{}",
        long.join("\n")
    );
}

/// The hand-drawn pictures, `notes/src/img/*.svg` (the charts in
/// `img/charts/` are drawn from the CSVs by `cargo run -p charts`).
fn pictures() -> Vec<PathBuf> {
    book_files("img", "svg")
}

/// A measured figure: a number followed by a unit of speed, time or
/// ratio (`180,000 req/s`, `0.28 ms`, `1.4×`).
fn measured_figures(text: &str) -> Vec<String> {
    const UNITS: [&str; 8] = [
        "req/s",
        "requests/s",
        "msg/s",
        "ms",
        "µs",
        "×",
        "%",
        "switches",
    ];
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() || (i > 0 && chars[i - 1].is_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == ',' || chars[i] == '.') {
            i += 1;
        }
        let rest: String = chars[i..].iter().take(12).collect();
        let rest = rest.trim_start();
        let unit = UNITS.iter().find(|u| {
            rest.starts_with(*u) && !rest[u.len()..].starts_with(|c: char| c.is_alphanumeric())
        });
        if let Some(unit) = unit {
            let number: String = chars[start..i].iter().collect();
            found.push(format!("{number} {unit}"));
        }
    }
    found
}

#[test]
fn measured_figures_are_found_and_constants_are_not() {
    assert_eq!(
        measured_figures("50 connections at 180,000 req/s: 0.28 ms, 1.4× nginx"),
        ["180,000 req/s", "0.28 ms", "1.4 ×"]
    );
    assert!(measured_figures("a 32 KiB buffer, fd 3, H2 msgs").is_empty());
}

/// A figure in a picture would go stale at the next measurement, with no
/// check to say so: the numbers live in the tables, which `charts
/// --check` keeps equal to the CSVs, and a picture says what they mean.
#[test]
fn hand_drawn_pictures_carry_no_measured_figure() {
    let mut bad = Vec::new();
    for path in pictures() {
        let text = std::fs::read_to_string(&path).expect("picture");
        // Only what is drawn as text, not coordinates or styles.
        for piece in text.split('>').filter_map(|t| t.split('<').next()) {
            for figure in measured_figures(piece) {
                bad.push(format!(
                    "{}: \"{figure}\" in \"{}\"",
                    path.display(),
                    piece.trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "pictures with measured figures (put them in a table, and say in the picture what they mean):\n{}",
        bad.join("\n")
    );
}
