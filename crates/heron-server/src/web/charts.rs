//! Server-rendered charts: the geometry of bar and line charts, computed here and drawn as
//! inline SVG by `web/templates/metrics.html`.
//!
//! Invariants: a chart is only numbers and text for the template to escape (no markup is
//! built here); every chart has a summary for its `aria-label`, a `<title>` tooltip on every
//! bar and point, and the same figures as a table, so nothing is only visible in the
//! drawing; axes start at zero and end at a round value at or above the largest one.

/// Drawing size, in SVG user units (the SVG scales to its container).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 42.0;
/// Lines across the plot besides the axis.
const TICKS: u32 = 4;

pub(super) struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub tooltip: String,
}

pub(super) struct Point {
    pub x: String,
    pub y: String,
    pub tooltip: String,
}

pub(super) struct Line {
    /// `line-0`, `line-1`…: the series' colour and dash in the stylesheet.
    pub class: String,
    pub name: String,
    /// `x,y x,y …` for `<polyline points>`.
    pub points: String,
    pub markers: Vec<Point>,
}

pub(super) struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
}

pub(super) struct Tick {
    pub y: String,
    pub text: String,
}

/// One chart and its data table.
pub(super) struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    /// What the chart shows, in words (its `aria-label`).
    pub summary: String,
    pub view_box: String,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_bottom: String,
    pub plot_top: String,
    pub bars: Vec<Bar>,
    pub lines: Vec<Line>,
    pub x_labels: Vec<Label>,
    pub ticks: Vec<Tick>,
    pub y_title: String,
    /// The table: column headings, then rows of cells.
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// How values are written on axes, tooltips and tables.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    Count,
    Bytes,
    /// Seconds, written as a duration.
    Seconds,
}

impl Unit {
    pub(super) fn format(self, value: u64) -> String {
        match self {
            Unit::Count => group_thousands(value),
            Unit::Bytes => bytes(value),
            Unit::Seconds => duration(value),
        }
    }

    /// A round axis maximum at or above `max`, with [`TICKS`] equal steps.
    fn axis_max(self, max: u64) -> u64 {
        let steps: &[u64] = match self {
            Unit::Seconds => &[
                15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200,
                86_400, 172_800, 432_000, 604_800, 1_209_600, 2_592_000,
            ],
            Unit::Count | Unit::Bytes => &[],
        };
        let ticks = u64::from(TICKS);
        if let Some(step) = steps.iter().find(|s| **s * ticks >= max) {
            return step * ticks;
        }
        // 1, 2 or 5 × 10^k per step.
        let mut magnitude = 1u64;
        loop {
            for m in [1, 2, 5] {
                let step = m * magnitude;
                if step.saturating_mul(ticks) >= max.max(1) {
                    return step * ticks;
                }
            }
            magnitude = magnitude.saturating_mul(10);
        }
    }
}

fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(value: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut scaled = value as f64;
    let mut unit = 0;
    while scaled >= 1000.0 && unit < UNITS.len() - 1 {
        scaled /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value} B")
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min", trim(s as f64 / 60.0)),
        s if s < 86_400 => format!("{} h", trim(s as f64 / 3_600.0)),
        s => format!("{} d", trim(s as f64 / 86_400.0)),
    }
}

/// One decimal, without a trailing `.0`.
fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

fn n(value: f64) -> String {
    format!("{value:.1}")
}

struct Frame {
    max: u64,
    plot_width: f64,
    plot_height: f64,
}

impl Frame {
    fn new(unit: Unit, max: u64) -> Self {
        Frame {
            max: unit.axis_max(max),
            plot_width: WIDTH - LEFT - RIGHT,
            plot_height: HEIGHT - TOP - BOTTOM,
        }
    }

    fn y(&self, value: u64) -> f64 {
        TOP + self.plot_height * (1.0 - value as f64 / self.max as f64)
    }

    fn ticks(&self, unit: Unit) -> Vec<Tick> {
        (0..=TICKS)
            .map(|i| {
                let value = self.max / u64::from(TICKS) * u64::from(i);
                Tick {
                    y: n(self.y(value)),
                    text: unit.format(value),
                }
            })
            .collect()
    }

