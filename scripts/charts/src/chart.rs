//! Draws the charts of `catalog` as static SVG, with plotters' SVG backend.
//!
//! plotters, rather than an SVG writer of our own, for what a chart needs
//! beyond rectangles: axes with round tick values, a log axis, the mapping
//! from data to pixels. It is built without its font features, so it reads
//! no font file: text becomes SVG `<text>` elements that the browser sets in
//! its own sans-serif, and plotters sizes them with a fixed estimate from
//! their length. The layout is therefore the same on every
//! machine, and so are the bytes.
//!
//! What plotters does not do is drawn here: the title and legend in a strip
//! above the plot (so a legend never covers a bar), bar groups whose labels
//! wrap onto several lines, and min–max whiskers.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::catalog::{Chart, Kind, Series};
use crate::cell::{self, Cell, Stats};
use crate::csv::Measured;
use crate::labels::{log_ticks, short_number, wrap};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 420;
/// The strip above the plot: the title, then the legend.
const HEAD: u32 = 70;
const MARGIN_LEFT: u32 = 10;
const MARGIN_RIGHT: u32 = 24;
/// Room left of the plot for the y tick values and the y axis label.
const Y_AREA: u32 = 78;
const FONT: &str = "sans-serif";
/// Text sizes as plotters takes them. The SVG's font-size is this / 1.24:
/// these give 18 and 14 px, whole numbers rather than 13.709677419354838.
const TITLE_SIZE: f64 = 22.32;
const LABEL_SIZE: f64 = 17.36;
/// What one character of LABEL_SIZE text is taken to need, in pixels, to
/// wrap group labels and lay out the legend: half the font size, about a
/// sans-serif's average (the browser's font is not known here).
const CHAR_WIDTH: f64 = 7.0;
const LINE_HEIGHT: u32 = 16;
/// The widest a bar gets, in pixels.
const MAX_BAR: f64 = 64.0;
/// Okabe and Ito's palette: told apart with any colour vision.
const COLORS: [RGBColor; 4] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];
const INK: RGBColor = RGBColor(40, 40, 40);

/// One series, read from its CSV: (row label, median/min/max) per row that
/// has a number in the column.
struct Points<'a> {
    label: &'a str,
    points: Vec<(&'a str, Stats)>,
}

impl<'a> Points<'a> {
    fn load(s: &'a Series, data: &'a BTreeMap<String, Measured>) -> Result<Points<'a>> {
        let m = data.get(s.csv).with_context(|| {
            format!(
                "series \"{}\" needs {}.csv, which is not in the data folder",
                s.label, s.csv
            )
        })?;
        let Some(c) = m.column_index(s.column) else {
            bail!(
                "series \"{}\": {}.csv has no column \"{}\" (its columns: {})",
                s.label,
                s.csv,
                s.column,
                m.columns.join(", ")
            );
        };
        let points: Vec<_> = m
            .rows
            .iter()
            .enumerate()
            .filter_map(|(r, row)| {
                let stats = Cell::new(m.cell(r, c)?).stats()?;
                Some((row.as_str(), stats))
            })
            .collect();
        ensure!(
            !points.is_empty(),
            "series \"{}\": column \"{}\" of {}.csv holds no number",
            s.label,
            s.column,
            s.csv
        );
        Ok(Points {
            label: s.label,
            points,
        })
    }
}

/// The SVG text of one chart.
pub fn render(chart: &Chart, data: &BTreeMap<String, Measured>) -> Result<String> {
    let series = (chart.series.iter())
        .map(|s| Points::load(s, data))
        .collect::<Result<Vec<_>>>()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        draw_head(&root, chart, &series)?;
        match chart.kind {
            Kind::Bars => draw_bars(&root, chart, &series)?,
            Kind::Lines { log_y } => draw_lines(&root, chart, &series, log_y)?,
        }
        root.present()?;
    }
    Ok(svg)
}

type Ctx<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn label_style() -> TextStyle<'static> {
    (FONT, LABEL_SIZE).into_font().color(&INK)
}

