//! Draws the committed timelines (`trace`) as static SVG: one panel per
//! trace, stacked, on one time scale, so that two panels compare by length.
//!
//! Written as SVG text here rather than with plotters: a timeline is
//! rectangles and labels at computed places, with no axis mapping beyond a
//! product, and a hand-made layout decides where a label goes so that no
//! two overlap. As in `chart`, the text is SVG `<text>` in the browser's
//! sans-serif, sized by a fixed estimate per character; every number is
//! written with a fixed count of decimals: the same bytes on every run.
//!
//! A panel has one lane per thread (labelled by its process and thread
//! names); nested spans go in sub-rows by depth; under them, a few notes
//! (a read's byte count, `EAGAIN`, the worker a connection is passed to),
//! placed where they do not collide, the most telling first.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::catalog::Timeline;
use crate::trace::{Lane, Span, Trace};

const WIDTH: f64 = 900.0;
/// Left of the plot: the lanes' labels.
const LABEL_W: f64 = 180.0;
const RIGHT: f64 = 16.0;
const PLOT_W: f64 = WIDTH - LABEL_W - RIGHT;
const ROW_H: f64 = 16.0;
const NOTE_H: f64 = 14.0;
const LANE_GAP: f64 = 6.0;
/// Note rows under a lane at most; a note that finds no room is left out.
const NOTE_ROWS: usize = 2;
const FONT: &str = "sans-serif";
/// What one character of 11 px text is taken to need, in pixels: a little
/// over half the size, so that an estimate errs towards room.
const CHAR_W: f64 = 6.2;
const INK: &str = "#282828";
const ERROR: &str = "#d55e00";

/// What a span is, for its colour; in the legend's order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Wait,
    Connection,
    Dispatch,
    Read,
    Write,
    Ring,
    Work,
    Timer,
}

impl Kind {
    fn of(name: &str) -> Kind {
        match name {
            "epoll_wait" | "io_uring_enter" => Kind::Wait,
            "accept" | "pass" | "receive" | "channel" => Kind::Connection,
            "read" | "recv" => Kind::Read,
            "write" | "send" | "sendfile" | "shutdown" => Kind::Write,
            "submit" | "complete" => Kind::Ring,
            "process" | "open" | "offload" | "processed" | "hand_back" => Kind::Work,
            "tick" | "expire" | "timerfd" | "timerfd_settime" | "signals" => Kind::Timer,
            _ => Kind::Dispatch,
        }
    }

    /// Okabe and Ito's palette, as in `chart`; the wait a light grey, so
    /// that the loop's work stands out against its sleep.
    fn color(self) -> &'static str {
        match self {
            Kind::Wait => "#d4d4d4",
            Kind::Connection => "#009e73",
            Kind::Dispatch => "#c9c3e6",
            Kind::Read => "#0072b2",
            Kind::Write => "#e69f00",
            Kind::Ring => "#56b4e9",
            Kind::Work => "#f0e442",
            Kind::Timer => "#cc79a7",
        }
    }

    /// Text on this colour: white on the dark ones.
    fn text_color(self) -> &'static str {
        match self {
            Kind::Read | Kind::Connection => "#ffffff",
            _ => INK,
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Kind::Wait => "asleep in the kernel",
            Kind::Connection => "connections",
            Kind::Dispatch => "the loop",
            Kind::Read => "reads",
            Kind::Write => "writes",
            Kind::Ring => "io_uring queues",
            Kind::Work => "request work",
            Kind::Timer => "timers, signals",
        }
    }
}

/// A span's note and how much it matters (0 first).
fn note(s: &Span) -> Option<(u8, String)> {
    let bytes = |eof: bool| match (s.text("error"), s.num("bytes")) {
        (Some("WouldBlock"), _) => Some((0, "EAGAIN".to_string())),
        (Some(e), _) => Some((0, e.to_string())),
        (None, Some(0)) if eof => Some((0, "EOF".to_string())),
        (None, Some(n)) => Some((1, format!("{n} B"))),
        (None, None) => None,
    };
    match s.name.as_str() {
        "read" | "recv" => bytes(true),
        "write" | "send" | "sendfile" => bytes(false),
        "complete" => {
            let op = s.text("op").unwrap_or("?");
            let (p, b) = bytes(op == "Recv")?;
            Some((p, format!("{op} {b}")))
        }
        "submit" => Some((2, format!("submit {}", s.text("op")?))),
        "epoll_wait" => s.num("events").map(|n| (2, format!("{n} ready"))),
        "accept" => s.num("accepted").map(|n| (2, format!("accepted {n}"))),
        "pass" => s.num("worker").map(|w| (1, format!("pass to {w}"))),
        "receive" => s.num("conns").map(|n| (1, format!("received {n}"))),
        "expire" => s.num("fd").map(|fd| (0, format!("expire fd {fd}"))),
        "timerfd_settime" => match s.num("after_us") {
            Some(us) => Some((1, format!("arm in {:.0} ms", us as f64 / 1000.0))),
            None => Some((1, "disarm".to_string())),
        },
        "tick" | "timerfd" | "signals" | "process" => Some((1, s.name.clone())),
        _ => None,
    }
}

