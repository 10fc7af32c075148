//! The book's tables and charts, made from its measured CSV files.
//!
//! Every number the book gives was measured once, by a script in `scripts/`
//! (bench-http.sh, latency-http.sh…), which writes what it measured, with
//! the machine and command, to `notes/data/NAME.csv`. What a reader sees is
//! derived from those files and from nothing else:
//!
//! - for each CSV, a markdown table, `notes/src/measured/NAME.md`, which a
//!   chapter includes with `{{#include measured/NAME.md}}`;
//! - the charts declared in `catalog`, as SVG in `notes/src/img/charts/`;
//! - the timelines declared in `catalog`, as SVG in
//!   `notes/src/img/timelines/`, drawn from the small traces
//!   `scripts/record-traces.sh` writes to `notes/data/traces/NAME.json`.
//!
//! `cargo run -p charts` writes them (and removes tables whose CSV is gone);
//! `cargo run -p charts -- --check`, which CI runs, writes nothing and fails
//! when a committed file is not exactly what the committed CSVs and traces
//! give. So no
//! number in the book is typed by hand, and none goes stale unnoticed. The
//! output is the same bytes on every run and machine, or the check could
//! not be byte for byte.

mod catalog;
mod cell;
mod chart;
mod csv;
mod labels;
mod table;
mod timeline;
mod trace;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, ensure};
use argh::FromArgs;

use crate::csv::Measured;

/// Writes the book's tables (one markdown file per measured CSV) and its
/// charts (SVG); with --check, writes nothing and exits 1 if a file on disk
/// differs from what the CSVs give, is missing, or is stale.
#[derive(FromArgs)]
struct Args {
    /// the measured CSV files (default: notes/data)
    #[argh(option)]
    data: Option<PathBuf>,
    /// where the markdown tables go (default: notes/src/measured)
    #[argh(option)]
    tables: Option<PathBuf>,
    /// where the SVG charts go (default: notes/src/img/charts)
    #[argh(option)]
    charts: Option<PathBuf>,
    /// the recorded traces (default: notes/data/traces)
    #[argh(option)]
    traces: Option<PathBuf>,
    /// where the SVG timelines go (default: notes/src/img/timelines)
    #[argh(option)]
    timelines: Option<PathBuf>,
    /// compare with the files on disk instead of writing them
    #[argh(switch)]
    check: bool,
}

/// A file as it should be.
struct Rendered {
    path: PathBuf,
    text: String,
}

/// A file on disk that nothing renders any more.
struct Stale {
    path: PathBuf,
    why: &'static str,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("charts: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository: this crate is `scripts/charts` in it.
fn repo_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// A path as it is best shown: relative to the repository when inside it.
fn show(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Renders everything, then writes it or checks it; `Ok(false)` when the
/// check found a difference.
fn run(args: &Args) -> Result<bool> {
    let dir = |given: &Option<PathBuf>, default: &str| {
        given.clone().unwrap_or_else(|| repo_root().join(default))
    };
    let data_dir = dir(&args.data, "notes/data");
    let tables_dir = dir(&args.tables, "notes/src/measured");
    let charts_dir = dir(&args.charts, "notes/src/img/charts");
    let traces_dir = dir(&args.traces, "notes/data/traces");
    let timelines_dir = dir(&args.timelines, "notes/src/img/timelines");

    let data = load_data(&data_dir)?;
    let mut rendered = Vec::new();
    for (name, m) in &data {
        for column in catalog::shown_columns(name).unwrap_or_default() {
            ensure!(
                m.column_index(column).is_some(),
                "table {name}: catalog.rs shows a column \"{column}\" its CSV does not have"
            );
        }
        let path = tables_dir.join(format!("{name}.md"));
        rendered.push(Rendered {
            path,
            text: table::render(m, catalog::shown_columns(name), name),
        });
    }
    for c in catalog::CHARTS {
        let text = chart::render(c, &data).with_context(|| format!("chart {}", c.file))?;
        rendered.push(Rendered {
            path: charts_dir.join(c.file),
            text,
        });
    }
    let traces = load_traces(&traces_dir)?;
    for t in catalog::TIMELINES {
        let text = timeline::render(t, &traces).with_context(|| format!("timeline {}", t.file))?;
        rendered.push(Rendered {
            path: timelines_dir.join(t.file),
            text,
        });
    }
    let mut stale = stale_files(&tables_dir, "md", &rendered, "no CSV gives it")?;
    let why = "no chart of scripts/charts/src/catalog.rs makes it";
    stale.extend(stale_files(&charts_dir, "svg", &rendered, why)?);
    let why = "no timeline of scripts/charts/src/catalog.rs makes it";
    stale.extend(stale_files(&timelines_dir, "svg", &rendered, why)?);

    if args.check {
        check(&rendered, &stale)
    } else {
        write(&rendered, &stale)?;
        Ok(true)
    }
}

/// Every `*.csv` of `dir`, by name (the file name without `.csv`), sorted.
fn load_data(dir: &Path) -> Result<BTreeMap<String, Measured>> {
    let hint = "the measuring scripts in scripts/ write their CSV files there";
    let entries =
        fs::read_dir(dir).with_context(|| format!("cannot read {} ({hint})", show(dir)))?;
    let data = read_each(entries, "csv", csv::parse)?;
    ensure!(
        !data.is_empty(),
        "no CSV file in {}, so no table or chart can be made ({hint})",
        show(dir)
    );
    Ok(data)
}

/// Every `*.json` trace of `dir`, by name, read; none if `dir` does not
/// exist (a timeline that needs one then says which).
fn load_traces(dir: &Path) -> Result<BTreeMap<String, trace::Trace>> {
    match fs::read_dir(dir) {
        Ok(entries) => read_each(entries, "json", trace::parse),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", show(dir))),
    }
}

/// The files of a folder whose names end in `.EXT`, each read and parsed,
/// by name (the file name without the extension).
fn read_each<T>(
    entries: fs::ReadDir,
    ext: &str,
    parse: impl Fn(&str) -> Result<T>,
) -> Result<BTreeMap<String, T>> {
    let mut read = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != ext) {
            continue;
        }
        let name = (path.file_stem().and_then(|s| s.to_str()))
            .with_context(|| format!("{}: not a UTF-8 name", show(&path)))?
            .to_string();
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", show(&path)))?;
        read.insert(name, parse(&text).with_context(|| show(&path))?);
    }
    Ok(read)
}

