//! Reading a committed timeline (`notes/data/traces/NAME.json`, written by
//! `scripts/record-traces.sh` from a server's `--trace FILE`) into lanes of
//! spans, ready to draw.
//!
//! A trace is a Chrome Trace Event array: `B` and `E` open and close a span
//! on one thread (the `E` carries its fields), `i` is an instant, `M` names a
//! process or a thread. The closing `]` may be missing (a server that was
//! killed). A trimmed trace starts and ends mid-loop, so a span may have its
//! `E` without its `B` (it began before the window) or its `B` without its
//! `E` (it ends after): such a span is drawn from or to the window's edge,
//! and marked as cut. The script writes the window's edges as two instants
//! of global scope (`"s":"g"`, named `window`): the window is from the
//! first event to the last, these included, and they are not drawn.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value};

/// One span of one thread, in microseconds from the window's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub name: String,
    pub start: f64,
    pub end: f64,
    /// How many spans of its thread hold it: 0 for the loop's own.
    pub depth: usize,
    /// The E event's fields (empty for a span cut at its end).
    pub args: Map<String, Value>,
    /// Began before the window (an E with no B in the file).
    pub cut_start: bool,
    /// Ends after the window (a B with no E in the file).
    pub cut_end: bool,
}

impl Span {
    /// A numeric field, or `None`.
    pub fn num(&self, key: &str) -> Option<u64> {
        self.args.get(key).and_then(Value::as_u64)
    }

    /// A text field (`"WouldBlock"` for an error kind), or `None`.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.args.get(key).and_then(Value::as_str)
    }
}

/// One thread of one process: a row of the picture.
#[derive(Debug)]
pub struct Lane {
    /// The process's name (`stage05 worker 0`), and the thread's after it
    /// for a thread that is not the process's first (`pool 1`).
    pub label: String,
    pub spans: Vec<Span>,
}

impl Lane {
    /// Sub-rows the lane needs: one per depth of nesting.
    pub fn depth(&self) -> usize {
        self.spans.iter().map(|s| s.depth + 1).max().unwrap_or(1)
    }
}

/// A trace as the picture needs it.
#[derive(Debug)]
pub struct Trace {
    /// The lanes that have a span in the window: each process's main
    /// thread first, then its other threads by name; processes in the
    /// order the file names them.
    pub lanes: Vec<Lane>,
    /// From the first event's time to the last's, in microseconds.
    pub length: f64,
}

/// One event as read from the file.
struct Event {
    ph: String,
    name: String,
    pid: u64,
    tid: u64,
    ts: f64,
    /// An instant of global scope (`"s":"g"`).
    global: bool,
    args: Map<String, Value>,
}

