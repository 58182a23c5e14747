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

    /// Writes `benchmark-results.md` and `benchmark-results.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join("benchmark-results.md");
        let json = dir.join("benchmark-results.json");
        std::fs::write(&md, &self.markdown)?;
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(self.json.clone()))
            .map_err(std::io::Error::other)?;
        std::fs::write(&json, text + "\n")?;
        Ok((md, json))
    }
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
