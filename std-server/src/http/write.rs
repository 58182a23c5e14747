//! `PUT /v1/services/{name}` (register, or renew by sending it again) and
//! `DELETE /v1/services/{name}` (unregister), for clients that cannot link a Herald
//! client, such as a shell script with `curl`.
//!
//! A write is not applied by this module: it is sent as an ordinary request (register
//! or unregister, with the directory's keys in an authenticated environment) to the
//! directory's own request socket, so the core decides it exactly as it decides a
//! request from a Herald client: ownership by registrant, sequence, lease bounds and
//! budgets (all HTTP writes come from the directory's own address, so they share one
//! source budget). The registrant is the 16 hex digits of the `Herald-Registrant`
//! header: keep it secret; only the same registrant renews or removes the name.
//!
//! The body of a `PUT` is JSON, unknown fields refused:
//! `{"locations": ["10.0.0.5:8080", …], "meta": {"key": "value"}, "lease_secs": 30}`
//! (`meta` and `lease_secs` optional; the directory clamps the lease). A registration
//! made this way lasts one lease: renew it with the same `PUT` before it runs out.

use super::params::{NoQuery, ServicePath};
use super::{error, Api};
use crate::client::{self, ClientOptions, Error, Herald};
use crate::net::Interface;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::auth::Keys;
use herald_core::RejectReason;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The header that carries the registrant id.
pub const REGISTRANT_HEADER: &str = "herald-registrant";
/// Writes in progress at once (each holds a client socket until the directory
/// answers); more are refused with 503 rather than queued.
pub const MAX_WRITES: usize = 64;

/// Sends the writes to the directory.
#[derive(Clone, Debug)]
pub struct Writer {
    directory: SocketAddr,
    environment: String,
    group: SocketAddr,
    keys: Option<Keys>,
    /// Writes are refused (403) with this reason.
    refused: Option<&'static str>,
    /// One permit per write in progress.
    slots: Arc<Semaphore>,
}

impl Writer {
    /// Writes to the directory at `directory` of `environment` (signing with `keys`).
    /// In an authenticated environment writes need a bearer token: without one
    /// (`has_token` false) they are refused.
    pub fn new(
        directory: SocketAddr,
        environment: String,
        group: SocketAddr,
        keys: Option<Keys>,
        has_token: bool,
    ) -> Writer {
        let refused = (keys.is_some() && !has_token).then_some(
            "this environment is authenticated: HTTP writes need --http-token-file on the directory",
        );
        Writer {
            directory,
            environment,
            group,
            keys,
            refused,
            slots: Arc::new(Semaphore::new(MAX_WRITES)),
        }
    }

    /// Refuses a write that may not proceed: 403 when writes are off, 503 when
    /// [`MAX_WRITES`] are in progress; else the permit the write holds.
    fn admit(&self) -> Result<OwnedSemaphorePermit, &'static str> {
        if let Some(reason) = self.refused {
            return Err(reason);
        }
        self.slots.clone().try_acquire_owned().map_err(|_| BUSY)
    }

    fn client(&self, registrant: u64, lease: Duration) -> ClientOptions {
        ClientOptions {
            directories: vec![self.directory],
            environment: self.environment.clone(),
            group: self.group,
            interface: Interface::default(),
            registrant: Some(registrant),
            lease,
            timeout: Duration::from_secs(3),
            capacity: 1,
            keys: self.keys.clone(),
            ..ClientOptions::default()
        }
    }
}

/// The body of a `PUT`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    locations: Vec<SocketAddr>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    lease_secs: Option<u64>,
}

/// Why a write is refused while others are in progress.
const BUSY: &str = "too many HTTP writes in progress: retry shortly";

/// Why a write has no usable registrant.
const NO_REGISTRANT: &str = "a write needs the header `Herald-Registrant: ID` (16 hex digits, \
                             kept secret: only the same registrant may renew or remove the name)";

/// The registrant id of the `Herald-Registrant` header, if it holds one.
fn registrant(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(REGISTRANT_HEADER)?.to_str().ok()?;
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// A write's slot and its registrant id, or the answer that refuses it: 503 when too
/// many writes are in progress, 403 when writes are not allowed, 400 without the
/// registrant header.
fn admitted(
    writer: &Writer,
    headers: &HeaderMap,
) -> Result<(OwnedSemaphorePermit, u64), (StatusCode, &'static str)> {
    let permit = writer.admit().map_err(|reason| match reason {
        BUSY => (StatusCode::SERVICE_UNAVAILABLE, BUSY),
        reason => (StatusCode::FORBIDDEN, reason),
    })?;
    let registrant = registrant(headers).ok_or((StatusCode::BAD_REQUEST, NO_REGISTRANT))?;
    Ok((permit, registrant))
}

/// Registers or renews.
pub async fn put(
    State(api): State<Api>,
    ServicePath(name): ServicePath,
    _: NoQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let writer = &api.writer;
    let (_permit, registrant) = match admitted(writer, &headers) {
        Ok(admitted) => admitted,
        Err((status, reason)) => return error(status, reason),
    };
    let put: Put = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    if put.locations.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "`locations` needs at least one address",
        );
    }
    let meta: Vec<(String, String)> = put.meta.into_iter().collect();
    let registration = match client::registration(&name, &put.locations, &meta) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    let lease = Duration::from_secs(put.lease_secs.unwrap_or(15));
    let result = async {
        let herald = Herald::connect(writer.client(registrant, lease)).await?;
        let handle = herald.register(registration).await?;
        let grant = handle.grant().clone();
        handle.detach();
        Ok::<_, Error>(grant)
    }
    .await;
    match result {
        Ok(grant) => Json(serde_json::json!({
            "name": grant.name.as_str(),
            "lease_secs": grant.lease.as_secs_f64(),
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}

/// Unregisters (idempotent: a name already gone is a success).
pub async fn delete(
    State(api): State<Api>,
    ServicePath(name): ServicePath,
    _: NoQuery,
    headers: HeaderMap,
) -> Response {
    let writer = &api.writer;
    let (_permit, registrant) = match admitted(writer, &headers) {
        Ok(admitted) => admitted,
        Err((status, reason)) => return error(status, reason),
    };
    let result = async {
        let herald = Herald::connect(writer.client(registrant, Duration::from_secs(15))).await?;
        herald.unregister(&name).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

/// The status for a failed write.
fn failure(e: Error) -> Response {
    let status = match &e {
        Error::InvalidName { .. }
        | Error::InvalidLocation(_)
        | Error::InvalidMetadata(_)
        | Error::Unreachable(_) => StatusCode::BAD_REQUEST,
        Error::Rejected {
            reason: RejectReason::NameHeld,
        } => StatusCode::CONFLICT,
        Error::Rejected {
            reason: RejectReason::Stale,
        } => StatusCode::CONFLICT,
        Error::Rejected { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::NoDirectory { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_beyond_the_bound_are_refused_not_queued() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let group = "237.37.37.1:37371".parse().unwrap();
        let writer = Writer::new(addr, "default".into(), group, None, false);
        let held: Vec<_> = (0..MAX_WRITES).map(|_| writer.admit().unwrap()).collect();
        assert_eq!(writer.admit().err(), Some(BUSY));
        drop(held);
        assert!(writer.admit().is_ok());
    }
}
