//! The text of the charts' axes: group labels wrapped to fit, and tick
//! values (where, and how written).

/// Splits `text` at spaces into lines of at most `fit` characters (a
/// longer word stays whole on its own line). A part in parentheses that
/// fits on a line is kept together: `(2 workers)`, not `(2` / `workers)`.
/// Of the ways to wrap into the fewest lines, the one with the shortest
/// longest line: `1 KiB, keep-alive,` / `50 conns`, not `1 KiB,
/// keep-alive, 50` / `conns`.
pub fn wrap(text: &str, fit: usize) -> Vec<String> {
    let units = units(text, fit);
    let lines = greedy(&units, fit);
    let longest = units.iter().map(|u| len(u)).max().unwrap_or(0);
    (longest..fit)
        .map(|width| greedy(&units, width))
        .find(|narrower| narrower.len() == lines.len())
        .unwrap_or(lines)
}

fn len(s: &str) -> usize {
    s.chars().count()
}

/// The words of `text`, a part in parentheses as one when it fits in `fit`.
fn units(text: &str, fit: usize) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    let mut open: Option<String> = None;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let unit = match open.take() {
            Some(u) => format!("{u} {word}"),
            None => word.to_string(),
        };
        if unit.starts_with('(') && !unit.ends_with(')') {
            open = Some(unit);
        } else if len(&unit) > fit && unit.contains(' ') {
            units.extend(unit.split(' ').map(str::to_string));
        } else {
            units.push(unit);
        }
    }
    units.extend(open);
    units
}

/// As many units on each line as fit in `width`.
fn greedy(units: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for unit in units {
        match lines.last_mut() {
            Some(line) if len(line) + 1 + len(unit) <= width => {
                line.push(' ');
                line.push_str(unit);
            }
            _ => lines.push(unit.clone()),
        }
    }
    lines
}

/// Ticks for a log axis: 1, 2 and 5 times each power of ten in the range
/// (plotters' own give only the powers of ten, or every multiple).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powi(lo.log10().floor() as i32);
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = m * decade;
            if (lo..=hi).contains(&t) {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// A tick value: `0.5`, `12`, `1.5k`, `120k`, `2M`.
pub fn short_number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let abs = v.abs();
    if abs >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if abs >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else {
        trim(format!("{v:.3}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_wrap_at_spaces() {
        assert_eq!(
            wrap("1 KiB, keep-alive, 50 conns", 12),
            ["1 KiB,", "keep-alive,", "50 conns"]
        );
        assert_eq!(wrap("stage01-blocking", 6), ["stage01-blocking"]);
        assert_eq!(wrap("a b", 20), ["a b"]);
        assert_eq!(
            wrap("stage05 shared (2 workers)", 12),
            ["stage05", "shared", "(2 workers)"]
        );
        assert_eq!(
            wrap("stage04 (heap, timerfd)", 12),
            ["stage04", "(heap,", "timerfd)"]
        );
        assert_eq!(wrap("x (open", 12), ["x (open"]);
        assert_eq!(
            wrap("1 KiB, keep-alive, 50 conns", 22),
            ["1 KiB, keep-alive,", "50 conns"]
        );
        assert_eq!(wrap("stage01 pool (4)", 12), ["stage01", "pool (4)"]);
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        assert_eq!(
            log_ticks(15.0, 1600.0),
            [20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
    }

    #[test]
    fn tick_values_are_short() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(0.30000000000000004), "0.3");
        assert_eq!(short_number(12.0), "12");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(120000.0), "120k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(-0.25), "-0.25");
    }
}