/// The SVG text of one figure.
pub fn render(figure: &Timeline, traces: &BTreeMap<String, Trace>) -> Result<String> {
    let panels = (figure.panels.iter())
        .map(|p| {
            let t = traces.get(p.trace).with_context(|| {
                format!(
                    "needs notes/data/traces/{}.json, which is not there",
                    p.trace
                )
            })?;
            Ok((p, t))
        })
        .collect::<Result<Vec<_>>>()?;
    let longest = panels.iter().map(|(_, t)| t.length).fold(1.0, f64::max);
    let scale = Scale::new(longest);
    let mut kinds: BTreeMap<Kind, Vec<&str>> = BTreeMap::new();
    for (_, t) in &panels {
        for s in t.lanes.iter().flat_map(|l| &l.spans) {
            let names = kinds.entry(Kind::of(&s.name)).or_default();
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
    }

    let mut body = String::new();
    let mut y = 40.0;
    y = legend(&mut body, &kinds, y);
    for (p, t) in &panels {
        y = panel(&mut body, p.title, t, &scale, y + 14.0);
    }
    let height = (y + 10.0).ceil();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" font-family="{FONT}">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="18" text-anchor="middle" fill="{INK}">{}</text>"#,
        WIDTH / 2.0,
        escape(figure.title)
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// Time to pixels, and the axis's ticks: microseconds, or milliseconds for
/// a window of 5 ms or more.
struct Scale {
    px_per_us: f64,
    longest: f64,
    /// Microseconds between ticks: 1, 2 or 5 times a power of ten, for
    /// about six ticks.
    step: f64,
    unit: (&'static str, f64),
}

impl Scale {
    fn new(longest: f64) -> Scale {
        let rough = longest / 6.0;
        let power = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * power)
            .find(|s| *s >= rough)
            .unwrap_or(10.0 * power);
        let unit = if longest >= 5000.0 {
            ("ms", 1000.0)
        } else {
            ("µs", 1.0)
        };
        Scale {
            px_per_us: PLOT_W / longest,
            longest,
            step,
            unit,
        }
    }

    fn x(&self, us: f64) -> f64 {
        LABEL_W + us * self.px_per_us
    }
}

/// The legend: one swatch per kind of span the figure has, with its span
/// names; wraps onto a second line when needed. Returns the y below it.
fn legend(out: &mut String, kinds: &BTreeMap<Kind, Vec<&str>>, top: f64) -> f64 {
    let mut entries: Vec<(Option<Kind>, String)> = (kinds.iter())
        .map(|(k, names)| (Some(*k), format!("{}: {}", k.meaning(), names.join(", "))))
        .collect();
    entries.push((None, "red: EAGAIN (WouldBlock), EOF, expiry".to_string()));
    let (mut x, mut y) = (16.0, top + 6.0);
    for (kind, text) in &entries {
        let w = 16.0 + text_width(text) + 18.0;
        if x + w > WIDTH - 16.0 {
            x = 16.0;
            y += 18.0;
        }
        let color = match kind {
            Some(kind) => {
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" fill="{}" stroke="{INK}" stroke-width="0.5"/>"#,
                    kind.color()
                );
                INK
            }
            None => {
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" fill="none" stroke="{ERROR}" stroke-width="1.5"/>"#
                );
                ERROR
            }
        };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{color}">{}</text>"#,
            x + 16.0,
            y + 10.0,
            escape(text)
        );
        x += w;
    }
    y + 18.0
}

/// One trace: its title, its lanes, its time axis. Returns the y below it.
fn panel(out: &mut String, title: &str, trace: &Trace, scale: &Scale, top: f64) -> f64 {
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" font-size="13" font-weight="bold" fill="{INK}">{}</text>"#,
        top + 12.0,
        escape(title)
    );
    let mut y = top + 22.0;
    for (i, lane) in trace.lanes.iter().enumerate() {
        y = draw_lane(out, lane, scale, y, i % 2 == 1);
    }
    axis(out, scale, trace.length, y + 2.0)
}

