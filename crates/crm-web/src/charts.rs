//! Charts as inline SVG, drawn by our own code from plain series. Where the numbers come
//! from is the caller's business, so the reports page can switch data sources freely.

use maud::{Markup, html};

/// One step of a funnel: a label, the count that sizes the bar, and a note (e.g. an amount).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FunnelStep {
    pub(crate) key: String,
    pub(crate) label: String,
    pub(crate) count: u64,
    pub(crate) note: String,
}

/// One bar group of a bar chart: a label and up to two values (e.g. amount and weighted).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) second: Option<f64>,
    pub(crate) note: String,
}

const WIDTH: f64 = 720.0;

/// A centred funnel: each step a bar whose width is its share of the largest step.
pub(crate) fn funnel(testid: &str, steps: &[FunnelStep]) -> Markup {
    let row = 44.0;
    let label_w = 150.0;
    let bar_max = WIDTH - label_w - 170.0;
    let max = steps.iter().map(|s| s.count).max().unwrap_or(0).max(1) as f64;
    let height = row * steps.len() as f64 + 10.0;
    html! {
        svg.chart data-testid=(testid) viewBox=(format!("0 0 {WIDTH} {height}")) role="img"
            aria-label="Funnel" xmlns="http://www.w3.org/2000/svg" {
            @for (i, s) in steps.iter().enumerate() {
                @let y = i as f64 * row + 5.0;
                @let w = (s.count as f64 / max * bar_max).max(2.0);
                @let x = label_w + (bar_max - w) / 2.0;
                g data-testid=(format!("funnel-{}", s.key)) {
                    text x=(label_w - 10.0) y=(y + row / 2.0 + 4.0) text-anchor="end" class="chart-label" { (s.label) }
                    rect x=(fmt(x)) y=(fmt(y)) width=(fmt(w)) height=(fmt(row - 8.0)) rx="4" class=(format!("funnel-bar step-{i}")) {}
                    text x=(label_w + bar_max / 2.0) y=(y + row / 2.0 + 1.0) text-anchor="middle" class="chart-value" { (s.count) }
                    text x=(label_w + bar_max + 10.0) y=(y + row / 2.0 + 4.0) class="chart-note" { (s.note) }
                }
            }
        }
    }
}

/// Vertical bars, an optional second (overlaid, narrower) bar per group.
pub(crate) fn bars(testid: &str, groups: &[Bar]) -> Markup {
    let height = 260.0;
    let top = 20.0;
    let bottom = 50.0;
    let plot = height - top - bottom;
    let n = groups.len().max(1) as f64;
    let slot = (WIDTH - 40.0) / n;
    let max = groups
        .iter()
        .map(|g| g.value.max(g.second.unwrap_or(0.0)))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    html! {
        svg.chart data-testid=(testid) viewBox=(format!("0 0 {WIDTH} {height}")) role="img"
            aria-label="Bar chart" xmlns="http://www.w3.org/2000/svg" {
            line x1="30" y1=(top + plot) x2=(WIDTH - 10.0) y2=(top + plot) class="axis" {}
            @for (i, g) in groups.iter().enumerate() {
                @let x = 40.0 + i as f64 * slot;
                @let h = g.value / max * plot;
                g {
                    title { (g.label) ": " (g.note) }
                    rect x=(fmt(x + slot * 0.15)) y=(fmt(top + plot - h)) width=(fmt(slot * 0.7)) height=(fmt(h)) class="bar-main" {}
                    @if let Some(second) = g.second {
                        @let h2 = second / max * plot;
                        rect x=(fmt(x + slot * 0.3)) y=(fmt(top + plot - h2)) width=(fmt(slot * 0.4)) height=(fmt(h2)) class="bar-second" {}
                    }
                    text x=(fmt(x + slot / 2.0)) y=(top + plot + 16.0) text-anchor="middle" class="chart-label" { (g.label) }
                    text x=(fmt(x + slot / 2.0)) y=(top + plot + 32.0) text-anchor="middle" class="chart-note" { (g.note) }
                }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn funnel_bars_scale_with_their_counts() {
        let steps = vec![
            FunnelStep {
                key: "a".into(),
                label: "A".into(),
                count: 100,
                note: String::new(),
            },
            FunnelStep {
                key: "b".into(),
                label: "B <b>".into(),
                count: 25,
                note: String::new(),
            },
        ];
        let svg = funnel("funnel-chart", &steps).into_string();
        assert!(svg.contains("data-testid=\"funnel-a\""));
        assert!(svg.contains("width=\"400.0\""), "{svg}");
        assert!(svg.contains("width=\"100.0\""), "{svg}");
        assert!(svg.contains("B &lt;b&gt;"), "labels are escaped: {svg}");
    }

    #[test]
    fn empty_series_draw_without_dividing_by_zero() {
        let svg = bars("forecast-chart", &[]).into_string();
        assert!(svg.starts_with("<svg"));
        assert!(!svg.contains("NaN"));
    }
}
