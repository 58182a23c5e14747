//! The live page at `/`: one HTML file with plain JavaScript, embedded in the binary
//! (no build step, no external assets). It lists the registry, follows
//! `/v1/watch`, filters by name and shows the recent events.

use super::params::NoQuery;
use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const PAGE: &str = include_str!("page.html");

/// Serves the page.
pub async fn page(_: NoQuery) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// The page escapes the same characters as the command line.
    #[test]
    fn the_page_hides_no_more_and_no_less_than_the_command_line() {
        let line = format!(
            "const HIDDEN = /{}/gu;",
            crate::display::hidden_js_pattern()
        );
        assert!(PAGE.contains(&line), "page.html should hold:\n{line}");
    }
}