/// The `*.EXT` files of `dir` that are not rendered (none if `dir` does
/// not exist yet), sorted.
fn stale_files(
    dir: &Path,
    ext: &str,
    rendered: &[Rendered],
    why: &'static str,
) -> Result<Vec<Stale>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", show(dir))),
    };
    let mut stale = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let ours = rendered
            .iter()
            .any(|r| r.path.file_name() == path.file_name());
        if path.extension().is_some_and(|e| e == ext) && !ours {
            stale.push(Stale { path, why });
        }
    }
    stale.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(stale)
}

/// Compares without writing; prints every file that is not as rendered.
fn check(rendered: &[Rendered], stale: &[Stale]) -> Result<bool> {
    let mut problems = Vec::new();
    for r in rendered {
        match fs::read(&r.path) {
            Ok(bytes) if bytes == r.text.as_bytes() => {}
            Ok(_) => problems.push(format!("differs: {}", show(&r.path))),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                problems.push(format!("missing: {}", show(&r.path)));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", show(&r.path))),
        }
    }
    for s in stale {
        problems.push(format!("stale:   {} ({})", show(&s.path), s.why));
    }
    if problems.is_empty() {
        println!(
            "charts: all {} files match the CSVs and traces",
            rendered.len()
        );
        return Ok(true);
    }
    for p in &problems {
        eprintln!("{p}");
    }
    eprintln!(
        "charts: {} of the book's tables and pictures are not what the CSVs and traces give; \
         run `cargo run -p charts` and commit the result",
        problems.len()
    );
    Ok(false)
}

/// Writes what changed and removes what is stale.
fn write(rendered: &[Rendered], stale: &[Stale]) -> Result<()> {
    let mut written = 0;
    for r in rendered {
        if fs::read(&r.path).is_ok_and(|bytes| bytes == r.text.as_bytes()) {
            continue;
        }
        if let Some(dir) = r.path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", show(dir)))?;
        }
        fs::write(&r.path, &r.text).with_context(|| format!("cannot write {}", show(&r.path)))?;
        println!("wrote {}", show(&r.path));
        written += 1;
    }
    for s in stale {
        fs::remove_file(&s.path).with_context(|| format!("cannot remove {}", show(&s.path)))?;
        println!("removed {} ({})", show(&s.path), s.why);
    }
    let unchanged = rendered.len() - written;
    println!(
        "charts: {written} written, {unchanged} unchanged, {} removed",
        stale.len()
    );
    Ok(())
}