    fn chart(
        &self,
        id: &'static str,
        title: &'static str,
        summary: String,
        y_title: &str,
    ) -> Chart {
        Chart {
            id,
            title,
            summary,
            view_box: format!("0 0 {WIDTH} {HEIGHT}"),
            plot_left: n(LEFT),
            plot_right: n(WIDTH - RIGHT),
            plot_top: n(TOP),
            plot_bottom: n(TOP + self.plot_height),
            bars: Vec::new(),
            lines: Vec::new(),
            x_labels: Vec::new(),
            ticks: Vec::new(),
            y_title: y_title.to_owned(),
            columns: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// A bar chart of `bars` (label, value); `every` labels every n-th bar on the x axis.
pub(super) fn bar_chart(
    id: &'static str,
    title: &'static str,
    unit: Unit,
    what: &str,
    bars: &[(String, u64)],
    every: usize,
) -> Chart {
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let frame = Frame::new(unit, max);
    let total: u64 = bars.iter().map(|(_, v)| *v).sum();
    let summary = match bars.iter().max_by_key(|(_, v)| *v) {
        Some((label, top)) if *top > 0 => format!(
            "Bar chart of {what}: {} bars, {} in all, the most {} ({label}).",
            bars.len(),
            unit.format(total),
            unit.format(*top)
        ),
        _ => format!("Bar chart of {what}: none."),
    };
    let mut chart = frame.chart(id, title, summary, what);
    let slot = frame.plot_width / bars.len().max(1) as f64;
    let gap = (slot * 0.2).min(6.0);
    for (i, (label, value)) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let y = frame.y(*value);
        chart.bars.push(Bar {
            x: n(x + gap / 2.0),
            y: n(y),
            width: n((slot - gap).max(1.0)),
            height: n(TOP + frame.plot_height - y),
            tooltip: format!("{label}: {}", unit.format(*value)),
        });
        if every > 0 && i.is_multiple_of(every) {
            chart.x_labels.push(Label {
                x: n(x + slot / 2.0),
                y: n(HEIGHT - BOTTOM + 16.0),
                text: label.clone(),
            });
        }
    }
    chart.ticks = frame.ticks(unit);
    chart.columns = vec![String::new(), what.to_owned()];
    chart.rows = bars
        .iter()
        .map(|(label, value)| vec![label.clone(), unit.format(*value)])
        .collect();
    chart
}

/// A line chart: x labels, then series (name, a value or none per label).
pub(super) fn line_chart(
    id: &'static str,
    title: &'static str,
    unit: Unit,
    what: &str,
    labels: &[String],
    series: &[(&str, Vec<Option<u64>>)],
) -> Chart {
    let max = series
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    let frame = Frame::new(unit, max);
    let points: usize = series
        .iter()
        .map(|(_, values)| values.iter().flatten().count())
        .sum();
    let summary = if points == 0 {
        format!("Line chart of {what}: no values yet.")
    } else {
        format!(
            "Line chart of {what} ({}) over {} periods; the highest is {}.",
            series
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", "),
            labels.len(),
            unit.format(max)
        )
    };
    let mut chart = frame.chart(id, title, summary, what);
    let slot = frame.plot_width / labels.len().max(1) as f64;
    let x_of = |i: usize| LEFT + slot * i as f64 + slot / 2.0;
    for (i, label) in labels.iter().enumerate() {
        chart.x_labels.push(Label {
            x: n(x_of(i)),
            y: n(HEIGHT - BOTTOM + 16.0),
            text: label.clone(),
        });
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let mut line = Line {
            class: format!("line-{k}"),
            name: (*name).to_owned(),
            points: String::new(),
            markers: Vec::new(),
        };
        let mut coordinates = Vec::new();
        for (i, value) in values.iter().enumerate() {
            if let Some(value) = value {
                let (x, y) = (x_of(i), frame.y(*value));
                coordinates.push(format!("{},{}", n(x), n(y)));
                line.markers.push(Point {
                    x: n(x),
                    y: n(y),
                    tooltip: format!(
                        "{name}, {}: {}",
                        labels.get(i).map_or("", String::as_str),
                        unit.format(*value)
                    ),
                });
            }
        }
        line.points = coordinates.join(" ");
        chart.lines.push(line);
    }
    chart.ticks = frame.ticks(unit);
    chart.columns = std::iter::once(String::new())
        .chain(series.iter().map(|(name, _)| (*name).to_owned()))
        .collect();
    chart.rows = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            std::iter::once(label.clone())
                .chain(series.iter().map(|(_, values)| {
                    values
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or_else(|| "—".to_owned(), |v| unit.format(v))
                }))
                .collect()
        })
        .collect();
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_for_people() {
        assert_eq!(Unit::Count.format(1_234_567), "1,234,567");
        assert_eq!(Unit::Count.format(12), "12");
        assert_eq!(Unit::Bytes.format(999), "999 B");
        assert_eq!(Unit::Bytes.format(1_234_567_890_123), "1.2 TB");
        assert_eq!(Unit::Seconds.format(45), "45 s");
        assert_eq!(Unit::Seconds.format(600), "10 min");
        assert_eq!(Unit::Seconds.format(5_400), "1.5 h");
        assert_eq!(Unit::Seconds.format(172_800), "2 d");
    }

    #[test]
    fn axes_end_at_a_round_value_at_or_above_the_largest() {
        assert_eq!(Unit::Count.axis_max(0), 4);
        assert_eq!(Unit::Count.axis_max(7), 8);
        assert_eq!(Unit::Count.axis_max(37), 40);
        assert_eq!(Unit::Count.axis_max(41), 80);
        assert_eq!(Unit::Seconds.axis_max(7_000), 7_200);
        assert_eq!(Unit::Seconds.axis_max(100), 120);
    }

    #[test]
    fn every_bar_has_a_tooltip_and_a_table_row() {
        let chart = bar_chart(
            "c",
            "C",
            Unit::Count,
            "alerts",
            &[("a".into(), 3), ("b".into(), 0), ("c".into(), 8)],
            1,
        );
        assert_eq!(chart.bars.len(), 3);
        assert_eq!(chart.bars[2].tooltip, "c: 8");
        assert_eq!(chart.rows[1], vec!["b".to_owned(), "0".to_owned()]);
        assert!(chart.summary.contains("11 in all"), "{}", chart.summary);
        assert_eq!(chart.bars[1].height, "0.0", "a zero is a bar of no height");
    }

    #[test]
    fn a_line_skips_periods_without_a_value() {
        let chart = line_chart(
            "l",
            "L",
            Unit::Seconds,
            "time",
            &["w1".into(), "w2".into(), "w3".into()],
            &[("p50", vec![Some(60), None, Some(120)])],
        );
        assert_eq!(chart.lines[0].markers.len(), 2);
        assert_eq!(chart.lines[0].points.split(' ').count(), 2);
        assert_eq!(chart.rows[1], vec!["w2".to_owned(), "—".to_owned()]);
    }
}
