//! `--report FILE.html`: one self-contained page (inline SVG and CSS, no
//! script, no external resource) with each route's service share over time,
//! a marker per walkthrough step and the rollback, and the summary table.
//!
//! Series carry `data-route="NAME"` and markers `data-step="LABEL"` so tests
//! and tools can count them.

use std::fmt::Write as _;

use crate::demo::summary::Summary;
use crate::demo::timeline::{MarkerKind, Timeline};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 84.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
];
const ROLLBACK_COLOR: &str = "#d62728";
const STEP_COLOR: &str = "#555";
/// Marker labels alternate between this many rows so neighbours don't overlap.
const LABEL_ROWS: usize = 3;

/// The whole page.
pub fn render(timeline: &Timeline, summary: &Summary) -> String {
    let mut page = String::new();
    let verdict = if summary.passed() { "PASS" } else { "FAIL" };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>ficus demo: {verdict}</title>\n<style>\n\
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}\n\
table {{ border-collapse: collapse; margin-top: 1em; }}\n\
th, td {{ padding: 0.3em 0.9em; border-bottom: 1px solid #ddd; text-align: right; }}\n\
th:first-child, td:first-child {{ text-align: left; }}\n\
.pass {{ color: #2ca02c; }} .fail {{ color: {ROLLBACK_COLOR}; }}\n\
svg text {{ font-family: system-ui, sans-serif; font-size: 12px; }}\n\
</style>\n</head>\n<body>\n<h1>ficus demo: <span class=\"{}\">{verdict}</span></h1>\n\
<p>Share of each route's requests that the load balancer sent to the route's service \
(the rest went to the monolith), between metric scrapes; a vertical line marks each step, \
a dot marks each weight `migrate` set on a route's rule.</p>\n",
        verdict.to_lowercase()
    );
    page.push_str(&chart(timeline));
    page.push_str(&table(summary));
    page.push_str("</body>\n</html>\n");
    page
}

/// The SVG chart.
pub fn chart(timeline: &Timeline) -> String {
    let end = timeline
        .samples
        .iter()
        .map(|s| s.at)
        .chain(timeline.markers.iter().map(|m| m.at))
        .fold(1.0_f64, f64::max);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |at: f64| LEFT + at / end * plot_width;
    let y = |share: f64| TOP + (1.0 - share.clamp(0.0, 1.0)) * plot_height;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"service share of each route over time\">"
    );
    let _ = writeln!(
        svg,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>"
    );
    // Grid and axes.
    for percent in [0, 25, 50, 75, 100] {
        let at = y(f64::from(percent) / 100.0);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#e5e5e5\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{percent}%</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            at + 4.0
        );
    }
    let tick = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0]
        .into_iter()
        .find(|step| end / step <= 12.0)
        .unwrap_or(600.0);
    let mut second = 0.0;
    while second <= end + 1e-9 {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{second:.0} s</text>",
            x(second),
            HEIGHT - BOTTOM + 18.0
        );
        second += tick;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds since the traffic started</text>",
        LEFT + plot_width / 2.0,
        HEIGHT - BOTTOM + 38.0
    );
    // Markers, labels staggered over rows above the plot.
    for (index, marker) in timeline.markers.iter().enumerate() {
        let at = x(marker.at);
        let (color, dash) = match marker.kind {
            MarkerKind::Step => (STEP_COLOR, "4 3"),
            MarkerKind::Rollback => (ROLLBACK_COLOR, "2 2"),
        };
        let row = index % LABEL_ROWS;
        let label_y = TOP - 10.0 - 18.0 * (LABEL_ROWS - 1 - row) as f64;
        let _ = writeln!(
            svg,
            "<g data-step=\"{label}\" data-kind=\"{kind}\"><line x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-dasharray=\"{dash}\"/><text x=\"{:.1}\" y=\"{label_y:.1}\" fill=\"{color}\">{label}</text></g>",
            label_y + 4.0,
            HEIGHT - BOTTOM,
            at + 3.0,
            label = escape(&marker.label),
            kind = match marker.kind {
                MarkerKind::Step => "step",
                MarkerKind::Rollback => "rollback",
            },
        );
    }
    // One series per route.
    for (index, route) in timeline.routes.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let points: Vec<String> = timeline
            .samples
            .iter()
            .filter_map(|sample| sample.shares.get(index).map(|share| (sample.at, *share)))
            .map(|(at, share)| format!("{:.1},{:.1}", x(at), y(share)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline data-route=\"{route}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2.5\" points=\"{}\"><title>{route}: share sent to its service</title></polyline>",
            points.join(" "),
            route = escape(route)
        );
        for weight in timeline.weights.iter().filter(|w| w.route == index) {
            let (at, level) = (x(weight.at), y(f64::from(weight.percent) / 100.0));
            let _ = writeln!(
                svg,
                "<g data-weight=\"{route} {percent}\"><circle cx=\"{at:.1}\" cy=\"{level:.1}\" r=\"4.5\" fill=\"white\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{percent}%</text></g>",
                at + 6.0,
                if weight.percent > 90 {
                    level + 16.0
                } else {
                    level - 7.0
                },
                route = escape(route),
                percent = weight.percent,
            );
        }
        let legend_x = LEFT + 160.0 * index as f64;
        let _ = writeln!(
            svg,
            "<g data-legend=\"{route}\"><rect x=\"{legend_x:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{route} → service</text></g>",
            HEIGHT - 12.0,
            legend_x + 18.0,
            HEIGHT - 6.0,
            route = escape(route)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn table(summary: &Summary) -> String {
    let mut html = String::from("<table>\n");
    for (index, row) in summary.rows().iter().enumerate() {
        let cell = if index == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for value in row {
            let _ = write!(html, "<{cell}>{}</{cell}>", escape(value));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n<pre>");
    html.push_str(&escape(&summary.notes()));
    html.push_str("</pre>\n");
    html.push_str(&gates_table(summary));
    html
}

/// Each step's metric gate values (docs/gates.md), one row per evaluation
/// the journal kept; rows carry `data-gate="ROUTE VERDICT"`.
fn gates_table(summary: &Summary) -> String {
    if summary.gates.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Metric gates</h2>\n<p>The load balancer's CloudWatch metrics of the clients' traffic, \
judged before each step of a gradual shift over the window since the previous one.</p>\n<table>\n<tr>",
    );
    for title in crate::demo::summary::GateRow::header() {
        let _ = write!(html, "<th>{}</th>", escape(title));
    }
    html.push_str("</tr>\n");
    for gate in &summary.gates {
        let _ = write!(
            html,
            "<tr data-gate=\"{} {}\">",
            escape(&gate.route),
            escape(&gate.verdict)
        );
        for cell in gate.cells() {
            let _ = write!(html, "<td>{}</td>", escape(&cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::demo::summary::RouteSummary;

    const STEPS: [&str; 8] = [
        "init",
        "status",
        "verify --all",
        "shift users",
        "shift threads",
        "shift posts",
        "rollback posts",
        "status",
    ];

    fn recorded() -> (Timeline, Summary) {
        let routes: Vec<String> = ["posts", "threads", "users"].map(String::from).to_vec();
        let mut timeline = Timeline::new(routes.clone());
        for (index, step) in STEPS.iter().enumerate() {
            let kind = if step.starts_with("rollback") {
                MarkerKind::Rollback
            } else {
                MarkerKind::Step
            };
            timeline.markers.push(crate::demo::timeline::Marker {
                at: index as f64 * 2.0,
                label: (*step).to_owned(),
                kind,
            });
            timeline.samples.push(crate::demo::timeline::Sample {
                at: index as f64 * 2.0 + 1.0,
                shares: vec![0.0, 0.5, 1.0],
            });
        }
        timeline.weights.push(crate::demo::timeline::Weight {
            at: 7.0,
            route: 2,
            percent: 10,
        });
        let summary = Summary {
            routes: routes
                .iter()
                .map(|route| RouteSummary {
                    route: route.clone(),
                    sent: 10,
                    probes: 0,
                    to_service: 5,
                    failed: 0,
                    differed: 0,
                })
                .collect(),
            gates: vec![],
            elb_errors: 0,
            ending: None,
            duration: Duration::from_secs(16),
            problems: vec![],
        };
        (timeline, summary)
    }

    #[test]
    fn the_report_has_one_series_per_route_and_a_marker_per_step() {
        let (timeline, summary) = recorded();
        let page = render(&timeline, &summary);
        for route in &timeline.routes {
            assert_eq!(page.matches(&format!("data-route=\"{route}\"")).count(), 1);
        }
        assert_eq!(page.matches("<polyline data-route=").count(), 3);
        assert_eq!(page.matches("data-step=").count(), STEPS.len());
        assert_eq!(page.matches("data-kind=\"rollback\"").count(), 1);
        assert!(page.contains("data-step=\"shift users\""));
        assert!(page.contains("<g data-weight=\"users 10\">"));
        // Every series has a point per sample.
        let series = page.split("<polyline").nth(1).unwrap_or_default();
        let points = series.split("points=\"").nth(1).unwrap_or_default();
        let points = points.split('"').next().unwrap_or_default();
        assert_eq!(points.split(' ').count(), STEPS.len());
    }

    #[test]
    fn the_report_is_self_contained() {
        let (timeline, summary) = recorded();
        let page = render(&timeline, &summary);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("href="));
        assert!(!page.contains("@import"));
        // The only URL is the SVG namespace.
        assert_eq!(page.matches("http").count(), 1);
        assert!(page.contains("<title>ficus demo: PASS</title>"));
    }

    #[test]
    fn labels_are_escaped() {
        let mut timeline = Timeline::new(vec!["a<b".into()]);
        timeline.mark("x & \"y\"", MarkerKind::Step);
        let svg = chart(&timeline);
        assert!(svg.contains("data-step=\"x &amp; &quot;y&quot;\""));
        assert!(svg.contains("data-route=\"a&lt;b\""));
    }
}
