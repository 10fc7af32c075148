//! The charts the book shows, all in one table. A series names the CSV
//! (`notes/data/NAME.csv`) and the column it plots; the rows of the CSV are
//! the groups of a bar chart, or the x values of a line chart.

/// One SVG under `notes/src/img/charts/`.
pub struct Chart {
    pub file: &'static str,
    pub title: &'static str,
    pub y_label: &'static str,
    /// Under the x axis of a line chart (a bar chart's groups name themselves).
    pub x_label: Option<&'static str>,
    pub kind: Kind,
    pub series: &'static [Series],
    /// A horizontal line, such as 1.0 on a chart of ratios.
    pub reference: Option<f64>,
}

pub enum Kind {
    /// One group of bars per row, one bar per series: the median, with a
    /// whisker from min to max.
    Bars,
    /// x is the row label read as a number; one line per series.
    Lines { log_y: bool },
}

pub struct Series {
    pub label: &'static str,
    pub csv: &'static str,
    pub column: &'static str,
}

const fn series(label: &'static str, csv: &'static str, column: &'static str) -> Series {
    Series { label, csv, column }
}

pub const CHARTS: &[Chart] = &[
    Chart {
        file: "vs-nginx.svg",
        title: "stage06 / nginx requests/s, per dispatch mode",
        y_label: "ratio (>1: stage06 faster)",
        x_label: None,
        kind: Kind::Bars,
        series: &[
            series("pass", "bench-http-pass", "stage06 / nginx"),
            series("reuseport", "bench-http-reuseport", "stage06 / nginx"),
            series("shared, exclusive", "bench-http-shared", "stage06 / nginx"),
        ],
        reference: Some(1.0),
    },
    Chart {
        file: "latency.svg",
        title: "Latency at a fixed request rate (open loop), 1 KiB",
        y_label: "µs",
        x_label: Some("requests/s"),
        kind: Kind::Lines { log_y: true },
        series: &[
            series("stage06 p50", "latency-http", "stage06 p50 µs"),
            series("stage06 p99", "latency-http", "stage06 p99 µs"),
            series("nginx p50", "latency-http", "nginx p50 µs"),
            series("nginx p99", "latency-http", "nginx p99 µs"),
        ],
        reference: None,
    },
    Chart {
        file: "memory.svg",
        title: "Memory per connection (RSS of all processes)",
        y_label: "KiB per connection",
        x_label: None,
        kind: Kind::Bars,
        series: &[
            series("idle keep-alive", "idle-memory", "idle: RSS KiB/conn"),
            series(
                "partial request head",
                "idle-memory",
                "partial: RSS KiB/conn",
            ),
        ],
        reference: None,
    },
    Chart {
        file: "echo-ladder.svg",
        title: "Echo messages/s by stage (64-byte ping-pong)",
        y_label: "messages/s",
        x_label: None,
        kind: Kind::Bars,
        series: &[
            series("10 connections", "bench-stages", "messages/s, 10 conns"),
            series("1000 connections", "bench-stages", "messages/s, 1000 conns"),
        ],
        reference: None,
    },
    Chart {
        file: "models.svg",
        title: "stage06 requests/s by I/O model, 1 KiB",
        y_label: "requests/s",
        x_label: None,
        kind: Kind::Bars,
        series: &[
            series("50 connections", "bench-models", "req/s, 50 conns"),
            series("1000 connections", "bench-models", "req/s, 1000 conns"),
        ],
        reference: None,
    },
];

/// One SVG under `notes/src/img/timelines/`: traces of
/// `notes/data/traces/`, one panel each, stacked on one time scale.
pub struct Timeline {
    pub file: &'static str,
    pub title: &'static str,
    pub panels: &'static [Panel],
}

/// One trace, under its title: the command that recorded it
/// (scripts/record-traces.sh).
pub struct Panel {
    pub trace: &'static str,
    pub title: &'static str,
}

const fn panel(trace: &'static str, title: &'static str) -> Panel {
    Panel { trace, title }
}

pub const TIMELINES: &[Timeline] = &[
    Timeline {
        file: "lt-et.svg",
        title: "One client writes 200,000 bytes at once: level- against edge-triggered",
        panels: &[
            panel("lt", "stage02-epoll --trigger lt"),
            panel("et", "stage02-epoll --trigger et"),
        ],
    },
    Timeline {
        file: "timers.svg",
        title: "One idle connection, closed after 300 ms: a 50 ms tick against a timerfd",
        panels: &[
            panel(
                "tick",
                "stage03-timer-list --tick-ms 50 --idle-timeout-ms 300",
            ),
            panel("timerfd", "stage04-min-heap --idle-timeout-ms 300"),
        ],
    },
    Timeline {
        file: "prefork.svg",
        title: "Three connections through the master to two workers",
        panels: &[panel(
            "prefork",
            "stage05-prefork --workers 2 --dispatch pass",
        )],
    },
    Timeline {
        file: "models.svg",
        title: "Three pipelined GETs in one write, under each I/O model",
        panels: &[
            panel("reactor", "stage06-full --workers 1 --model reactor"),
            panel(
                "proactor-sim",
                "stage06-full --workers 1 --model proactor-sim",
            ),
            panel("uring", "stage06-full --workers 1 --model uring"),
        ],
    },
];

/// The columns of a table that compares a build with a baseline: its
/// two ratios and the two p99s. The requests/s of the three servers stay
/// in the CSV; beside them the table would not fit the book's column.
const AGAINST_BASELINE: &[&str] = &[
    "stage06 / baseline",
    "stage06 / nginx",
    "stage06 p99 µs",
    "baseline p99 µs",
];

/// Tables that show only some of their CSV's columns (the others show
/// all): the columns, in order.
const SHOWN: &[(&str, &[&str])] = &[
    // One CPU each, wrk's one CPU caps requests/s: CPU per request says
    // what the servers need, and wrk's CPU whether it was the limit.
    (
        "bench-http-pass",
        &[
            "stage06 req/s",
            "nginx req/s",
            "stage06 / nginx",
            "CPU / request, nginx / stage06",
            "wrk's CPU busy, beside stage06",
        ],
    ),
    // Thirty rows: the two ratios its reading uses.
    (
        "dispatch-placement",
        &["stage06 / baseline", "stage06 / nginx"],
    ),
    ("lever-batch", AGAINST_BASELINE),
    ("lever-head", AGAINST_BASELINE),
    ("pin-shared", AGAINST_BASELINE),
    ("placement-then-now", AGAINST_BASELINE),
    // The spans' cost with --trace off: requests/s, and the server's CPU
    // per request, which holds where wrk is the limit.
    (
        "trace-cost",
        &[
            "stage06 / baseline",
            "CPU / request, stage06 / baseline",
            "stage06 CPU µs / request",
            "baseline CPU µs / request",
            "wrk's CPU busy, beside stage06",
        ],
    ),
];

/// The columns table `name` shows, when not all.
pub fn shown_columns(name: &str) -> Option<&'static [&'static str]> {
    SHOWN.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}
