//! Reading one measured CSV file: a head of `# key: value` lines (what was
//! measured, how, on what machine), then `row,column,round,value` records.
//!
//! ```text
//! # title: stage06 against nginx, --dispatch pass
//! # command: ROUNDS=3 scripts/bench-http.sh
//! # machine: Machine: AMD EPYC 7B13, 2 cores, Linux 6.18.44; 2026-11-29; commit abc1234
//! # note: wrk -t2, 5 s runs, servers in alternation.
//! # row: load
//! row,column,round,value
//! "1 KiB, keep-alive, 50 conns",stage06 req/s,1,112636
//! ```
//!
//! Values stay text here; `cell` decides what is a number.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};

/// What one CSV file holds. Rows and columns keep the order of their first
/// record, which is the order the table and the charts show them in.
#[derive(Debug)]
pub struct Measured {
    pub title: String,
    pub command: Option<String>,
    pub machine: String,
    pub notes: Vec<String>,
    /// The header of the table's first column (`# row:`, else "case").
    pub row_header: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// The values of each (row index, column index), one per round, in
    /// file order. A BTreeMap, not a HashMap: nothing here may depend on
    /// hashing, since the output must be the same bytes on every run.
    cells: BTreeMap<(usize, usize), Vec<String>>,
}

impl Measured {
    /// The values of a (row, column), `None` when it was not measured.
    pub fn cell(&self, row: usize, column: usize) -> Option<&[String]> {
        self.cells.get(&(row, column)).map(Vec::as_slice)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

const HEADER: &str = "row,column,round,value";

/// Parses a whole file. Errors name the line (the caller adds the file).
pub fn parse(text: &str) -> Result<Measured> {
    let mut head = Head::default();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    loop {
        let Some((n, line)) = lines.next() else {
            bail!("no `{HEADER}` line");
        };
        if line.trim() == HEADER {
            break;
        }
        head.add(line).with_context(|| format!("line {n}"))?;
    }
    let mut m = head.finish()?;
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        m.add_record(line).with_context(|| format!("line {n}"))?;
    }
    ensure!(!m.rows.is_empty(), "no records after the `{HEADER}` line");
    m.summary_rows_last();
    Ok(m)
}

/// Rows that sum the others, in the order they close a table. The
/// system-call tables list a call only where some column makes it often
/// enough, so a later column can bring a call after the first column's
/// total; the sums still belong at the bottom.
const SUMMARY_ROWS: [&str; 2] = ["(other)", "total"];

/// The `# key: value` lines, as they are read.
#[derive(Default)]
struct Head {
    title: Option<String>,
    command: Option<String>,
    machine: Option<String>,
    notes: Vec<String>,
    row_header: Option<String>,
}

impl Head {
    fn add(&mut self, line: &str) -> Result<()> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some(rest) = line.strip_prefix('#') else {
            bail!("expected `# key: value` or `{HEADER}`, found `{line}`");
        };
        let Some((key, value)) = rest.split_once(':') else {
            bail!("expected `# key: value`, found `{line}`");
        };
        let (key, value) = (key.trim(), value.trim().to_string());
        let slot = match key {
            "title" => &mut self.title,
            "command" => &mut self.command,
            "machine" => &mut self.machine,
            "row" => &mut self.row_header,
            "note" => {
                self.notes.push(value);
                return Ok(());
            }
            _ => bail!("unknown key `{key}` (known: title, command, machine, note, row)"),
        };
        ensure!(slot.is_none(), "`# {key}:` given twice");
        *slot = Some(value);
        Ok(())
    }

    fn finish(self) -> Result<Measured> {
        Ok(Measured {
            title: self.title.context("no `# title:` line")?,
            command: self.command,
            machine: self.machine.context("no `# machine:` line")?,
            notes: self.notes,
            row_header: self.row_header.unwrap_or_else(|| "case".to_string()),
            rows: Vec::new(),
            columns: Vec::new(),
            cells: BTreeMap::new(),
        })
    }
}

impl Measured {
    /// Moves the `SUMMARY_ROWS` after every other row, keeping the order of
    /// the rest.
    fn summary_rows_last(&mut self) {
        let rank = |row: &str| SUMMARY_ROWS.iter().position(|s| *s == row);
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        // A stable sort: rows that are not sums keep their first-seen order.
        order.sort_by_key(|&i| rank(&self.rows[i]).map_or(0, |r| r + 1));
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        self.rows = order.iter().map(|&i| self.rows[i].clone()).collect();
        self.cells = std::mem::take(&mut self.cells)
            .into_iter()
            .map(|((r, c), values)| ((new_index[r], c), values))
            .collect();
    }

