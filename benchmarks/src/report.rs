//! The run's report: markdown tables printed as they are measured, and every figure as
//! JSON for the plot, written under `docs/` at the end of the run.

use std::path::{Path, PathBuf};

/// Collected results of one run.
#[derive(Default)]
pub struct Report {
    markdown: String,
    json: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// Starts a section: prints and keeps a heading.
    pub fn section(&mut self, title: &str) {
        self.line(&format!("\n### {title}\n"));
    }

    /// Prints and keeps one line of markdown.
    pub fn line(&mut self, text: &str) {
        println!("{text}");
        self.markdown.push_str(text);
        self.markdown.push('\n');
    }

    /// Prints and keeps a markdown table.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.line(&format!("| {} |", header.join(" | ")));
        self.line(&format!("|{}", "---|".repeat(header.len())));
        for row in rows {
            self.line(&format!("| {} |", row.join(" | ")));
        }
    }

    /// Keeps `value` under `key` in the JSON results.
    pub fn record(&mut self, key: &str, value: serde_json::Value) {
        self.json.insert(key.to_owned(), value);
    }

    /// Writes `STEM.md` and `STEM.json` into `dir` (`benchmark-results` for `all`).
    pub fn write(&self, dir: &Path, stem: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join(format!("{stem}.md"));
        let json = dir.join(format!("{stem}.json"));
        std::fs::write(&md, &self.markdown)?;
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(self.json.clone()))
            .map_err(std::io::Error::other)?;
        std::fs::write(&json, text + "\n")?;
        Ok((md, json))
    }
}

/// The date and time now, UTC, as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

/// A number with `digits` decimals.
pub fn num(value: f64, digits: usize) -> String {
    format!("{value:.digits$}")
}

/// A ratio `a / b` as `k×` (two significant decimals), or `n/a`.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}
