//! One table cell: the values of a (row, column) over its rounds, summed up
//! as the median with the range around it, or as text.
//!
//! Numbers are kept as integers scaled by a power of ten (`1.71` is 171 at
//! 2 decimals), not as floats: the median of an even count is then exact
//! (`1.66` and `1.75` give `1.71`, where a float would print `1.70`), and
//! the text written is the same on every machine.

/// A decimal number as written: `scaled / 10^decimals`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Decimal {
    scaled: i128,
    decimals: u32,
}

impl Decimal {
    /// The same number at more decimals (`None` if it would overflow).
    fn rescale(self, decimals: u32) -> Option<i128> {
        let factor = 10i128.checked_pow(decimals.checked_sub(self.decimals)?)?;
        self.scaled.checked_mul(factor)
    }
}

/// Splits `value` into a leading number and the tail after it (its unit:
/// `×`, `%`, ` ms`…). `None` when it does not start like a number (a text
/// value such as `n/a`), or when the tail holds a digit: `0, 0` or `3/4`
/// are not one number with a unit, and a median of them would mislead.
fn parse_number(value: &str) -> Option<(Decimal, &str)> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let body = value.strip_prefix('-').unwrap_or(value);
    let int_len = digits(body);
    if int_len == 0 {
        return None;
    }
    let frac_len = match body[int_len..].strip_prefix('.') {
        Some(after) => digits(after),
        None => 0,
    };
    // A `.` with no digit after it belongs to the unit, not the number.
    let number_len = if frac_len > 0 {
        int_len + 1 + frac_len
    } else {
        int_len
    };
    let sign_len = value.len() - body.len();
    let (number, suffix) = value.split_at(sign_len + number_len);
    if suffix.contains(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let scaled: i128 = number.replace('.', "").parse().ok()?;
    let decimals = u32::try_from(frac_len).ok()?;
    Some((Decimal { scaled, decimals }, suffix))
}

/// The number `text` starts with (`30000 req/s` gives 30000), for the x
/// axis of a line chart.
pub fn leading_number(text: &str) -> Option<f64> {
    let (d, _) = parse_number(text.trim())?;
    Some(d.scaled as f64 / 10f64.powi(d.decimals as i32))
}

/// Writes `scaled / 10^decimals` with exactly `decimals` decimals.
fn format_scaled(scaled: i128, decimals: u32) -> String {
    let sign = if scaled < 0 { "-" } else { "" };
    let abs = scaled.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs}");
    }
    let factor = 10u128.pow(decimals);
    let width = decimals as usize;
    format!("{sign}{}.{:0width$}", abs / factor, abs % factor)
}

/// A cell whose every round is a number with the same unit.
#[derive(Debug, PartialEq)]
pub struct Numeric {
    /// The values scaled to `decimals`, sorted.
    sorted: Vec<i128>,
    /// The most decimals any round was written with.
    decimals: u32,
    suffix: String,
}

/// Median, min and max, for a chart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Numeric {
    fn new(values: &[String]) -> Option<Numeric> {
        let parsed = values
            .iter()
            .map(|v| parse_number(v))
            .collect::<Option<Vec<_>>>()?;
        let suffix = parsed.first()?.1;
        if parsed.iter().any(|(_, s)| *s != suffix) {
            return None;
        }
        let decimals = parsed.iter().map(|(d, _)| d.decimals).max()?;
        let mut sorted = parsed
            .iter()
            .map(|(d, _)| d.rescale(decimals))
            .collect::<Option<Vec<_>>>()?;
        sorted.sort_unstable();
        Some(Numeric {
            sorted,
            decimals,
            suffix: suffix.to_string(),
        })
    }

    fn median_scaled(&self) -> i128 {
        let v = &self.sorted;
        let mid = v.len() / 2;
        if v.len() % 2 == 1 {
            return v[mid];
        }
        // The mean of the two middle values, half away from zero.
        let sum = v[mid - 1] + v[mid];
        let half_up = if sum < 0 { sum - 1 } else { sum + 1 };
        if sum % 2 == 0 { sum / 2 } else { half_up / 2 }
    }

    /// The median with its unit, and the range `min–max` when the rounds
    /// differ.
    fn parts(&self) -> (String, Option<String>) {
        let f = |x| format_scaled(x, self.decimals);
        let (min, max) = (self.sorted[0], self.sorted[self.sorted.len() - 1]);
        let unit = &self.suffix;
        let median = format!("{}{unit}", f(self.median_scaled()));
        let range = (min != max).then(|| format!("{}–{}{unit}", f(min), f(max)));
        (median, range)
    }

    pub fn stats(&self) -> Stats {
        let f = |x: i128| x as f64 / 10f64.powi(self.decimals as i32);
        Stats {
            median: f(self.median_scaled()),
            min: f(self.sorted[0]),
            max: f(self.sorted[self.sorted.len() - 1]),
            rounds: self.sorted.len(),
        }
    }
}

