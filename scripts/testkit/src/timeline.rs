//! Reading a server's `--trace` timeline in a test: the Chrome trace's
//! B and E events paired into spans, per thread, with their nesting.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

/// One span: a B event and the E that closed it, on one thread.
#[derive(Clone, Debug)]
pub struct Span {
    pub name: String,
    pub pid: u64,
    pub tid: u64,
    /// Microseconds, on the trace's clock.
    pub start: f64,
    pub end: f64,
    /// How many spans of the same thread it sits inside.
    pub depth: usize,
    /// The E event's fields (the span's, as they stood when it closed).
    pub args: Map<String, Value>,
}

impl Span {
    /// A numeric field, or `None`.
    pub fn num(&self, key: &str) -> Option<u64> {
        self.args.get(key).and_then(Value::as_u64)
    }

    /// A field as text (`"WouldBlock"` for an error kind), or `None`.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.args.get(key).and_then(Value::as_str)
    }

    /// True when `other` runs inside this span, on the same thread.
    pub fn holds(&self, other: &Span) -> bool {
        self.pid == other.pid
            && self.tid == other.tid
            && other.depth > self.depth
            && other.start >= self.start
            && other.end <= self.end
    }
}

/// A timeline as a test reads it.
pub struct Timeline {
    /// Every closed span, by start time.
    pub spans: Vec<Span>,
    /// Process names (`M` events), by pid.
    pub processes: HashMap<u64, String>,
    /// Thread names (`M` events), by pid and tid.
    pub threads: HashMap<(u64, u64), String>,
    /// True when the file held the array's closing `]`: the server ended
    /// it on a clean exit.
    pub complete: bool,
}

impl Timeline {
    /// Reads `path`, which must be a JSON array of trace events; its closing
    /// `]` may be missing (the format allows it, for a process that did not
    /// end cleanly). Panics, naming the line, on anything else.
    ///
    /// A file read while its server still runs may end in a line the server
    /// is writing at that moment: without the closing `]`, a last line that
    /// is not yet a whole event is left out. Every line before it was
    /// written whole, by an earlier `write`.
    pub fn read(path: &Path) -> Timeline {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read the timeline {}: {e}", path.display()));
        let trimmed = text.trim_end();
        let complete = trimmed.ends_with(']');
        let closed = |text: &str| format!("{}\n]", text.trim_end().trim_end_matches(','));
        let parsed = if complete {
            serde_json::from_str(trimmed)
        } else {
            serde_json::from_str(&closed(trimmed)).or_else(|e| {
                // The last line, cut short as it was being written?
                let (before, last) = trimmed.rsplit_once('\n').ok_or(e)?;
                let last = last.trim_start_matches(',');
                match serde_json::from_str::<Value>(last) {
                    Ok(_) => serde_json::from_str(&closed(trimmed)),
                    Err(_) => serde_json::from_str(&closed(before)),
                }
            })
        };
        let events: Vec<Value> = parsed.unwrap_or_else(|e| {
            panic!(
                "the timeline {} is not a JSON array of events: {e}",
                path.display()
            )
        });
        let mut open: HashMap<(u64, u64), Vec<(String, f64)>> = HashMap::new();
        let mut timeline = Timeline {
            spans: Vec::new(),
            processes: HashMap::new(),
            threads: HashMap::new(),
            complete,
        };
        for event in &events {
            let field = |k: &str| event.get(k).and_then(Value::as_u64).unwrap_or(0);
            let name = event.get("name").and_then(Value::as_str).unwrap_or("");
            let ts = event.get("ts").and_then(Value::as_f64).unwrap_or(0.0);
            let (pid, tid) = (field("pid"), field("tid"));
            match event.get("ph").and_then(Value::as_str) {
                Some("B") => open
                    .entry((pid, tid))
                    .or_default()
                    .push((name.to_string(), ts)),
                Some("E") => {
                    let stack = open.entry((pid, tid)).or_default();
                    let (begun, start) = stack
                        .pop()
                        .unwrap_or_else(|| panic!("an E event for {name} with no B before it"));
                    assert_eq!(
                        begun, name,
                        "spans must nest: {begun} closed by an E for {name}"
                    );
                    let args = match event.get("args") {
                        Some(Value::Object(args)) => args.clone(),
                        _ => Map::new(),
                    };
                    timeline.spans.push(Span {
                        name: begun,
                        pid,
                        tid,
                        start,
                        end: ts,
                        depth: stack.len(),
                        args,
                    });
                }
                Some("M") if name == "process_name" => {
                    let label = event["args"]["name"].as_str().unwrap_or("").to_string();
                    timeline.processes.insert(pid, label);
                }
                Some("M") if name == "thread_name" => {
                    let label = event["args"]["name"].as_str().unwrap_or("").to_string();
                    timeline.threads.insert((pid, tid), label);
                }
                _ => {}
            }
        }
        timeline.spans.sort_by(|a, b| a.start.total_cmp(&b.start));
        timeline
    }

    /// The spans called `name`, by start time.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Span> + 'a {
        self.spans.iter().filter(move |s| s.name == name)
    }

    /// The spans called `name` inside `outer`, by start time.
    pub fn inside<'a>(&'a self, outer: &'a Span, name: &'a str) -> Vec<&'a Span> {
        self.named(name).filter(|s| outer.holds(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(name: &str, text: &str) -> Timeline {
        let path =
            std::env::temp_dir().join(format!("timeline-{name}-{}.json", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let timeline = Timeline::read(&path);
        let _ = std::fs::remove_file(&path);
        timeline
    }

    const TWO_SPANS: &str = "[\n\
        {\"ph\":\"M\",\"name\":\"process_name\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"s\"}},\n\
        {\"ph\":\"B\",\"name\":\"a\",\"pid\":1,\"tid\":1,\"ts\":1.0,\"args\":{}},\n\
        {\"ph\":\"E\",\"name\":\"a\",\"pid\":1,\"tid\":1,\"ts\":2.0,\"args\":{\"fd\":7}},\n\
        {\"ph\":\"B\",\"name\":\"b\",\"pid\":1,\"tid\":1,\"ts\":3.0,\"args\":{}},\n\
        {\"ph\":\"E\",\"name\":\"b\",\"pid\":1,\"tid\":1,\"ts\":4.0,\"args\":{}}";

    #[test]
    fn a_missing_bracket_and_a_line_cut_short_are_read_as_far_as_written() {
        let whole = read_text("whole", &format!("{TWO_SPANS}\n]\n"));
        assert!(whole.complete);
        assert_eq!(whole.spans.len(), 2);
        let open = read_text("open", TWO_SPANS);
        assert!(!open.complete);
        assert_eq!(open.spans.len(), 2);
        // Cut inside the last event, after its args' own `}`.
        let cut = &TWO_SPANS[..TWO_SPANS.len() - 1];
        let torn = read_text("torn", cut);
        assert_eq!(torn.spans.len(), 1, "the half-written E of b is left out");
        assert_eq!(torn.spans[0].num("fd"), Some(7));
    }

    #[test]
    #[should_panic(expected = "not a JSON array of events")]
    fn a_broken_line_in_the_middle_is_an_error() {
        let broken = TWO_SPANS.replacen(
            "\"ph\":\"B\",\"name\":\"a\"",
            "\"ph\":\"B\" \"name\":\"a\"",
            1,
        );
        read_text("broken", &broken);
    }
}
