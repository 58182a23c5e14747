//! A small log-log line plot written as SVG by hand (no plotting tools needed).

use std::fmt::Write;

/// One labelled line of points (x, y), both > 0.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour (`#rrggbb`).
    pub colour: &'static str,
    /// Dashed line.
    pub dashed: bool,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 760.0;
const H: f64 = 480.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Decades spanning `lo..=hi` (powers of ten, as exponents).
fn decades(lo: f64, hi: f64) -> (i32, i32) {
    (lo.log10().floor() as i32, hi.log10().ceil() as i32)
}

/// A log-log plot of `series` with decade grid lines, axis labels and a legend; a
/// point whose y is 0 is a hollow marker on the bottom edge.
pub fn log_log(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let positive = |v: f64| v > 0.0 && v.is_finite();
    let xs: Vec<f64> = points().map(|p| p.0).filter(|v| positive(*v)).collect();
    let ys: Vec<f64> = points().map(|p| p.1).filter(|v| positive(*v)).collect();
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        if lo.is_finite() {
            decades(lo, hi.max(lo * 10.0))
        } else {
            (0, 1)
        }
    };
    let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x.log10() - f64::from(x0)) / f64::from(x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (y.log10() - f64::from(y0)) / f64::from(y1 - y0) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    for e in x0..=x1 {
        let x = sx(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            power(e)
        );
    }
    for e in y0..=y1 {
        let y = sy(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 8.0,
            y + 4.0,
            power(e)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 18.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (i, line) in series.iter().enumerate() {
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let path: Vec<String> = line
            .points
            .iter()
            .filter(|p| positive(p.0) && positive(p.1))
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            line.colour
        );
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{}"/>"#,
                line.colour
            );
        }
        // A zero cannot sit on a log axis: a hollow marker on the bottom edge.
        for &(x, _) in line.points.iter().filter(|p| positive(p.0) && p.1 == 0.0) {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="white" stroke="{}" stroke-width="2"/>"#,
                sx(x),
                TOP + ph,
                line.colour
            );
        }
        let ly = TOP + 20.0 + 22.0 * i as f64;
        let lx = LEFT + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            line.colour,
            lx + 34.0,
            ly + 4.0,
            escape(&line.label)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11">hollow marker on the</text><text x="{:.1}" y="{:.1}" font-size="11">bottom edge: 0 measured</text>"#,
        LEFT + pw + 16.0,
        TOP + 40.0 + 22.0 * series.len() as f64,
        LEFT + pw + 16.0,
        TOP + 54.0 + 22.0 * series.len() as f64
    );
    s.push_str("</svg>\n");
    s
}

/// `10^e` as text.
fn power(e: i32) -> String {
    match e {
        0 => "1".into(),
        1 => "10".into(),
        _ => format!("10^{e}"),
    }
}

/// Text escaped for XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_each_series_with_its_label() {
        let svg = log_log(
            "t",
            "x",
            "y",
            &[Series {
                label: "a<b".into(),
                colour: "#000000",
                dashed: true,
                points: vec![(10.0, 5.0), (1000.0, 500.0), (100.0, 0.0)],
            }],
        );
        assert!(svg.contains("a&lt;b") && svg.contains("stroke-dasharray"));
        assert_eq!(
            svg.matches("<circle").count(),
            3,
            "two points and a hollow zero"
        );
    }
}
