//! The operating edge (SPEC 11): the request-id span every route runs in,
//! the per-route metrics layer, and the routes of health, discovery, the
//! OpenAPI document and `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;

use crate::ops::metrics::RouteMetrics;
use crate::ops::{is_sane_request_id, new_request_id, ShedReason, REQUEST_ID_HEADER};
use crate::WalletAuth;

/// The path under which `/metrics` is served by [`WalletAuth::metrics_router`].
pub const METRICS_PATH: &str = "/metrics";

/// The rooted routes of [`WalletAuth::ops_router`].
pub const HEALTH_LIVE: &str = "/health/live";
/// See [`HEALTH_LIVE`].
pub const HEALTH_READY: &str = "/health/ready";
/// See [`HEALTH_LIVE`].
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
/// Served by [`WalletAuth::router`] under the prefix.
pub const OPENAPI: &str = "/openapi.json";

/// The longest path a request span records (a client could put anything
/// in a path; a whole token never fits).
const MAX_SPAN_PATH: usize = 64;

static REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// One span per request, with a request id: the client's `X-Request-Id`
/// when it is sane ([`is_sane_request_id`]), else a new one; echoed in the
/// response. The span carries the method and (the first 64 bytes of) the
/// path, never a header, query or body.
///
/// A tower layer of its own rather than `middleware::from_fn`, which boxes
/// a future and clones the inner service on every request: this runs on
/// every route, the hot ones included.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestSpanLayer;

impl<S> tower::Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSpan { inner }
    }
}

/// The service of [`RequestSpanLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestSpan<S> {
    inner: S,
}

impl<S, B> tower::Service<axum::http::Request<B>> for RequestSpan<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequestSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID) {
            Some(v) if is_sane_request_id(v.as_bytes()) => v.clone(),
            // Shared bytes: the two copies below are reference counts.
            _ => HeaderValue::from_maybe_shared(Bytes::from_owner(new_request_id()))
                .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
        };
        // Handlers (and the host's layers inside ours) see the id in force.
        req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
        let path = req.uri().path();
        let path = path.get(..MAX_SPAN_PATH.min(path.len())).unwrap_or("");
        let span = tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or(""),
            method = %req.method(),
            path,
        );
        // The clock is read only when the "answered" line would be written.
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        let inner = span.in_scope(|| self.inner.call(req));
        RequestSpanFuture {
            inner,
            span,
            id: Some(id),
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestSpan`]: the inner future polled in
    /// the request's span, the id set on its response.
    pub(crate) struct RequestSpanFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        id: Option<HeaderValue>,
        started: Option<Instant>,
    }
}

impl<F, E> Future for RequestSpanFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut resp = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(resp)) => resp,
        };
        if let Some(started) = this.started {
            tracing::debug!(
                status = resp.status().as_u16(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "answered"
            );
        }
        if let Some(id) = this.id.take() {
            resp.headers_mut().insert(REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(resp))
    }
}

/// Counts a request of one route (its metrics resolved when the router was
/// built) once its response head is ready.
pub(crate) async fn track(
    State(metrics): State<Arc<RouteMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let resp = next.run(req).await;
    let shed = resp.extensions().get::<ShedReason>().copied();
    metrics.record(
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
        shed,
    );
    resp
}

/// `r` behind the metrics layer of `route`, when metrics are on (else `r`
/// as it is: no layer, no cost).
pub(crate) fn metered<S: Clone + Send + Sync + 'static>(
    auth: &WalletAuth,
    route: &'static str,
    r: axum::routing::MethodRouter<S>,
) -> axum::routing::MethodRouter<S> {
    match auth.metrics() {
        Some(m) => r.layer(axum::middleware::from_fn_with_state(
            Arc::new(m.route(route)),
            track,
        )),
        None => r,
    }
}

struct OpsState {
    auth: WalletAuth,
}

async fn live() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn ready(State(ops): State<Arc<OpsState>>) -> Response {
    let readiness = ops.auth.readiness().await;
    let (status, word) = if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = serde_json::json!({ "status": word, "checks": readiness.checks });
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn discovery(State(ops): State<Arc<OpsState>>) -> Response {
    let mut resp = Json(ops.auth.discovery()).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

async fn metrics(State(ops): State<Arc<OpsState>>) -> Response {
    match ops.auth.render_metrics().await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::ops::metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        None => super::error::detail(StatusCode::NOT_FOUND, "metrics are off"),
    }
}

/// `{prefix}/openapi.json`'s handler over the document built once.
pub(crate) fn openapi_route<S: Clone + Send + Sync + 'static>(
    auth: &WalletAuth,
) -> axum::routing::MethodRouter<S> {
    let c = auth.config();
    let body = serde_json::to_vec(&super::openapi::document(&c.issuer, &c.route_prefix))
        .map(Bytes::from)
        .unwrap_or_default();
    get(move || {
        let body = body.clone();
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
    })
}

impl WalletAuth {
    /// The rooted operating routes of SPEC 11, for the host to merge at
    /// the root of its main listener: `GET /health/live`,
    /// `GET /health/ready` (503 naming the failed check) and
    /// `GET /.well-known/openid-configuration`. Every request runs in a
    /// request-id span, as on [`router`](WalletAuth::router).
    pub fn ops_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let state = Arc::new(OpsState { auth: self.clone() });
        let route = |path: &'static str, r| metered(self, path, r);
        Router::new()
            .route(HEALTH_LIVE, route(HEALTH_LIVE, get(live)))
            .route(HEALTH_READY, route(HEALTH_READY, get(ready)))
            .route(DISCOVERY, route(DISCOVERY, get(discovery)))
            .method_not_allowed_fallback(super::handlers::method_not_allowed)
            .with_state(state)
            .layer(RequestSpanLayer)
    }

    /// `GET /metrics`: Prometheus text (version 0.0.4), for a listener of
    /// its own (`metrics_listen`; the standalone server binds it, on
    /// loopback by default). `404` when metrics are off.
    pub fn metrics_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let state = Arc::new(OpsState { auth: self.clone() });
        Router::new()
            .route(METRICS_PATH, get(metrics))
            .method_not_allowed_fallback(super::handlers::method_not_allowed)
            .with_state(state)
            .layer(RequestSpanLayer)
    }
}
