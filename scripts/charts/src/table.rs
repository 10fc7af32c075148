//! The markdown a chapter includes (`{{#include measured/NAME.md}}`): what
//! was measured and how, where, then one table row per CSV row.

use crate::cell::Cell;
use crate::csv::Measured;

/// The whole file, ending in a newline.
///
/// The table has to read in mdBook's 750 px column: a column whose every
/// row says the same (the placement of a benchmark) is said once above
/// the table instead, and a cell's min–max goes on a second, smaller line
/// under its median, rather than beside it where it made each cell wrap
/// wherever the width ran out.
///
/// `only`, when given, names the columns to show, in order; the table then
/// says where the others are (`notes/data/NAME.csv`).
pub fn render(m: &Measured, only: Option<&[&str]>, name: &str) -> String {
    let cells: Vec<Vec<Option<Cell>>> = (0..m.rows.len())
        .map(|r| {
            let cell = |c| m.cell(r, c).map(Cell::new);
            (0..m.columns.len()).map(cell).collect()
        })
        .collect();
    let same: Vec<Option<String>> = (0..m.columns.len())
        .map(|c| same_in_every_row(&cells, c))
        .collect();
    let shown: Vec<usize> = match only {
        Some(names) => names.iter().filter_map(|n| m.column_index(n)).collect(),
        None => (0..m.columns.len())
            .filter(|&c| same[c].is_none())
            .collect(),
    };
    let mut out = intro(m);
    if only.is_some() {
        let hidden: Vec<&str> = (0..m.columns.len())
            .filter(|c| !shown.contains(c) && same[*c].is_none())
            .map(|c| m.columns[c].as_str())
            .collect();
        if !hidden.is_empty() {
            let list = hidden.join(", ");
            out.push_str(&format!("Also in notes/data/{name}.csv: {list}.\n"));
        }
    }
    for (c, value) in same.iter().enumerate() {
        if let Some(value) = value {
            out.push_str(&format!("{}: {value}, every row.\n", m.columns[c]));
        }
    }
    out.push('\n');
    let header = shown.iter().map(|&c| &m.columns[c]);
    push_row(&mut out, std::iter::once(&m.row_header).chain(header));
    out.push_str("|---|");
    for &c in &shown {
        let numeric = cells.iter().all(|row| match &row[c] {
            Some(Cell::Text(_)) => false,
            Some(Cell::Numeric(_)) | None => true,
        });
        // Numbers right-aligned, so their digits line up.
        out.push_str(if numeric { "---:|" } else { "---|" });
    }
    out.push('\n');
    for (label, row) in m.rows.iter().zip(&cells) {
        let texts = shown
            .iter()
            .map(|&c| match row[c].as_ref().map(Cell::parts) {
                None => "–".to_string(),
                Some((main, None)) => main,
                Some((main, Some(range))) => format!("{main}<br><small>{range}</small>"),
            });
        push_row(&mut out, std::iter::once(label.clone()).chain(texts));
    }
    out
}

/// The text of column `c` when it is the same text in every row of a
/// table of more than one row.
fn same_in_every_row(cells: &[Vec<Option<Cell>>], c: usize) -> Option<String> {
    let first = match cells.first()?.get(c)? {
        Some(Cell::Text(t)) => t,
        _ => return None,
    };
    let all = cells
        .iter()
        .all(|row| matches!(&row[c], Some(Cell::Text(t)) if t == first));
    (cells.len() > 1 && all).then(|| first.clone())
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
        sentence = format!("Each cell: the median of {rounds} rounds, their min–max under it.");
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
Each cell: the median of 3 rounds, their min–max under it. wrk -t2, 5 s runs. The ratio is taken round by round.

| load | stage06 req/s | nginx req/s | stage06 / nginx |
|---|---|---:|---:|
| 1 KiB, keep-alive | 111319<br><small>110002–112636</small> | 65954<br><small>63612–66240</small> | 1.71×<br><small>1.66–1.75×</small> |
| a\\|b | n/a | – | – |
";
        assert_eq!(render(&csv::parse(&text).unwrap(), None, "t"), expected);
    }

    #[test]
    fn one_round_no_command_no_notes() {
        let text = "# title: T\n# machine: M.\nrow,column,round,value\nx,a,1,3\nx,b,1,4 ms\n";
        let expected = "**T**:\n\nM.\n\n| case | a | b |\n|---|---:|---:|\n| x | 3 | 4 ms |\n";
        assert_eq!(render(&csv::parse(text).unwrap(), None, "t"), expected);
    }

    #[test]
    fn notes_without_rounds_and_backticks_in_the_command() {
        let text = "# title: T\n# command: a `b`\n# machine: M\n# note: N.\n\
            row,column,round,value\nx,a,1,ok\n";
        let expected =
            "**T**, from `` a `b` ``:\n\nM.\nN.\n\n| case | a |\n|---|---|\n| x | ok |\n";
        assert_eq!(render(&csv::parse(text).unwrap(), None, "t"), expected);
    }

    #[test]
    fn a_column_the_same_in_every_row_is_said_once_above() {
        let text = "# title: T\n# machine: M.\nrow,column,round,value\n\
            x,placement,1,split\nx,a,1,3\ny,placement,1,split\ny,a,1,4\n";
        let expected = "**T**:\n\nM.\nplacement: split, every row.\n\n\
            | case | a |\n|---|---:|\n| x | 3 |\n| y | 4 |\n";
        assert_eq!(render(&csv::parse(text).unwrap(), None, "t"), expected);
    }

    #[test]
    fn only_the_named_columns_and_where_the_others_are() {
        let text = "# title: T\n# machine: M.\nrow,column,round,value\n\
            x,a,1,3\nx,b,1,4\nx,c,1,5\n";
        let expected = "**T**:\n\nM.\nAlso in notes/data/t.csv: a.\n\n\
            | case | c | b |\n|---|---:|---:|\n| x | 5 | 4 |\n";
        assert_eq!(
            render(&csv::parse(text).unwrap(), Some(&["c", "b"]), "t"),
            expected
        );
    }
}