/// The title, and under it the legend: one entry per series, centred.
fn draw_head(root: &Area, chart: &Chart, series: &[Points]) -> Result<()> {
    let center = Pos::new(HPos::Center, VPos::Top);
    let title = (FONT, TITLE_SIZE).into_font().color(&INK).pos(center);
    root.draw(&Text::new(chart.title, (WIDTH as i32 / 2, 12), title))?;
    let (swatch, gap) = (22, 28);
    let widths: Vec<i32> = (series.iter())
        .map(|s| swatch + 6 + text_width(s.label) as i32)
        .collect();
    let total: i32 = widths.iter().sum::<i32>() + gap * (widths.len() as i32 - 1);
    let (mut x, y) = ((WIDTH as i32 - total) / 2, 48);
    let text = label_style().pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (s, w)) in series.iter().zip(&widths).enumerate() {
        let color = COLORS[i % COLORS.len()];
        if matches!(chart.kind, Kind::Bars) {
            root.draw(&Rectangle::new(
                [(x + 5, y - 6), (x + 17, y + 6)],
                color.filled(),
            ))?;
        } else {
            root.draw(&PathElement::new(
                [(x, y), (x + swatch, y)],
                color.stroke_width(2),
            ))?;
            root.draw(&Circle::new((x + swatch / 2, y), 3, color.filled()))?;
        }
        root.draw(&Text::new(s.label, (x + swatch + 6, y), text.clone()))?;
        x += w + gap;
    }
    Ok(())
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

/// Bars: one group per row (the first series' rows first, in its order),
/// one bar per series in each.
fn draw_bars(root: &Area, chart: &Chart, series: &[Points]) -> Result<()> {
    let mut groups: Vec<&str> = Vec::new();
    for (row, _) in series.iter().flat_map(|s| &s.points) {
        if !groups.contains(row) {
            groups.push(row);
        }
    }
    let n = groups.len();
    let plot_width = f64::from(WIDTH - MARGIN_LEFT - MARGIN_RIGHT - Y_AREA);
    let fit = (plot_width / n as f64 / CHAR_WIDTH).max(6.0) as usize;
    let labels: Vec<Vec<String>> = groups.iter().map(|g| wrap(g, fit)).collect();
    let lines = labels.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let (lo, hi) = y_span(series, chart.reference);
    let mut ctx = ChartBuilder::on(root)
        .margin_top(HEAD)
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_bottom(6)
        .x_label_area_size(14 + lines * LINE_HEIGHT)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d(0.0..n as f64, lo..hi)?;
    configure_mesh(&mut ctx, chart)?;

    // The bars of a group take 0.8 of its width, centred; with few groups,
    // less, so that a bar is never more than MAX_BAR pixels wide.
    let k = series.len() as f64;
    let bars = f64::min(0.8, k * MAX_BAR / (plot_width / n as f64));
    let slot = bars / k;
    for (j, s) in series.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        for (row, st) in &s.points {
            let g = groups.iter().position(|g| g == row).unwrap_or(0) as f64;
            let x0 = g + (1.0 - bars) / 2.0 + j as f64 * slot;
            let x1 = x0 + slot * 0.88;
            ctx.draw_series([Rectangle::new([(x0, 0.0), (x1, st.median)], color.filled())])?;
            draw_whisker(&mut ctx, (x0 + x1) / 2.0, st, slot * 0.15, INK)?;
        }
    }
    if let Some(r) = chart.reference {
        let style = RGBColor(200, 30, 30).stroke_width(1);
        let line = [(0.0, r), (n as f64, r)];
        ctx.draw_series([DashedPathElement::new(line, 6, 4, style)])?;
    }
    let style = label_style().pos(Pos::new(HPos::Center, VPos::Top));
    for (g, lines) in labels.iter().enumerate() {
        let (x, y) = ctx.backend_coord(&(g as f64 + 0.5, lo));
        for (l, line) in lines.iter().enumerate() {
            let at = (x, y + 8 + l as i32 * LINE_HEIGHT as i32);
            root.draw(&Text::new(line.as_str(), at, style.clone()))?;
        }
    }
    Ok(())
}

/// The y range of a linear axis: from 0 (or below, for negative values) to
/// a little over the highest whisker, the reference line included.
fn y_span(series: &[Points], reference: Option<f64>) -> (f64, f64) {
    let stats = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let hi = stats().map(|s| s.max).chain(reference).fold(0.0, f64::max);
    let lo = stats().map(|s| s.min).fold(0.0, f64::min);
    let hi = if hi > 0.0 { hi * 1.1 } else { 1.0 };
    (if lo < 0.0 { lo * 1.1 } else { 0.0 }, hi)
}

