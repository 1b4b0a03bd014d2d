//! Request ids (SPEC 11): every route, the SSE stream, POST /revoke, a 405
//! and the operating routes included, runs in one span with a request id:
//! the client's `X-Request-Id` when sane, else a new one; echoed back. No
//! token ever reaches a log line.

mod common;

use std::sync::{Arc, Mutex};

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

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_span_carries_the_id_and_never_a_token() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = common::default_app();
    let operator = common::token_with_role(&app, "operator");
    let r = app
        .post_with(
            "/revoke",
            serde_json::json!({ "jti": "jti-under-test" }),
            &[
                ("authorization", &format!("Bearer {operator}")),
                ("x-request-id", "trace-me-7"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["x-request-id"], "trace-me-7");
    // The SSE stream too (refused here: no token).
    let r = app.get("/revoked-jtis/stream", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("x-request-id"));
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(r#"request_id="trace-me-7""#), "{logs}");
    assert!(logs.contains("revoked"), "{logs}");
    let signature = operator.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(signature),
        "a token reached the logs:\n{logs}"
    );
}
