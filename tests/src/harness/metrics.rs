//! Reading a directory's Prometheus metrics (`herald serve --metrics`), with a plain
//! HTTP/1.0 GET over loopback.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Samples by series (`name` or `name{labels}`).
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// The value of one series, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
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

/// GET http://addr/metrics.
pub fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
    let timeout = Duration::from_secs(5);
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("metrics {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    let mut body = String::new();
    s.take(16 << 20)
        .read_to_string(&mut body)
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    let text = body.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(&body);
    Ok(parse(text))
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
    }
}