/// One lane: its band, its label, its spans by depth, then its notes.
/// Returns the y below it.
fn draw_lane(out: &mut String, lane: &Lane, scale: &Scale, top: f64, shaded: bool) -> f64 {
    let notes = place_notes(lane, scale);
    let used = notes.iter().map(|n| n.row + 1).max().unwrap_or(0);
    let height = lane.depth() as f64 * ROW_H + used as f64 * NOTE_H + LANE_GAP;
    if shaded {
        let _ = writeln!(
            out,
            r#"<rect x="0" y="{top:.1}" width="{WIDTH}" height="{height:.1}" fill="whitesmoke"/>"#
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="{INK}">{}</text>"#,
        LABEL_W - 8.0,
        top + 15.0,
        escape(&lane.label)
    );
    for s in &lane.spans {
        draw_span(out, s, scale, top + 3.0 + s.depth as f64 * ROW_H);
    }
    let notes_top = top + 3.0 + lane.depth() as f64 * ROW_H;
    for n in &notes {
        let y = notes_top + n.row as f64 * NOTE_H;
        let color = if n.priority == 0 { ERROR } else { INK };
        // A hairline from the span down to its note.
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-width="1"/>"#,
            top + (n.depth + 1) as f64 * ROW_H,
            y + 3.0,
            x = n.at
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{color}">{}</text>"#,
            n.x,
            y + 11.0,
            escape(&n.text)
        );
    }
    top + height
}

/// A span as a rectangle at least a pixel wide, its name inside when it
/// fits; an error's span outlined in the error colour. A span cut at the
/// window's edge is drawn lighter.
fn draw_span(out: &mut String, s: &Span, scale: &Scale, y: f64) {
    let kind = Kind::of(&s.name);
    let x = scale.x(s.start);
    let w = ((s.end - s.start) * scale.px_per_us).max(1.0);
    let h = ROW_H - 3.0;
    let stroke = if s.text("error").is_some() {
        format!(r#" stroke="{ERROR}" stroke-width="1.5""#)
    } else {
        String::new()
    };
    let opacity = if s.cut_start || s.cut_end {
        r#" fill-opacity="0.5""#
    } else {
        ""
    };
    let _ = writeln!(
        out,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"{opacity}{stroke}/>"#,
        kind.color()
    );
    if text_width(&s.name) + 6.0 <= w {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{}">{}</text>"#,
            x + 3.0,
            y + 10.5,
            kind.text_color(),
            escape(&s.name)
        );
    }
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_W
}

/// A note, where it goes.
#[derive(Debug, PartialEq)]
struct Note {
    text: String,
    priority: u8,
    /// Where the hairline leaves the span, and where the text starts.
    at: f64,
    x: f64,
    row: usize,
    /// The span's sub-row, where the hairline starts.
    depth: usize,
}

/// Places the lane's notes: the most telling first (then by time), each
/// in the first note row where it overlaps no other, or not at all. A
/// span's note, when the span has none, is its name if that does not fit
/// inside it.
fn place_notes(lane: &Lane, scale: &Scale) -> Vec<Note> {
    let mut wanted: Vec<(u8, f64, &Span, String)> = Vec::new();
    for s in &lane.spans {
        let w = (s.end - s.start) * scale.px_per_us;
        let inside = text_width(&s.name) + 6.0 <= w;
        let text = match note(s) {
            Some((p, text)) if !(inside && text == s.name) => (p, text),
            Some(_) => continue,
            None if !inside => (3, s.name.clone()),
            None => continue,
        };
        wanted.push((text.0, s.start, s, text.1));
    }
    wanted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); NOTE_ROWS];
    let mut placed = Vec::new();
    for (priority, _, s, text) in wanted {
        let at = scale.x(s.start) + ((s.end - s.start) * scale.px_per_us).max(1.0) / 2.0;
        let w = text_width(&text);
        // Right of the hairline, or left of it near the right edge.
        let x = if at + 3.0 + w > WIDTH - 4.0 {
            at - 3.0 - w
        } else {
            at + 3.0
        };
        let (lo, hi) = (x.min(at) - 3.0, (x + w).max(at) + 3.0);
        let free = |row: &Vec<(f64, f64)>| row.iter().all(|&(a, b)| hi <= a || b <= lo);
        // The hairline crosses the rows above its note: they must be free
        // where it passes.
        let Some(row) = (0..NOTE_ROWS).find(|&r| {
            free(&rows[r])
                && rows[..r]
                    .iter()
                    .all(|row| row.iter().all(|&(a, b)| at < a || b < at))
        }) else {
            continue;
        };
        rows[row].push((lo, hi));
        placed.push(Note {
            text,
            priority,
            at,
            x,
            row,
            depth: s.depth,
        });
    }
    placed.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.row.cmp(&b.row)));
    placed
}

