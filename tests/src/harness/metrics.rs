//! Reading a directory's Prometheus metrics (`herald serve --metrics`), with a plain
//! HTTP/1.0 GET (from the directory's own namespace when it has one).

use super::host::Host;
use super::http;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Samples by series (`name` or `name{labels}`).
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// The value of one series, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// True when some series of metric `name` is present (with any labels).
    pub fn has(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|k| k.as_str() == name || k.starts_with(&format!("{name}{{")))
    }

    /// The sum over every series of metric `name` (all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Parses the Prometheus text format.
pub fn parse(text: &str) -> Metrics {
    let mut m = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((series, value)) = line.rsplit_once(' ') {
            if let Ok(v) = value.trim().parse::<f64>() {
                m.insert(series.trim().to_owned(), v);
            }
        }
    }
    Metrics(m)
}

/// GET http://addr/metrics from this process.
pub fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
    http::get(addr, "/metrics").map(|body| parse(&body))
}

/// GET http://addr/metrics from `host` (inside its namespace, if it has one).
pub fn scrape_on(host: &Host, addr: SocketAddr) -> Result<Metrics, String> {
    http::get_on(host, addr, "/metrics").map(|body| parse(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_series_with_and_without_labels() {
        let m = parse(
            "# HELP x y\nherald_malformed_total 3\nherald_rejections_total{reason=\"malformed\"} 2\nherald_rejections_total{reason=\"name_held\"} 1\n",
        );
        assert_eq!(m.get("herald_malformed_total"), 3.0);
        assert_eq!(m.sum("herald_rejections_total"), 3.0);
        assert_eq!(m.get("absent"), 0.0);
        assert!(m.has("herald_rejections_total") && m.has("herald_malformed_total"));
        assert!(!m.has("herald_rejections") && !m.has("absent"));
    }
}
