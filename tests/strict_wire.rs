//! Strict request edges through the real router: the content type of JSON
//! bodies, `algorithm` that is not a string, fleet `ttl: 0` and missing ids,
//! a `/revoke` whose `exp` has passed, non-canonical Ed25519 keys.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, claims_of, default_app, TestApp, Wallet, PREFIX};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use wallet_auth::clock::Clock;
use wallet_auth::AuthConfig;

const SECRET: &str = "fleet-secret-for-strict-wire-tests";

/// POSTs `body` with exactly the given `Content-Type` (none when `None`).
async fn post_typed(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("{PREFIX}{path}"))
        .header("x-fleet-secret", SECRET);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn fleet_app() -> TestApp {
    app(AuthConfig {
        fleet_mint_secret: SECRET.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn a_json_body_needs_a_json_content_type() {
    let app = fleet_app();
    let address = Wallet::generate("Ed25519").address();
    let body = json!({ "address": address });
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let (status, reply) = post_typed(&app, "/challenge", ct, &body).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(reply["detail"], "Content-Type must be application/json");
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/problem+json",
        "application/vnd.api+json; charset=utf-8",
    ] {
        let (status, reply) = post_typed(&app, "/challenge", Some(ct), &body).await;
        assert_eq!(status, StatusCode::OK, "{ct}: {reply}");
    }
    // Every body-taking route refuses it, not only /challenge.
    for path in ["/sign-in", "/refresh", "/login", "/fleet/sessions"] {
        let (status, reply) = post_typed(&app, path, Some("text/plain"), &json!({})).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path}: {reply}"
        );
        assert_eq!(reply["detail"], "Content-Type must be application/json");
    }
}

#[tokio::test]
async fn an_algorithm_that_is_not_a_string_is_refused() {
    let app = default_app();
    let wallet = Wallet::generate("ML-DSA-65");
    for (value, shown) in [
        (Value::Null, "null"),
        (json!(5), "5"),
        (json!(true), "true"),
        (json!(["Ed25519"]), "[\"Ed25519\"]"),
    ] {
        let mut body = app.sign_in_body(&wallet).await;
        body["algorithm"] = value;
        let r = app.post("/sign-in", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.detail(), format!("unsupported wallet algorithm: {shown}"));
        // Refused before the challenge was used: the same body with the
        // algorithm named signs in.
        body["algorithm"] = json!("ML-DSA-65");
        assert_eq!(app.post("/sign-in", body).await.status, StatusCode::OK);
    }
    // Absent still means ML-DSA-65.
    let mut body = app.sign_in_body(&wallet).await;
    body.as_object_mut().unwrap().remove("algorithm");
    assert_eq!(app.post("/sign-in", body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn fleet_ttl_zero_means_the_configured_default() {
    let app = fleet_app();
    let ttl = AuthConfig::default().fleet_session_ttl_seconds;
    for extra in [json!({ "ttl": 0 }), json!({ "ttl": null }), json!({})] {
        let mut body = json!({ "session_id": "s1", "agent_id": "a1" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, reply) =
            post_typed(&app, "/fleet/sessions", Some("application/json"), &body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let claims = claims_of(reply["session_token"].as_str().unwrap());
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, ttl, "{body}");
    }
    // A small positive ttl is still clamped up to the minimum of 60 s.
    let body = json!({ "session_id": "s1", "agent_id": "a1", "ttl": 1 });
    let (_, reply) = post_typed(&app, "/fleet/sessions", Some("application/json"), &body).await;
    let claims = claims_of(reply["session_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
}

#[tokio::test]
async fn fleet_needs_both_ids() {
    let app = fleet_app();
    for body in [
        json!({}),
        json!({ "agent_id": "a1" }),
        json!({ "session_id": "s1" }),
        json!({ "session_id": "", "agent_id": "a1" }),
        json!({ "session_id": "s1", "agent_id": "" }),
        json!({ "session_id": null, "agent_id": "a1" }),
    ] {
        let (status, reply) =
            post_typed(&app, "/fleet/sessions", Some("application/json"), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            reply["detail"], "session_id and agent_id required",
            "{body}"
        );
    }
}

#[tokio::test]
async fn revoke_with_an_exp_in_the_past_is_refused() {
    let app = default_app();
    let op = common::token_with_role(&app, "operator");
    let bearer = format!("Bearer {op}");
    let now = app.clock.now_secs();
    for exp in [now - 1, now, 1] {
        let r = app
            .post_with(
                "/revoke",
                json!({ "jti": "old-token", "exp": exp }),
                &[("authorization", bearer.as_str())],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{exp}: {}", r.body);
        assert_eq!(r.detail(), "exp is in the past");
    }
    // Nothing was stored; a future exp is accepted and served.
    let r = app
        .post_with(
            "/revoke",
            json!({ "jti": "old-token", "exp": now + 60 }),
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let poll = app.get("/revoked-jtis", Some(&op)).await;
    assert_eq!(common::item_jtis(&poll.body), vec!["old-token"]);
}

#[tokio::test]
async fn a_non_canonical_ed25519_key_is_refused_before_the_challenge_is_used() {
    let app = default_app();
    // y = p + 3: f0, thirty ff, 7f. Decoding accepts it; it names the same
    // point as the canonical encoding of 3.
    let mut key = [0xffu8; 32];
    key[0] = 0xf0;
    key[31] = 0x7f;
    let address = hex::encode(key);
    let nonce = app.challenge(&address).await;
    let r = app
        .post(
            "/sign-in",
            json!({
                "address": address,
                "public_key": address,
                "signature": "00".repeat(64),
                "challenge": nonce,
                "algorithm": "Ed25519",
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.detail(), "invalid public_key for Ed25519");
}
