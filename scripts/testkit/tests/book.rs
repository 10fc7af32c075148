//! The book's rules that can be checked without building it.

use std::path::{Path, PathBuf};

/// The book's chapters, `notes/src/*.md`.
fn chapters() -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../notes/src");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("notes/src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    found.sort();
    found
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