/// The time axis: a line the length of this panel's window, ticks every
/// step, and the unit in the label column. Returns the y below it.
fn axis(out: &mut String, scale: &Scale, length: f64, y: f64) -> f64 {
    let _ = writeln!(
        out,
        r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{INK}" stroke-width="1"/>"#,
        scale.x(0.0),
        scale.x(length)
    );
    let (unit, per) = scale.unit;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{INK}">{unit} from the window's start</text>"#,
        LABEL_W - 8.0,
        y + 14.0
    );
    let mut k = 0.0;
    while k * scale.step <= length.min(scale.longest) + 1e-9 {
        let t = k * scale.step;
        let x = scale.x(t);
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="{INK}" stroke-width="1"/>"#,
            y + 4.0
        );
        let value = t / per;
        let label = if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value}")
        };
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{INK}">{label}</text>"#,
            y + 14.0
        );
        k += 1.0;
    }
    y + 20.0
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::parse;

    /// A loop that reads twice in one event, the second read EAGAIN.
    const LOOP: &str = r#"[
{"ph":"M","name":"process_name","pid":7,"tid":7,"args":{"name":"stage02"}},
{"ph":"B","name":"event","pid":7,"tid":7,"ts":0.0,"args":{}},
{"ph":"B","name":"read","pid":7,"tid":7,"ts":1.0,"args":{}},
{"ph":"E","name":"read","pid":7,"tid":7,"ts":2.0,"args":{"fd":5,"bytes":65536}},
{"ph":"B","name":"read","pid":7,"tid":7,"ts":2.5,"args":{}},
{"ph":"E","name":"read","pid":7,"tid":7,"ts":3.0,"args":{"fd":5,"error":"WouldBlock"}},
{"ph":"E","name":"event","pid":7,"tid":7,"ts":100.0,"args":{"fd":5}}
]"#;

    #[test]
    fn notes_never_overlap_and_the_eagain_is_placed_first() {
        let t = parse(LOOP).unwrap();
        let scale = Scale::new(t.length);
        let notes = place_notes(&t.lanes[0], &scale);
        // The two reads are a few pixels apart: their notes go in two rows.
        assert!(notes.iter().any(|n| n.text == "EAGAIN" && n.row == 0));
        assert!(notes.iter().any(|n| n.text == "65536 B" && n.row == 1));
        for (i, a) in notes.iter().enumerate() {
            for b in &notes[i + 1..] {
                let w = |n: &Note| (n.x, n.x + text_width(&n.text));
                let ((a0, a1), (b0, b1)) = (w(a), w(b));
                assert!(
                    a.row != b.row || a1 <= b0 || b1 <= a0,
                    "{a:?} and {b:?} overlap"
                );
            }
        }
    }

    #[test]
    fn a_figure_is_the_same_bytes_every_time_and_names_its_panels() {
        let figure = Timeline {
            file: "t.svg",
            title: "a & b",
            panels: &[crate::catalog::Panel {
                trace: "loop",
                title: "stage02-epoll --trigger et",
            }],
        };
        let traces = BTreeMap::from([("loop".to_string(), parse(LOOP).unwrap())]);
        let a = render(&figure, &traces).unwrap();
        assert_eq!(a, render(&figure, &traces).unwrap());
        assert!(a.contains("stage02-epoll --trigger et") && a.contains("a &amp; b"));
        assert!(a.contains(">EAGAIN<") && a.contains(">stage02<"));
        let missing = BTreeMap::new();
        let e = format!("{:#}", render(&figure, &missing).unwrap_err());
        assert!(e.contains("notes/data/traces/loop.json"), "{e}");
    }

    #[test]
    fn ticks_are_round_and_switch_to_milliseconds_from_5_ms() {
        let s = Scale::new(700.0);
        assert_eq!((s.step, s.unit.0), (200.0, "µs"));
        let s = Scale::new(300_000.0);
        assert_eq!((s.step, s.unit.0), (50_000.0, "ms"));
    }
}
