//! Server-side SVG line charts of [`crate::history`] series, readable without any script;
//! `static/live.js` redraws them from the live feed using the geometry in their `data-*`
//! attributes.
//!
//! **Architecture Invariant:** the markup has no `style` attribute and no inline script, so it
//! passes a CSP without `'unsafe-inline'`: looks come from presentation attributes and the
//! `chart-*` classes. Every name in it is escaped; pool and listener names come from the config.

use std::fmt::Write;

use crate::forms::esc as escape;
use crate::history::{Point, WINDOW_MS};

/// How a series' values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Events per second: `12.3k req/s`.
    PerSecond,
    /// Bytes per second: `4.1 MB/s`.
    Bytes,
    /// Durations: `850 µs`, `12 ms`, `1.5 s`.
    Seconds,
    /// A plain count: `42`.
    Count,
}

impl Unit {
    /// `value` formatted for a label, e.g. `1.25 ms`.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::PerSecond => {
                let (n, prefix) = scaled(value);
                format!("{n}{prefix} req/s")
            }
            Unit::Bytes => {
                let (n, prefix) = scaled(value);
                format!("{n} {prefix}B/s")
            }
            Unit::Seconds => {
                let a = value.abs();
                if a >= 1.0 {
                    format!("{} s", number(value))
                } else if a >= 1e-3 || a == 0.0 {
                    format!("{} ms", number(value * 1e3))
                } else {
                    format!("{} µs", number(value * 1e6))
                }
            }
            Unit::Count => {
                let (n, prefix) = scaled(value);
                format!("{n}{prefix}")
            }
        }
    }

    /// The name `live.js` knows the unit by.
    fn as_str(self) -> &'static str {
        match self {
            Unit::PerSecond => "per_second",
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Count => "count",
        }
    }
}

/// One line of a [`multi`] chart.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// The history series key, e.g. `pool/web/p99`.
    pub key: &'a str,
    /// Shown before the line's last value, e.g. `p99`; empty for a single line.
    pub label: &'a str,
    pub points: &'a [Point],
}

/// A chart of one series over the last hour.
///
/// ```text
/// chart::svg(&key, "Requests/s", Unit::PerSecond, &state.history.series(&key))
/// ```
pub fn svg(key: &str, title: &str, unit: Unit, points: &[Point]) -> String {
    multi(
        title,
        unit,
        &[Line {
            key,
            label: "",
            points,
        }],
    )
}