/// Lines: x is the row label read as a number (`10000`, `30000 req/s`).
fn draw_lines(root: &Area, chart: &Chart, series: &[Points], log_y: bool) -> Result<()> {
    let mut lines: Vec<Vec<(f64, Stats)>> = Vec::new();
    for s in series {
        let mut line = Vec::new();
        for (row, st) in &s.points {
            let x = cell::leading_number(row).with_context(|| {
                format!(
                    "series \"{}\": row \"{row}\" is not a number for the x axis",
                    s.label
                )
            })?;
            ensure!(
                !log_y || st.min > 0.0,
                "series \"{}\", row \"{row}\": a log axis needs values above 0",
                s.label
            );
            line.push((x, *st));
        }
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(line);
    }
    let all = || lines.iter().flatten();
    let (x_lo, x_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let pad = if x_hi > x_lo {
        (x_hi - x_lo) * 0.05
    } else {
        1.0
    };
    let x_range = (x_lo - pad)..(x_hi + pad);
    let mut builder = ChartBuilder::on(root);
    builder
        .margin_top(HEAD)
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_bottom(6)
        .x_label_area_size(50)
        .y_label_area_size(Y_AREA);
    if log_y {
        let lo = all().map(|p| p.1.min).fold(f64::MAX, f64::min) / 1.5;
        let hi = all().map(|p| p.1.max).fold(0.0, f64::max) * 1.5;
        let y = (lo..hi).log_scale().with_key_points(log_ticks(lo, hi));
        let mut ctx = builder.build_cartesian_2d(x_range, y)?;
        plot_lines(&mut ctx, chart, &lines)
    } else {
        let (lo, hi) = y_span(series, chart.reference);
        let mut ctx = builder.build_cartesian_2d(x_range, lo..hi)?;
        plot_lines(&mut ctx, chart, &lines)
    }
}

fn plot_lines<Y>(
    ctx: &mut Ctx<'_, '_, RangedCoordf64, Y>,
    chart: &Chart,
    lines: &[Vec<(f64, Stats)>],
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    configure_mesh(ctx, chart)?;
    let x_span = ctx.x_range().end - ctx.x_range().start;
    for (j, line) in lines.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        // Each series a little to the side of the others, so that two
        // whiskers at one x (a p99 of each server) do not hide each other.
        let dodge = (j as f64 - (lines.len() as f64 - 1.0) / 2.0) * x_span * 0.015;
        let path: Vec<(f64, f64)> = line.iter().map(|(x, st)| (x + dodge, st.median)).collect();
        ctx.draw_series([PathElement::new(path.clone(), color.stroke_width(2))])?;
        for (x, st) in line {
            draw_whisker(ctx, x + dodge, st, x_span * 0.006, color)?;
        }
        ctx.draw_series(path.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    if let Some(r) = chart.reference {
        let (x0, x1) = (ctx.x_range().start, ctx.x_range().end);
        let style = RGBColor(200, 30, 30).stroke_width(1);
        ctx.draw_series([DashedPathElement::new([(x0, r), (x1, r)], 6, 4, style)])?;
    }
    Ok(())
}

/// The axes, a light horizontal grid, and the axis labels. Tick values are
/// written short (`120k`), since the y area is narrow.
fn configure_mesh<X, Y>(ctx: &mut Ctx<'_, '_, X, Y>, chart: &Chart) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = ctx.configure_mesh();
    mesh.disable_x_mesh()
        .max_light_lines(0)
        .bold_line_style(RGBColor(220, 220, 220))
        .axis_style(INK)
        .label_style(label_style())
        .axis_desc_style(label_style())
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .y_desc(chart.y_label);
    match chart.x_label {
        Some(x_label) => mesh.x_desc(x_label),
        // A bar chart writes its own group labels.
        None => mesh.x_labels(0),
    };
    mesh.draw()?;
    Ok(())
}

/// A thin vertical line from min to max with short caps, when there was
/// more than one round.
fn draw_whisker<X, Y>(
    ctx: &mut Ctx<'_, '_, X, Y>,
    x: f64,
    st: &Stats,
    half_cap: f64,
    color: RGBColor,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if st.rounds < 2 || st.min == st.max {
        return Ok(());
    }
    let style = color.stroke_width(1);
    let cap = |y| PathElement::new([(x - half_cap, y), (x + half_cap, y)], style);
    ctx.draw_series([
        PathElement::new([(x, st.min), (x, st.max)], style),
        cap(st.min),
        cap(st.max),
    ])?;
    Ok(())
}
