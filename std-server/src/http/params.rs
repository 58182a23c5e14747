//! What a request names in its URL, read strictly: the service name in the path and
//! the one parameter a route takes in its query (none for most). Anything else (an
//! unknown or repeated parameter, bytes that are not UTF-8 once percent-decoded) is
//! refused with a JSON `400` that says why, never read approximately.

use super::error;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, RawQuery};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::Interest;
use percent_encoding::percent_decode_str;

/// Why a URL was refused: answered as a JSON `400` with this reason.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// The `{*name}` of a route, refused with a JSON `400` when it is not UTF-8.
pub struct ServicePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = BadRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, BadRequest> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => Ok(ServicePath(name)),
            Err(e) => Err(path_error(&e)),
        }
    }
}

fn path_error(e: &PathRejection) -> BadRequest {
    let reason = match e {
        PathRejection::FailedToDeserializePathParams(e)
            if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
        {
            "the service name in the path is not UTF-8 once percent-decoded".to_owned()
        }
        e => format!("invalid path: {}", e.body_text()),
    };
    BadRequest(reason)
}

/// A route that takes no query parameter: one given is refused.
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = BadRequest;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, BadRequest> {
        match parts.uri.query() {
            Some(query) if !query.is_empty() => Err(BadRequest(format!(
                "{} takes no query parameter",
                parts.uri.path()
            ))),
            _ => Ok(NoQuery),
        }
    }
}

/// The query of a route that takes at most one parameter, `key`: its value, if given.
pub fn only(query: Option<&str>, key: &str) -> Result<Option<String>, BadRequest> {
    let unexpected = || BadRequest(format!("the only query parameter is `{key}`"));
    let mut value = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k)? != key || value.is_some() {
            return Err(unexpected());
        }
        value = Some(decode(v)?);
    }
    Ok(value)
}

/// `?interest=P[,P…]`, parsed: `None` when not given.
pub fn interest(query: RawQuery) -> Result<Option<Interest>, BadRequest> {
    match only(query.0.as_deref(), "interest")? {
        None => Ok(None),
        Some(text) => Interest::parse_all(text.split(','))
            .map(Some)
            .map_err(|e| BadRequest(e.to_string())),
    }
}

/// One percent-encoded query component (`+` is a space), as UTF-8.
fn decode(text: &str) -> Result<String, BadRequest> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            BadRequest(format!(
                "the query {text:?} is not UTF-8 once percent-decoded"
            ))
        })
}