    fn add_record(&mut self, line: &str) -> Result<()> {
        let fields = split_record(line)?;
        let [row, column, round, value] = <[String; 4]>::try_from(fields)
            .map_err(|f| anyhow::anyhow!("expected 4 fields, found {}", f.len()))?;
        // The round number is only checked: the values of a cell are kept
        // in file order, and the summary does not depend on which is which.
        ensure!(
            round.parse::<u32>().is_ok_and(|r| r > 0),
            "round `{round}` is not a positive integer"
        );
        let r = index_of(&mut self.rows, row);
        let c = index_of(&mut self.columns, column);
        self.cells.entry((r, c)).or_default().push(value);
        Ok(())
    }
}

/// The index of `name` in `names`, added at the end the first time.
fn index_of(names: &mut Vec<String>, name: String) -> usize {
    if let Some(i) = names.iter().position(|n| *n == name) {
        return i;
    }
    names.push(name);
    names.len() - 1
}

/// Splits one record into fields, RFC 4180 style: a field in double quotes
/// may hold commas, and `""` inside it is one literal quote. (Records do not
/// span lines: the measuring scripts never put a newline in a field.)
fn split_record(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '"') if field.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => {
                quoted = false;
                ensure!(
                    matches!(chars.peek(), None | Some(',')),
                    "text after a closing quote"
                );
            }
            (_, c) => field.push(c),
        }
    }
    ensure!(!quoted, "a quoted field is not closed");
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        split_record(line).unwrap()
    }

    #[test]
    fn plain_fields() {
        assert_eq!(split("a,b,1,2.5"), ["a", "b", "1", "2.5"]);
        assert_eq!(split("a,,1,"), ["a", "", "1", ""]);
    }

    #[test]
    fn quoted_fields_hold_commas_and_quotes() {
        assert_eq!(
            split(r#""1 KiB, keep-alive",stage06 req/s,1,112636"#),
            ["1 KiB, keep-alive", "stage06 req/s", "1", "112636"]
        );
        assert_eq!(
            split(r#""say ""hi"", then go",b,1,"""""#),
            [r#"say "hi", then go"#, "b", "1", r#"""#]
        );
        assert_eq!(split("\"\",b\r"), ["", "b"]);
    }

    #[test]
    fn bad_quotes_are_errors() {
        assert!(split_record(r#""open,b"#).is_err());
        assert!(split_record(r#""a"x,b"#).is_err());
    }

    const FILE: &str = "# title: T\n# machine: M\n# note: one\n# note: two\n\
        row,column,round,value\n\
        r1,c1,1,10\nr2,c1,1,20\nr1,c2,1,n/a\nr1,c1,2,12\n";

    #[test]
    fn sums_close_the_table_whichever_column_brought_a_row() {
        let text = "# title: t\n# machine: m\nrow,column,round,value\n\
                    read,a,1,1\ntotal,a,1,3\n(other),a,1,2\naccept,b,1,5\ntotal,b,1,6\n";
        let m = parse(text).expect("parses");
        assert_eq!(m.rows, ["read", "accept", "(other)", "total"]);
        assert_eq!(m.cell(3, 1), Some(&["6".to_string()][..]));
        assert_eq!(m.cell(1, 1), Some(&["5".to_string()][..]));
        assert_eq!(m.cell(2, 0), Some(&["2".to_string()][..]));
    }

    #[test]
    fn rows_and_columns_keep_first_seen_order() {
        let m = parse(FILE).unwrap();
        assert_eq!((m.title.as_str(), m.machine.as_str()), ("T", "M"));
        assert_eq!(
            (m.command.as_deref(), m.row_header.as_str()),
            (None, "case")
        );
        assert_eq!(m.notes, ["one", "two"]);
        assert_eq!(m.rows, ["r1", "r2"]);
        assert_eq!(m.columns, ["c1", "c2"]);
        assert_eq!(m.cell(0, 0).unwrap(), ["10", "12"]);
        assert_eq!(m.cell(1, 1), None);
    }

    #[test]
    fn head_errors_name_the_line() {
        let e = parse("# title: T\n# colour: red\nrow,column,round,value\n").unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "line 2: unknown key `colour` (known: title, command, machine, note, row)"
        );
        let e = parse("# title: T\n# title: U\n").unwrap_err();
        assert!(format!("{e:#}").contains("given twice"), "{e:#}");
        let e = parse("# title: T\nrow,column,round,value\nr,c,1,1\n").unwrap_err();
        assert!(format!("{e:#}").contains("machine"), "{e:#}");
    }

    #[test]
    fn record_errors_name_the_line() {
        let head = "# title: T\n# machine: M\nrow,column,round,value\n";
        let e = parse(&format!("{head}r,c,1\n")).unwrap_err();
        assert_eq!(format!("{e:#}"), "line 4: expected 4 fields, found 3");
        let e = parse(&format!("{head}r,c,first,1\n")).unwrap_err();
        assert!(format!("{e:#}").starts_with("line 4: round"), "{e:#}");
        assert!(parse(head).is_err());
    }
}
