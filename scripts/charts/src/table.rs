//! The markdown a chapter includes (`{{#include measured/NAME.md}}`): what
//! was measured and how, where, then one table row per CSV row.

use crate::cell::Cell;
use crate::csv::Measured;

/// The whole file, ending in a newline.
pub fn render(m: &Measured) -> String {
    let cells: Vec<Vec<Option<Cell>>> = (0..m.rows.len())
        .map(|r| {
            let cell = |c| m.cell(r, c).map(Cell::new);
            (0..m.columns.len()).map(cell).collect()
        })
        .collect();
    let mut out = intro(m);
    out.push('\n');
    push_row(&mut out, std::iter::once(&m.row_header).chain(&m.columns));
    out.push_str("|---|");
    for c in 0..m.columns.len() {
        let numeric = cells.iter().all(|row| match &row[c] {
            Some(Cell::Text(_)) => false,
            Some(Cell::Numeric(_)) | None => true,
        });
        // Numbers right-aligned, so their digits line up.
        out.push_str(if numeric { "---:|" } else { "---|" });
    }
    out.push('\n');
    for (label, row) in m.rows.iter().zip(&cells) {
        let texts = row
            .iter()
            .map(|cell| cell.as_ref().map_or_else(|| "–".to_string(), Cell::text));
        push_row(&mut out, std::iter::once(label.clone()).chain(texts));
    }
    out
}

/// The paragraphs above the table: title and command, then the machine,
/// what a cell is, and the notes.
fn intro(m: &Measured) -> String {
    let mut out = match &m.command {
        Some(command) => format!("**{}**, from {}:\n\n", m.title, code_span(command)),
        None => format!("**{}**:\n\n", m.title),
    };
    out.push_str(&m.machine);
    if !m.machine.ends_with('.') {
        out.push('.');
    }
    out.push('\n');
    let rounds = (0..m.rows.len())
        .flat_map(|r| (0..m.columns.len()).filter_map(move |c| m.cell(r, c)))
        .map(<[String]>::len)
        .max()
        .unwrap_or(0);
    let mut second = Vec::new();
    let sentence;
    if rounds > 1 {
        sentence = format!("Each cell: median (min–max) over {rounds} rounds.");
        second.push(sentence.as_str());
    }
    second.extend(m.notes.iter().map(String::as_str));
    if !second.is_empty() {
        out.push_str(&second.join(" "));
        out.push('\n');
    }
    out
}

/// `text` in backticks; more of them when it holds one itself.
fn code_span(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn push_row<S: AsRef<str>>(out: &mut String, cells: impl Iterator<Item = S>) {
    out.push('|');
    for cell in cells {
        // A `|` would end the cell.
        out.push(' ');
        out.push_str(&cell.as_ref().replace('|', "\\|"));
        out.push_str(" |");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv;

    const HEAD: &str = "# title: stage06 against nginx, --dispatch pass\n\
        # command: ROUNDS=3 scripts/bench-http.sh\n\
        # machine: Machine: AMD EPYC 7B13, 2 cores, Linux 6.18.44; 2026-11-29; commit abc1234\n\
        # note: wrk -t2, 5 s runs.\n\
        # note: The ratio is taken round by round.\n\
        # row: load\n\
        row,column,round,value\n";

    #[test]
    fn the_whole_shape() {
        let text = format!(
            "{HEAD}\"1 KiB, keep-alive\",stage06 req/s,1,112636\n\
             \"1 KiB, keep-alive\",nginx req/s,1,65954\n\
             \"1 KiB, keep-alive\",stage06 / nginx,1,1.71×\n\
             \"1 KiB, keep-alive\",stage06 req/s,2,110002\n\
             \"1 KiB, keep-alive\",nginx req/s,2,66240\n\
             \"1 KiB, keep-alive\",stage06 / nginx,2,1.66×\n\
             \"1 KiB, keep-alive\",stage06 req/s,3,111319\n\
             \"1 KiB, keep-alive\",nginx req/s,3,63612\n\
             \"1 KiB, keep-alive\",stage06 / nginx,3,1.75×\n\
             \"a|b\",stage06 req/s,1,n/a\n"
        );
        let expected = "\
**stage06 against nginx, --dispatch pass**, from `ROUNDS=3 scripts/bench-http.sh`:

Machine: AMD EPYC 7B13, 2 cores, Linux 6.18.44; 2026-11-29; commit abc1234.
Each cell: median (min–max) over 3 rounds. wrk -t2, 5 s runs. The ratio is taken round by round.

| load | stage06 req/s | nginx req/s | stage06 / nginx |
|---|---|---:|---:|
| 1 KiB, keep-alive | 111319 (110002–112636) | 65954 (63612–66240) | 1.71× (1.66–1.75×) |
| a\\|b | n/a | – | – |
";
        assert_eq!(render(&csv::parse(&text).unwrap()), expected);
    }

    #[test]
    fn one_round_no_command_no_notes() {
        let text = "# title: T\n# machine: M.\nrow,column,round,value\nx,a,1,3\nx,b,1,4 ms\n";
        let expected = "**T**:\n\nM.\n\n| case | a | b |\n|---|---:|---:|\n| x | 3 | 4 ms |\n";
        assert_eq!(render(&csv::parse(text).unwrap()), expected);
    }

    #[test]
    fn notes_without_rounds_and_backticks_in_the_command() {
        let text = "# title: T\n# command: a `b`\n# machine: M\n# note: N.\n\
            row,column,round,value\nx,a,1,ok\n";
        let expected =
            "**T**, from `` a `b` ``:\n\nM.\nN.\n\n| case | a |\n|---|---|\n| x | ok |\n";
        assert_eq!(render(&csv::parse(text).unwrap()), expected);
    }
}