/// A (row, column) of the table.
#[derive(Debug, PartialEq)]
pub enum Cell {
    Numeric(Numeric),
    Text(String),
}

impl Cell {
    /// Sums up the values of the rounds. A number with a unit that differs
    /// from round to round, or a text round among numbers, makes it all text:
    /// then every distinct value is shown rather than a median of unlike
    /// things.
    pub fn new(values: &[String]) -> Cell {
        Numeric::new(values).map_or_else(|| Cell::Text(text_of(values)), Cell::Numeric)
    }

    /// What the table shows, as its main line and the range under it.
    pub fn parts(&self) -> (String, Option<String>) {
        match self {
            Cell::Numeric(n) => n.parts(),
            Cell::Text(t) => (t.clone(), None),
        }
    }

    pub fn stats(&self) -> Option<Stats> {
        match self {
            Cell::Numeric(n) => Some(n.stats()),
            Cell::Text(_) => None,
        }
    }
}

/// The text of a text cell: the value when all rounds agree, else each
/// distinct value once, in the order first seen.
fn text_of(values: &[String]) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for v in values {
        if !distinct.contains(&v.as_str()) {
            distinct.push(v);
        }
    }
    distinct.join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(values: &[&str]) -> String {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        match Cell::new(&values).parts() {
            (median, Some(range)) => format!("{median} ({range})"),
            (median, None) => median,
        }
    }

    #[test]
    fn numbers_and_their_units() {
        let d = |scaled, decimals| Decimal { scaled, decimals };
        assert_eq!(parse_number("112636"), Some((d(112636, 0), "")));
        assert_eq!(parse_number("1.71×"), Some((d(171, 2), "×")));
        assert_eq!(parse_number("0.083"), Some((d(83, 3), "")));
        assert_eq!(parse_number("-0.02"), Some((d(-2, 2), "")));
        assert_eq!(parse_number("12 ms"), Some((d(12, 0), " ms")));
        assert_eq!(parse_number("3.%"), Some((d(3, 0), ".%")));
        assert_eq!(parse_number("0, 0"), None);
        assert_eq!(parse_number("1.2.3"), None);
        assert_eq!(parse_number("n/a"), None);
        assert_eq!(parse_number("-"), None);
        assert_eq!(parse_number(".5"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn one_value_or_all_equal_is_shown_as_is() {
        assert_eq!(cell(&["112636"]), "112636");
        assert_eq!(cell(&["1.71×"]), "1.71×");
        assert_eq!(cell(&["5 ms", "5 ms", "5 ms"]), "5 ms");
        // Equal once written at the same decimals.
        assert_eq!(cell(&["1.5", "1.50"]), "1.50");
    }

    #[test]
    fn median_with_range_and_unit() {
        assert_eq!(
            cell(&["112636", "110002", "111319"]),
            "111319 (110002–112636)"
        );
        assert_eq!(cell(&["1.71×", "1.66×", "1.75×"]), "1.71× (1.66–1.75×)");
        assert_eq!(cell(&["-0.02", "0.01", "0"]), "0.00 (-0.02–0.01)");
    }

    #[test]
    fn the_most_decimals_seen_are_kept() {
        assert_eq!(cell(&["1.5", "1.25", "2"]), "1.50 (1.25–2.00)");
        assert_eq!(cell(&["0.083 ms", "0.1 ms"]), "0.092 ms (0.083–0.100 ms)");
    }

    #[test]
    fn even_counts_take_the_mean_of_the_middle_two() {
        assert_eq!(cell(&["1", "2", "3", "4"]), "3 (1–4)");
        assert_eq!(cell(&["1.66×", "1.75×"]), "1.71× (1.66–1.75×)");
        assert_eq!(cell(&["-1.66", "-1.75"]), "-1.71 (-1.75–-1.66)");
        assert_eq!(cell(&["10", "20"]), "15 (10–20)");
    }

    #[test]
    fn text_cells() {
        assert_eq!(cell(&["n/a", "n/a"]), "n/a");
        assert_eq!(cell(&["ok", "slow", "ok"]), "ok / slow");
        // Text among numbers, or units that differ: every value, as text.
        assert_eq!(cell(&["12", "n/a"]), "12 / n/a");
        assert_eq!(cell(&["12 ms", "1 s"]), "12 ms / 1 s");
    }

    #[test]
    fn stats_for_charts() {
        let values: Vec<String> = ["1.66×", "1.75×", "1.71×"].map(String::from).into();
        let s = Cell::new(&values).stats().unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (1.71, 1.66, 1.75, 3));
        assert_eq!(Cell::new(&["n/a".to_string()]).stats(), None);
    }
}
