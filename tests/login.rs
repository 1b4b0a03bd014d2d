//! `POST /login`, the bootstrap admin's password login, through the real
//! router: operator tokens, wrong credentials, the lock-out per (email, client
//! IP) that strangers elsewhere cannot trigger, and the bound on argon2 work
//! under concurrent guessing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{app, app_with, TestApp, PREFIX};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tower::ServiceExt;
use wallet_auth::password::LoginLimits;
use wallet_auth::AuthConfig;

fn login_app() -> TestApp {
    app(AuthConfig {
        auto_create_admin: true,
        admin_password: Some("correct horse battery staple".into()),
        ..Default::default()
    })
}

#[tokio::test]
async fn login_disabled_by_default() {
    let app = common::default_app();
    let r = app
        .post(
            "/login",
            json!({ "email": "admin@pico.local", "password": "admin" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.detail(), "password login disabled");
}

#[tokio::test]
async fn login_issues_operator_tokens() {
    let app = login_app();
    let r = app
        .post(
            "/login",
            json!({ "email": "admin@pico.local", "password": "correct horse battery staple" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let access = r.body["access_token"].as_str().unwrap();
    let c = app.auth.tokens().validate_access(access).unwrap();
    assert_eq!(c.sub, "admin@pico.local");
    assert_eq!(c.role, "operator");
    // The operator token opens the gated routes.
    assert_eq!(app.get("/mints", Some(access)).await.status, StatusCode::OK);
    // Its refresh token carries the role forward.
    let r = app
        .post(
            "/refresh",
            json!({ "refresh_token": r.body["refresh_token"] }),
        )
        .await;
    let c = app
        .auth
        .tokens()
        .validate_access(r.body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(c.role, "operator");
}

#[tokio::test]
async fn login_wrong_credentials_and_lockout() {
    let app = login_app();
    for body in [
        json!({ "email": "admin@pico.local", "password": "wrong" }),
        json!({ "email": "someone@else", "password": "correct horse battery staple" }),
        json!({ "email": "admin@pico.local" }),
        json!({}),
    ] {
        let r = app.post("/login", body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(r.detail(), "invalid credentials");
    }
    let r = app
        .post("/login", json!({ "email": 1, "password": "x" }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Five failures for the admin email in the window: locked, even with the
    // right password, with a Retry-After.
    for _ in 0..4 {
        app.post(
            "/login",
            json!({ "email": "admin@pico.local", "password": "wrong" }),
        )
        .await;
    }
    let r = app
        .post(
            "/login",
            json!({ "email": "admin@pico.local", "password": "correct horse battery staple" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    app.clock.advance(Duration::from_secs(901));
    let r = app
        .post(
            "/login",
            json!({ "email": "admin@pico.local", "password": "correct horse battery staple" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[test]
fn login_on_without_a_password_is_a_config_error() {
    let err = wallet_auth::WalletAuth::builder(AuthConfig {
        auto_create_admin: true,
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("admin_password"), "{err}");
}

const ADMIN: &str = "admin@pico.local";
const PASSWORD: &str = "correct horse battery staple";

/// A login app whose argon2 verifications `limits.hashes_computed` counts.
fn counted_login_app() -> (TestApp, LoginLimits) {
    let limits = LoginLimits::default();
    let counted = limits.clone();
    let app = app_with(
        AuthConfig {
            auto_create_admin: true,
            admin_password: Some(PASSWORD.into()),
            ..Default::default()
        },
        |builder| builder.with_login_limits(limits),
    );
    (app, counted)
}

/// `POST /login` as if from `peer` (what `wallet_auth::http::serve` puts in
/// the request's extensions).
async fn login_from(
    app: &TestApp,
    peer: &str,
    email: &str,
    password: &str,
) -> (StatusCode, HeaderMap, Value) {
    let peer: SocketAddr = peer.parse().unwrap();
    let body = serde_json::to_vec(&json!({ "email": email, "password": password })).unwrap();
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("{PREFIX}/login"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_from_one_ip_run_argon2_at_most_the_limit() {
    let (app, counted) = counted_login_app();
    let app = std::sync::Arc::new(app);
    let mut guesses = JoinSet::new();
    for i in 0..60 {
        let app = std::sync::Arc::clone(&app);
        guesses.spawn(async move {
            login_from(&app, "127.0.0.1:40000", ADMIN, &format!("guess {i}")).await
        });
    }
    let (mut unauthorized, mut limited) = (0, 0);
    while let Some(answer) = guesses.join_next().await {
        let (status, headers, body) = answer.unwrap();
        match status {
            StatusCode::UNAUTHORIZED => {
                assert_eq!(body["detail"], "invalid credentials");
                unauthorized += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=900).contains(&retry), "{retry}");
                assert!(
                    body["detail"].as_str().unwrap().contains("too many"),
                    "{body}"
                );
                limited += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let hashes = counted.hashes_computed.get();
    println!("60 concurrent wrong passwords: {unauthorized} x 401, {limited} x 429, {hashes} argon2 runs");
    assert!(hashes <= 5, "argon2 ran {hashes} times");
    assert_eq!(unauthorized, hashes);
    assert_eq!(unauthorized + limited, 60);

    // The address is locked out, even with the right password...
    let (status, _, body) = login_from(&app, "127.0.0.1:40001", ADMIN, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        counted.hashes_computed.get(),
        hashes,
        "no argon2 when locked"
    );
    // ...but the admin, from another address, gets in at once.
    let (status, _, body) = login_from(&app, "127.0.0.2:40000", ADMIN, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string());
    assert_eq!(counted.hashes_computed.get(), hashes + 1);
}

#[tokio::test]
async fn failures_elsewhere_do_not_lock_the_admin_out() {
    let (app, counted) = counted_login_app();
    // Four strangers use up their limit for the admin's email...
    for peer in 2..=5 {
        let peer = format!("127.0.0.{peer}:5000");
        for _ in 0..5 {
            let (status, _, _) = login_from(&app, &peer, ADMIN, "wrong").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _, _) = login_from(&app, &peer, ADMIN, PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(counted.hashes_computed.get(), 20);
    // ...and the admin, from its own address, logs in.
    let (status, _, body) = login_from(&app, "127.0.0.1:5000", ADMIN, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Once the window has passed the strangers' addresses may try again.
    app.clock.advance(Duration::from_secs(900));
    let (status, _, _) = login_from(&app, "127.0.0.2:5000", ADMIN, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