/// Reads the text of a trace.
pub fn parse(text: &str) -> Result<Trace> {
    let trimmed = text.trim_end().trim_end_matches(',');
    let whole = if trimmed.ends_with(']') {
        trimmed.to_string()
    } else {
        format!("{trimmed}\n]")
    };
    let values: Vec<Value> =
        serde_json::from_str(&whole).context("not a JSON array of trace events")?;
    let mut processes: Vec<(u64, String)> = Vec::new();
    let mut threads: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut events = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let args = match v.get("args") {
            Some(Value::Object(args)) => args.clone(),
            _ => Map::new(),
        };
        let (ph, name) = (text("ph"), text("name"));
        let (pid, tid) = (num("pid"), num("tid"));
        if ph == "M" {
            let label = args.get("name").and_then(Value::as_str).unwrap_or("");
            match name.as_str() {
                "process_name" => processes.push((pid, label.to_string())),
                "thread_name" => {
                    threads.insert((pid, tid), label.to_string());
                }
                _ => {}
            }
            continue;
        }
        let ts = (v.get("ts").and_then(Value::as_f64))
            .with_context(|| format!("event {} ({ph} {name}) has no time", i + 1))?;
        events.push(Event {
            ph,
            name,
            pid,
            tid,
            ts,
            global: text("s") == "g",
            args,
        });
    }
    ensure!(!events.is_empty(), "the trace holds no timed event");
    // Each thread's events are in order in the file, but the threads of a
    // process share a buffer: sorted by time, each thread's stay in order
    // (a stable sort keeps a B and an E of the same time as written).
    events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    let t0 = events[0].ts;
    let length = events[events.len() - 1].ts - t0;

    let mut per_thread: BTreeMap<(u64, u64), Vec<Span>> = BTreeMap::new();
    let mut open: BTreeMap<(u64, u64), Vec<(String, f64)>> = BTreeMap::new();
    for e in &events {
        let key = (e.pid, e.tid);
        let at = e.ts - t0;
        match e.ph.as_str() {
            "B" => open.entry(key).or_default().push((e.name.clone(), at)),
            "E" => {
                let (start, cut_start) = match open.entry(key).or_default().pop() {
                    Some((name, start)) if name == e.name => (start, false),
                    Some((name, _)) => bail!(
                        "spans must nest: {name} (pid {}, tid {}) closed by an E for {}",
                        e.pid,
                        e.tid,
                        e.name
                    ),
                    None => (0.0, true),
                };
                per_thread.entry(key).or_default().push(Span {
                    name: e.name.clone(),
                    start,
                    end: at,
                    depth: 0,
                    args: e.args.clone(),
                    cut_start,
                    cut_end: false,
                });
            }
            // The window's edges (record-traces.sh): they set `length`,
            // and are not drawn.
            "i" | "I" if e.global => {}
            // An instant is a span of no length.
            "i" | "I" => per_thread.entry(key).or_default().push(Span {
                name: e.name.clone(),
                start: at,
                end: at,
                depth: 0,
                args: e.args.clone(),
                cut_start: false,
                cut_end: false,
            }),
            _ => {}
        }
    }
    for (key, stack) in open {
        for (name, start) in stack {
            per_thread.entry(key).or_default().push(Span {
                name,
                start,
                end: length,
                depth: 0,
                args: Map::new(),
                cut_start: false,
                cut_end: true,
            });
        }
    }

    let mut lanes = Vec::new();
    let order =
        |pid: u64| (processes.iter().position(|(p, _)| *p == pid)).unwrap_or(processes.len());
    let mut keys: Vec<(u64, u64)> = per_thread.keys().copied().collect();
    keys.sort_by_key(|&(pid, tid)| {
        let thread = threads.get(&(pid, tid)).cloned().unwrap_or_default();
        (order(pid), pid, tid != pid, thread, tid)
    });
    for key in keys {
        let mut spans = per_thread.remove(&key).unwrap_or_default();
        set_depths(&mut spans);
        spans.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.depth.cmp(&b.depth)));
        let (pid, tid) = key;
        let process = (processes.iter().find(|(p, _)| *p == pid))
            .map_or_else(|| format!("pid {pid}"), |(_, n)| n.clone());
        let label = match threads.get(&key) {
            Some(thread) if tid != pid => format!("{process}: {thread}"),
            _ if tid != pid => format!("{process}: tid {tid}"),
            _ => process,
        };
        lanes.push(Lane { label, spans });
    }
    Ok(Trace { lanes, length })
}

