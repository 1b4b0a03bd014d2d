//! `/health/live` and `/health/ready` (SPEC 11): a check per store, 503
//! naming the failed check while the revocation file's directory is gone
//! (replaced by a file: root ignores permission bits, not that), 200 again
//! once it is back; with Redis stopped, 503 within the readiness bound.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use wallet_auth::AuthConfig;

async fn get(router: &Router, path: &str) -> (StatusCode, Value) {
    let resp = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn live_and_ready_answer_ok_with_a_check_per_store() {
    let app = common::default_app();
    let ops = app.auth.ops_router();
    let (status, body) = get(&ops, "/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
    let (status, body) = get(&ops, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    for check in ["challenges", "revocations", "mint_audit", "signing_keys"] {
        assert_eq!(body["checks"][check], "ok", "{check}: {body}");
    }
}

#[tokio::test]
async fn ready_is_503_naming_the_revocation_store_while_its_directory_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("revocations");
    let app = common::app(AuthConfig {
        revocation_store_path: store_dir.join("revoked.jsonl").to_string_lossy().into(),
        mint_audit_path: dir
            .path()
            .join("audit/mints.jsonl")
            .to_string_lossy()
            .into(),
        ..AuthConfig::default()
    });
    let ops = app.auth.ops_router();
    let (status, body) = get(&ops, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The directory becomes unusable: moved away, a file in its place.
    let moved = dir.path().join("revocations.moved");
    std::fs::rename(&store_dir, &moved).unwrap();
    std::fs::write(&store_dir, b"not a directory").unwrap();
    let (status, body) = get(&ops, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    let reason = body["checks"]["revocations"].as_str().unwrap();
    assert!(reason.contains("not a directory"), "{reason}");
    // The other checks still pass, so the failed one is the one named.
    assert_eq!(body["checks"]["mint_audit"], "ok", "{body}");
    assert_eq!(body["checks"]["signing_keys"], "ok", "{body}");
    // Liveness does not depend on the stores.
    assert_eq!(get(&ops, "/health/live").await.0, StatusCode::OK);

    // Fixed: ready again, and revocations are durable again.
    std::fs::remove_file(&store_dir).unwrap();
    std::fs::rename(&moved, &store_dir).unwrap();
    let (status, body) = get(&ops, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!store_dir.join("revoked.jsonl.ready-probe").exists());
}

#[tokio::test]
async fn ready_is_503_when_the_directory_is_removed() {
    // A directory that is removed outright (the file with it).
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("gone");
    let app = common::app(AuthConfig {
        revocation_store_path: store_dir.join("revoked.jsonl").to_string_lossy().into(),
        ..AuthConfig::default()
    });
    let ops = app.auth.ops_router();
    std::fs::remove_dir_all(&store_dir).unwrap();
    let (status, body) = get(&ops, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["checks"]["revocations"]
            .as_str()
            .unwrap()
            .contains("gone"),
        "{body}"
    );
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use std::sync::Arc;
    use wallet_auth::{RedisOptions, RedisStores};

    #[tokio::test]
    async fn ready_is_503_within_its_bound_when_redis_stops() {
        let Some(mut redis) = common::redis_server::RedisServer::start(
            "health::ready_is_503_within_its_bound_when_redis_stops",
        ) else {
            return;
        };
        let options = RedisOptions {
            key_prefix: common::redis_server::unique_prefix("health"),
            // A slow op timeout: the readiness bound (1 s) still holds.
            op_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let stores = RedisStores::connect(&redis.url(), options).await.unwrap();
        let revocations = stores.revocations().await.unwrap();
        let app = common::app_with(AuthConfig::default(), |b| {
            b.with_challenge_store(Arc::new(stores.challenges()))
                .with_revocation_store(Arc::new(revocations))
                .with_mint_audit_store(Arc::new(stores.mint_audit(100)))
        });
        let ops = app.auth.ops_router();
        let (status, body) = get(&ops, "/health/ready").await;
        assert_eq!(status, StatusCode::OK, "{body}");

        redis.kill();
        let started = Instant::now();
        let (status, body) = get(&ops, "/health/ready").await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            took < wallet_auth::ops::READY_TIMEOUT + Duration::from_millis(500),
            "took {took:?}"
        );
        for check in ["challenges", "revocations", "mint_audit"] {
            let reason = body["checks"][check].as_str().unwrap();
            assert_ne!(reason, "ok", "{check}: {body}");
        }
        assert_eq!(body["checks"]["signing_keys"], "ok");

        redis.restart();
        // Reconnecting takes the connection manager a moment: bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = get(&ops, "/health/ready").await;
            if status == StatusCode::OK {
                break;
            }
            assert!(Instant::now() < deadline, "still not ready: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
