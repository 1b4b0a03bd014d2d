//! The per-IP rate limit of SPEC 10 at the edge: a route layer on the
//! routes an anonymous client calls to get tokens (see
//! [`rate_limited_routes`](super::rate_limited_routes)).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::EdgeState;
use crate::Error;

/// The client address a request was resolved to (the peer, or the
/// right-most untrusted hop of `X-Forwarded-For` behind a trusted proxy);
/// set by [`per_ip`] for the extractors behind it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResolvedIp(pub(super) IpAddr);

/// Charges the request to its client's bucket; `429 too many requests`
/// with `Retry-After` when it is spent. A request whose peer is unknown
/// (the router served without `ConnectInfo`) is not limited: there is no
/// address to charge, and one shared bucket would let one client starve all.
pub(super) async fn per_ip(
    State(edge): State<EdgeState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        let limits = edge.auth.limits();
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes());
        let ip = limits.client_ip(peer, forwarded);
        if let Err(retry) = limits.check_ip(ip) {
            return Error::TooManyRequests {
                retry_after_secs: retry.0,
            }
            .into_response();
        }
        req.extensions_mut().insert(ResolvedIp(ip));
    }
    next.run(req).await
}
