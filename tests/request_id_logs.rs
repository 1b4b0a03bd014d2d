//! The request span in the logs: it carries the request id, and no token
//! reaches a log line. Alone in its binary: a thread-local subscriber sees
//! every callsite only when no other test registers them first.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

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