/// A chart of several series sharing a unit and a y axis, e.g. p50 and p99. The chart carries
/// the first line's key as its `data-key`.
pub fn multi(title: &str, unit: Unit, lines: &[Line<'_>]) -> String {
    let finite = |p: &&Point| p.1.is_finite();
    let end = lines
        .iter()
        .flat_map(|l| l.points.iter().filter(finite))
        .map(|p| p.0)
        .max();
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().filter(finite))
        .filter(|p| end.is_some_and(|end| end.saturating_sub(p.0) <= WINDOW_MS))
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let y_max = nice_ceil(max).unwrap_or(match unit {
        Unit::Seconds => 1e-3,
        _ => 1.0,
    });
    let last = last_values(unit, lines);
    let title_e = escape(title);
    let aria = match &last {
        Some(v) => format!("{title_e}: {}", escape(v)),
        None => format!("{title_e}: no data yet"),
    };

    let mut s = String::with_capacity(2048);
    let _ = write!(
        s,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{aria}" data-key="{key}" data-unit="{unit}" data-window="{WINDOW_MS}" data-x0="{X0}" data-x1="{X1}" data-y0="{Y0}" data-y1="{Y1}" font-family="sans-serif" font-size="12" fill="currentColor">"#,
        key = escape(lines.first().map_or("", |l| l.key)),
        unit = unit.as_str(),
    );
    let _ = write!(s, "<title>{title_e}</title>");
    let _ = write!(
        s,
        r#"<text class="chart-title" x="{X0}" y="16" font-weight="bold">{title_e}</text>"#
    );
    let _ = write!(
        s,
        r#"<text class="chart-last" x="{X1}" y="16" text-anchor="end">{}</text>"#,
        escape(last.as_deref().unwrap_or(""))
    );
    let _ = write!(
        s,
        r#"<line class="chart-grid" x1="{X0}" y1="{Y0}" x2="{X1}" y2="{Y0}" stroke="currentColor" stroke-opacity="0.25" stroke-dasharray="2 3"/><line class="chart-axis" x1="{X0}" y1="{Y1}" x2="{X1}" y2="{Y1}" stroke="currentColor" stroke-opacity="0.5"/>"#
    );
    let _ = write!(
        s,
        r#"<text class="chart-ymax" x="{LABEL_X}" y="{}" text-anchor="end">{}</text><text class="chart-yzero" x="{LABEL_X}" y="{Y1}" text-anchor="end">0</text>"#,
        Y0 + 4,
        escape(&unit.format(y_max)),
    );
    let _ = write!(
        s,
        r#"<text class="chart-time" x="{X0}" y="{TIME_Y}">−60 min</text><text class="chart-time" x="{}" y="{TIME_Y}" text-anchor="middle">−30 min</text><text class="chart-time" x="{X1}" y="{TIME_Y}" text-anchor="end">now</text>"#,
        (X0 + X1) / 2,
    );
    for (i, line) in lines.iter().enumerate() {
        let dash = if i == 0 {
            ""
        } else {
            r#" stroke-dasharray="5 3""#
        };
        let _ = write!(
            s,
            r#"<polyline class="chart-line chart-line-{i}" data-key="{}" data-label="{}" points="{}" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"{dash}/>"#,
            escape(line.key),
            escape(line.label),
            end.map(|end| polyline(line.points, end, y_max))
                .unwrap_or_default(),
        );
    }
    if end.is_none() {
        let _ = write!(
            s,
            r#"<text class="chart-empty" x="{}" y="{}" text-anchor="middle" fill-opacity="0.6">no data yet</text>"#,
            (X0 + X1) / 2,
            (Y0 + Y1) / 2,
        );
    }
    s.push_str("</svg>");
    s
}

// Geometry of the view box; `live.js` reads the plot area from the data attributes.
const W: u32 = 600;
const H: u32 = 180;
const X0: u32 = 84;
const X1: u32 = 592;
const Y0: u32 = 28;
const Y1: u32 = 150;
const LABEL_X: u32 = 78;
const TIME_Y: u32 = 170;

/// The `points` attribute: the window ending at `end`, scaled to the plot area.
fn polyline(points: &[Point], end: u64, y_max: f64) -> String {
    let (x0, x1, y0, y1) = (f64::from(X0), f64::from(X1), f64::from(Y0), f64::from(Y1));
    let mut out = String::with_capacity(points.len() * 12);
    for &(t, v) in points {
        let age = end.saturating_sub(t);
        if age > WINDOW_MS || !v.is_finite() {
            continue;
        }
        let x = x1 - age as f64 / WINDOW_MS as f64 * (x1 - x0);
        let y = y1 - (v / y_max).clamp(0.0, 1.0) * (y1 - y0);
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{x:.1},{y:.1}");
    }
    out
}

