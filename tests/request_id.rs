//! Request ids (SPEC 11): every route, the SSE stream, POST /revoke, a 405
//! and the operating routes included, runs in one span with a request id:
//! the client's `X-Request-Id` when sane, else a new one; echoed back. No
//! token ever reaches a log line.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

async fn echoed(
    router: &Router,
    method: &str,
    path: &str,
    id: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("{method} {path}: no x-request-id"))
        .to_str()
        .unwrap()
        .to_string();
    (resp.status(), id)
}

fn every_path() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = wallet_auth::http::served_routes(common::PREFIX)
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    // A wrong method and an unknown route of the prefix.
    all.push(("DELETE".into(), format!("{}/revoke", common::PREFIX)));
    all
}

#[tokio::test]
async fn every_route_echoes_a_sane_id_and_replaces_an_insane_one() {
    let app = common::app_with(wallet_auth::AuthConfig::default(), |b| b.with_metrics());
    let router = app
        .router
        .clone()
        .merge(app.auth.ops_router())
        .merge(app.auth.metrics_router());
    let long = "a".repeat(129);
    for (method, path) in every_path() {
        let (_, id) = echoed(&router, &method, &path, Some("req-42.abc")).await;
        assert_eq!(id, "req-42.abc", "{method} {path}");
        for bad in [long.as_str(), "has space", ""] {
            let (_, id) = echoed(&router, &method, &path, Some(bad)).await;
            assert_eq!(id.len(), 32, "{method} {path}: {bad:?} -> {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let (_, a) = echoed(&router, &method, &path, None).await;
        let (_, b) = echoed(&router, &method, &path, None).await;
        assert_ne!(a, b, "{method} {path}");
    }
    let (status, _) = echoed(&router, "POST", &format!("{}/revoke", common::PREFIX), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
