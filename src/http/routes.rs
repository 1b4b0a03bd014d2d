//! The route table: every route of SPEC section 1, once. [`WalletAuth::router`]
//! builds the router from it and [`routes`] lists it, so what is served and
//! what is listed (and fuzzed, in `tests/malformed_requests.rs`) cannot
//! drift apart.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::bodies::Bodies;
use super::extract::MAX_BODY_BYTES;
use super::handlers;
use super::stream::Hub;
use crate::WalletAuth;

/// The router's state: the service, and the bodies this router pre-builds.
pub(super) struct Edge {
    pub(super) auth: WalletAuth,
    pub(super) bodies: Bodies,
    /// The event streams of `/revoked-jtis/stream`.
    pub(super) hub: Arc<Hub>,
}

pub(super) type EdgeState = Arc<Edge>;

/// The methods the table uses, each both a [`Method`] (to list) and a
/// [`MethodFilter`] (to route).
#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }
}

struct Route {
    verb: Verb,
    /// Relative to the configured `route_prefix`.
    path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<EdgeState>,
    /// Behind the per-IP rate limit (the routes an anonymous client calls
    /// to get tokens: SPEC 10).
    limited: bool,
}

const ROUTES: [Route; 10] = [
    Route {
        verb: Verb::Get,
        path: "/jwks",
        handler: |m| on(m, handlers::jwks),
        limited: false,
    },
    Route {
        verb: Verb::Post,
        path: "/challenge",
        handler: |m| on(m, handlers::challenge),
        limited: true,
    },
    Route {
        verb: Verb::Post,
        path: "/sign-in",
        handler: |m| on(m, handlers::sign_in),
        limited: true,
    },
    Route {
        verb: Verb::Post,
        path: "/refresh",
        handler: |m| on(m, handlers::refresh),
        limited: true,
    },
    Route {
        verb: Verb::Post,
        path: "/login",
        handler: |m| on(m, handlers::login),
        limited: true,
    },
    Route {
        verb: Verb::Post,
        path: "/fleet/sessions",
        handler: |m| on(m, handlers::fleet_session),
        limited: true,
    },
    Route {
        verb: Verb::Post,
        path: "/revoke",
        handler: |m| on(m, handlers::revoke),
        limited: false,
    },
    Route {
        verb: Verb::Get,
        path: "/revoked-jtis",
        handler: |m| on(m, handlers::revoked_jtis),
        limited: false,
    },
    Route {
        verb: Verb::Get,
        path: "/revoked-jtis/stream",
        handler: |m| on(m, handlers::revoked_jtis_stream),
        limited: false,
    },
    Route {
        verb: Verb::Get,
        path: "/mints",
        handler: |m| on(m, handlers::mints),
        limited: false,
    },
];

/// Every route the router serves, as (method, path relative to the
/// configured `route_prefix`), in the router's own table order. A `GET`
/// route also answers `HEAD`.
///
/// ```
/// let routes = wallet_auth::http::routes();
/// assert!(routes.contains(&(axum::http::Method::GET, "/jwks")));
/// ```
pub fn routes() -> Vec<(Method, &'static str)> {
    ROUTES.iter().map(|r| (r.verb.method(), r.path)).collect()
}

/// Every route wallet-auth serves, as (method, full path) for a router
/// under `prefix`: [`routes`] and `{prefix}/openapi.json` of
/// [`WalletAuth::router`], the health and discovery routes of
/// [`WalletAuth::ops_router`] and `/metrics` of
/// [`WalletAuth::metrics_router`]. The OpenAPI document lists exactly these
/// (`tests/openapi.rs`).
///
/// ```
/// let all = wallet_auth::http::served_routes("/api/v1/auth");
/// assert!(all.contains(&(axum::http::Method::GET, "/health/ready".to_string())));
/// ```
pub fn served_routes(prefix: &str) -> Vec<(Method, String)> {
    let mut all: Vec<(Method, String)> = ROUTES
        .iter()
        .map(|r| (r.verb.method(), format!("{prefix}{}", r.path)))
        .collect();
    all.push((Method::GET, format!("{prefix}{}", super::ops::OPENAPI)));
    for path in [
        super::ops::HEALTH_LIVE,
        super::ops::HEALTH_READY,
        super::ops::DISCOVERY,
        super::ops::METRICS_PATH,
    ] {
        all.push((Method::GET, path.to_string()));
    }
    all
}

/// The routes behind the per-IP rate limit (SPEC 10), as [`routes`] lists them.
pub fn rate_limited_routes() -> Vec<(Method, &'static str)> {
    ROUTES
        .iter()
        .filter(|r| r.limited)
        .map(|r| (r.verb.method(), r.path))
        .collect()
}

impl WalletAuth {
    /// The router with every route of SPEC section 1 (see [`routes`]) and
    /// `openapi.json` (SPEC 11) under the configured prefix (default
    /// `/api/v1/auth`). Every request runs in a span with a request id
    /// (`X-Request-Id`, echoed); with metrics on, every route is counted. Generic over the
    /// host's state, so a host app can `merge` it (or `nest` it with an
    /// empty prefix).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        // Full paths rather than `nest`: one routing step per request, no
        // prefix stripping on the hot paths.
        let prefix = self.config().route_prefix.as_str();
        let edge = Arc::new(Edge {
            auth: self.clone(),
            bodies: Bodies::new(self),
            hub: Arc::new(Hub::new(
                self.config().revocation_stream_max,
                self.stream_keep_alive(),
            )),
        });
        // With the per-IP limit off and no proxy trusted the layer would
        // only copy the peer address (which `ClientIp` reads anyway): leave
        // it out, so "limits off" costs nothing per request.
        let limit = self
            .limits()
            .needs_edge_layer()
            .then(|| axum::middleware::from_fn_with_state(Arc::clone(&edge), super::limit::per_ip));
        ROUTES
            .iter()
            .fold(Router::new(), |router, r| {
                let route = (r.handler)(r.verb.filter());
                let route = match &limit {
                    Some(limit) if r.limited => route.route_layer(limit.clone()),
                    _ => route,
                };
                // Outside the rate limit, so its 429s are counted too.
                let route = super::ops::metered(self, r.path, route);
                router.route(&format!("{prefix}{}", r.path), route)
            })
            .route(
                &format!("{prefix}{}", super::ops::OPENAPI),
                super::ops::metered(self, super::ops::OPENAPI, super::ops::openapi_route(self)),
            )
            .method_not_allowed_fallback(handlers::method_not_allowed)
            .with_state(edge)
            // Outermost: every route, the 405s and the SSE stream included,
            // runs in a request-id span and echoes its id. One layer of
            // both, so each request goes through one boxed service, not two.
            .layer(
                tower::ServiceBuilder::new()
                    .layer(super::ops::RequestSpanLayer)
                    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::routes;

    #[test]
    fn each_route_is_listed_once_with_a_rooted_path() {
        let listed = routes();
        for (i, (method, path)) in listed.iter().enumerate() {
            assert!(path.starts_with('/') && !path.ends_with('/'), "{path}");
            assert!(
                !listed[..i].iter().any(|(m, p)| m == method && p == path),
                "{method} {path} listed twice"
            );
        }
    }
}