/// The label of the newest values: `1.2 ms`, or `p50 1.2 ms · p99 8 ms` with labels.
fn last_values(unit: Unit, lines: &[Line<'_>]) -> Option<String> {
    let parts: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let &(_, v) = l.points.iter().rev().find(|p| p.1.is_finite())?;
            Some(if l.label.is_empty() {
                unit.format(v)
            } else {
                format!("{} {}", l.label, unit.format(v))
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The smallest of 1, 2 and 5 times a power of ten at or above `v`; `None` for no positive `v`.
fn nice_ceil(v: f64) -> Option<f64> {
    if !(v > 0.0 && v.is_finite()) {
        return None;
    }
    let step = 10f64.powf(v.log10().floor());
    let f = v / step;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    Some(n * step)
}

/// `value` scaled by thousands, with its prefix: `(12.3, "k")`.
fn scaled(value: f64) -> (String, &'static str) {
    let mut v = value;
    for prefix in ["", "k", "M"] {
        if v.abs() < 1000.0 {
            return (number(v), prefix);
        }
        v /= 1000.0;
    }
    (number(v), "G")
}

/// Three significant digits or so, without trailing zeros: `1.25`, `12.5`, `125`.
fn number(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn names_are_escaped_everywhere() {
        let svg = multi(
            r#"Pool <b>"x"</b> & 'y'"#,
            Unit::PerSecond,
            &[Line {
                key: r#"pool/"><script>/rps"#,
                label: "<p50>",
                points: &[(T, 1.0)],
            }],
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(!svg.contains("<p50>"), "{svg}");
        assert!(
            svg.contains("data-key=\"pool/&quot;&gt;&lt;script&gt;/rps\""),
            "{svg}"
        );
        assert!(
            svg.contains("<title>Pool &lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; &#39;y&#39;</title>")
        );
    }

    #[test]
    fn an_empty_series_says_no_data_yet() {
        let svg = svg("listener/web/rps", "Requests", Unit::PerSecond, &[]);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("no data yet"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"aria-label="Requests: no data yet""#));
        assert!(
            svg.contains(r#"points="""#),
            "the script can still fill the line: {svg}"
        );
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn the_chart_has_no_inline_style_and_labels_the_last_value() {
        let points = [(T - 60_000, 0.002), (T - 5_000, f64::NAN), (T, 0.0125)];
        let svg = svg("listener/web/p99", "p99", Unit::Seconds, &points);
        assert!(!svg.contains("style"), "{svg}");
        assert!(svg.contains(r#"aria-label="p99: 12.5 ms""#), "{svg}");
        assert!(svg.contains(">20 ms</text>"), "y axis rounds up: {svg}");
        assert!(svg.contains(r#"class="chart-line chart-line-0""#));
        // The newest point is at the right edge, top of the axis scale at 12.5 / 20.
        assert!(svg.contains("592.0,73.8\""), "{svg}");
        assert!(!svg.contains("no data yet"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn points_older_than_the_window_are_left_out() {
        let points = [(T - WINDOW_MS - 1, 5.0), (T - WINDOW_MS, 1.0), (T, 1.0)];
        let svg = svg("k", "t", Unit::Count, &points);
        assert!(svg.contains(r#"points="84.0,28.0 592.0,28.0""#), "{svg}");
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(Unit::PerSecond.format(12_345.0), "12.3k req/s");
        assert_eq!(Unit::PerSecond.format(2.0), "2 req/s");
        assert_eq!(Unit::Bytes.format(4_100_000.0), "4.1 MB/s");
        assert_eq!(Unit::Bytes.format(512.0), "512 B/s");
        assert_eq!(Unit::Seconds.format(0.000_85), "850 µs");
        assert_eq!(Unit::Seconds.format(0.0125), "12.5 ms");
        assert_eq!(Unit::Seconds.format(1.5), "1.5 s");
        assert_eq!(Unit::Count.format(42.0), "42");
        assert_eq!(nice_ceil(0.0125), Some(0.02));
        assert_eq!(nice_ceil(300.0), Some(500.0));
        assert_eq!(nice_ceil(0.0), None);
    }

    #[test]
    fn two_lines_share_the_scale_and_the_label() {
        let svg = multi(
            "Latency",
            Unit::Seconds,
            &[
                Line {
                    key: "pool/p/p50",
                    label: "p50",
                    points: &[(T, 0.001)],
                },
                Line {
                    key: "pool/p/p99",
                    label: "p99",
                    points: &[(T, 0.008)],
                },
            ],
        );
        assert!(svg.contains(r#"data-key="pool/p/p50" data-unit"#), "{svg}");
        assert!(svg.contains("p50 1 ms · p99 8 ms"), "{svg}");
        assert!(svg.contains(">10 ms</text>"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