/// Each span's depth: how many spans of the same thread hold it. Spans of
/// one thread nest or follow each other, so holding is containment; of two
/// spans with the same ends (both cut at the window's edge), the one closed
/// later in the file, which comes later in `spans`, holds the other.
fn set_depths(spans: &mut [Span]) {
    let depths: Vec<usize> = (0..spans.len())
        .map(|i| {
            let s = &spans[i];
            (spans.iter().enumerate())
                .filter(|&(j, o)| {
                    j != i
                        && o.start <= s.start
                        && s.end <= o.end
                        && (o.start < s.start || s.end < o.end || j > i)
                        && o.end > o.start
                })
                .count()
        })
        .collect();
    for (s, d) in spans.iter_mut().zip(depths) {
        s.depth = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOP: &str = r#"[
{"ph":"M","name":"process_name","pid":7,"tid":7,"args":{"name":"stage02"}},
{"ph":"E","name":"epoll_wait","pid":7,"tid":7,"ts":100.0,"args":{"events":1}},
{"ph":"B","name":"event","pid":7,"tid":7,"ts":101.0,"args":{}},
{"ph":"B","name":"read","pid":7,"tid":7,"ts":102.0,"args":{}},
{"ph":"E","name":"read","pid":7,"tid":7,"ts":110.0,"args":{"fd":5,"bytes":512}},
{"ph":"B","name":"read","pid":7,"tid":7,"ts":111.0,"args":{}},
{"ph":"E","name":"read","pid":7,"tid":7,"ts":112.0,"args":{"fd":5,"error":"WouldBlock"}},
{"ph":"E","name":"event","pid":7,"tid":7,"ts":113.0,"args":{"fd":5}},
{"ph":"B","name":"epoll_wait","pid":7,"tid":7,"ts":114.0,"args":{}},
{"ph":"i","name":"window","pid":7,"tid":7,"ts":98.0,"s":"g","args":{"edge":"start"}},
{"ph":"i","name":"window","pid":7,"tid":7,"ts":116.0,"s":"g","args":{"edge":"end"}}
]"#;

    fn names_and_depths(lane: &Lane) -> Vec<(&str, usize)> {
        lane.spans
            .iter()
            .map(|s| (s.name.as_str(), s.depth))
            .collect()
    }

    #[test]
    fn nested_spans_sit_one_row_below_what_holds_them() {
        let t = parse(LOOP).unwrap();
        assert_eq!(t.lanes.len(), 1);
        assert_eq!(t.lanes[0].label, "stage02");
        assert_eq!(
            names_and_depths(&t.lanes[0]),
            [
                ("epoll_wait", 0),
                ("event", 0),
                ("read", 1),
                ("read", 1),
                ("epoll_wait", 0)
            ]
        );
        assert_eq!(t.lanes[0].depth(), 2);
        let eagain = &t.lanes[0].spans[3];
        assert_eq!(eagain.text("error"), Some("WouldBlock"));
        assert_eq!(t.lanes[0].spans[2].num("bytes"), Some(512));
    }

    #[test]
    fn times_count_from_the_first_event_and_cut_spans_reach_the_edges() {
        let t = parse(LOOP).unwrap();
        // The window: from 98 to 116, its edges' instants not drawn.
        assert_eq!(t.length, 18.0);
        assert_eq!(t.lanes[0].spans.len(), 5);
        let first = &t.lanes[0].spans[0];
        assert!(first.cut_start && !first.cut_end);
        assert_eq!((first.start, first.end), (0.0, 2.0));
        let last = t.lanes[0].spans.last().unwrap();
        assert!(last.cut_end && !last.cut_start);
        assert_eq!((last.start, last.end), (16.0, 18.0));
        let read = &t.lanes[0].spans[2];
        assert_eq!((read.start, read.end), (4.0, 12.0));
    }

    #[test]
    fn a_trace_without_its_closing_bracket_reads_the_same() {
        let open = LOOP.trim_end().trim_end_matches(']');
        let (a, b) = (parse(LOOP).unwrap(), parse(open).unwrap());
        assert_eq!(a.lanes[0].spans, b.lanes[0].spans);
        // As a killed server leaves it: the last line ends with its event.
        let killed = open.trim_end();
        assert_eq!(parse(killed).unwrap().lanes[0].spans, a.lanes[0].spans);
    }

    #[test]
    fn spans_cut_at_the_start_nest_by_which_closed_last() {
        let text = r#"[
{"ph":"E","name":"read","pid":1,"tid":1,"ts":5.0,"args":{"bytes":3}},
{"ph":"E","name":"event","pid":1,"tid":1,"ts":6.0,"args":{}}"#;
        let t = parse(text).unwrap();
        assert_eq!(names_and_depths(&t.lanes[0]), [("event", 0), ("read", 1)]);
        assert_eq!(t.lanes[0].label, "pid 1");
    }

    #[test]
    fn lanes_follow_the_processes_then_their_threads_by_name() {
        let text = r#"[
{"ph":"M","name":"process_name","pid":9,"tid":9,"args":{"name":"master"}},
{"ph":"M","name":"process_name","pid":3,"tid":3,"args":{"name":"worker 0"}},
{"ph":"M","name":"thread_name","pid":3,"tid":5,"args":{"name":"pool 1"}},
{"ph":"M","name":"thread_name","pid":3,"tid":4,"args":{"name":"pool 0"}},
{"ph":"B","name":"process","pid":3,"tid":5,"ts":1.0,"args":{}},
{"ph":"E","name":"process","pid":3,"tid":5,"ts":2.0,"args":{}},
{"ph":"B","name":"process","pid":3,"tid":4,"ts":1.0,"args":{}},
{"ph":"E","name":"process","pid":3,"tid":4,"ts":2.0,"args":{}},
{"ph":"B","name":"recv","pid":3,"tid":3,"ts":0.0,"args":{}},
{"ph":"E","name":"recv","pid":3,"tid":3,"ts":0.5,"args":{}},
{"ph":"B","name":"accept","pid":9,"tid":9,"ts":0.0,"args":{}},
{"ph":"E","name":"accept","pid":9,"tid":9,"ts":0.5,"args":{}}
]"#;
        let t = parse(text).unwrap();
        let labels: Vec<&str> = t.lanes.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            ["master", "worker 0", "worker 0: pool 0", "worker 0: pool 1"]
        );
    }

    #[test]
    fn a_span_closed_by_another_name_is_refused() {
        let text = r#"[
{"ph":"B","name":"read","pid":1,"tid":1,"ts":1.0,"args":{}},
{"ph":"E","name":"write","pid":1,"tid":1,"ts":2.0,"args":{}}
]"#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("read") && e.contains("write"), "{e}");
    }
}
