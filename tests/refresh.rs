//! `POST /refresh`, refresh-token rotation, through the real router: a
//! refresh rotates and keeps the role and family, expires, is never a
//! Bearer token, dies when revoked, kills its family when replayed (also
//! across a restart of the standalone server), and of concurrent refreshes
//! of one token exactly one succeeds.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::server::{Http, Server};
use common::{app, claims_of, default_app, TestApp, Wallet};
use serde_json::{json, Value};
use wallet_auth::AuthConfig;

const SECRET: &str = "fleet-secret-for-tests";

fn fleet_app() -> TestApp {
    app(AuthConfig {
        fleet_mint_secret: SECRET.into(),
        ..Default::default()
    })
}

async fn fleet(app: &TestApp, body: Value) -> common::Reply {
    app.post_with("/fleet/sessions", body, &[("x-fleet-secret", SECRET)])
        .await
}

async fn operator_token(app: &TestApp) -> String {
    common::token_with_role(app, "operator")
}

async fn post_bearer(app: &TestApp, path: &str, body: Value, token: &str) -> common::Reply {
    let h = format!("Bearer {token}");
    app.post_with(path, body, &[("authorization", h.as_str())])
        .await
}

/// The standalone server's environment for the restart test.
const ENV: [(&str, &str); 3] = [
    ("SERVER_AUTH_AUTO_CREATE_ADMIN", "true"),
    ("SERVER_AUTH_ADMIN_PASSWORD", "durability-test-password"),
    ("SERVER_AUTH_FLEET_MINT_SECRET", "durability-fleet"),
];

#[tokio::test]
async fn refresh_rotates_and_carries_the_role() {
    let app = default_app();
    let wallet = Wallet::generate("Ed25519");
    let s = app.sign_in(&wallet).await;
    let r = app
        .post("/refresh", json!({ "refresh_token": s["refresh_token"] }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let access = app
        .auth
        .tokens()
        .validate_access(r.body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(access.sub, wallet.address());
    assert_eq!(access.role, "wallet");
    let next = r.body["refresh_token"].as_str().unwrap();
    assert_ne!(next, s["refresh_token"].as_str().unwrap());
    assert_eq!(claims_of(next)["role"], "wallet");
    assert_eq!(
        claims_of(next)["fam"],
        claims_of(s["refresh_token"].as_str().unwrap())["fam"]
    );

    for (body, detail) in [
        (json!({}), "refresh_token required"),
        (json!({ "refresh_token": "" }), "refresh_token required"),
        (
            json!({ "refresh_token": 5 }),
            "refresh_token must be a string",
        ),
    ] {
        let r = app.post("/refresh", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.detail(), detail);
    }
    for junk in ["junk", "a.b.c", s["access_token"].as_str().unwrap()] {
        let r = app.post("/refresh", json!({ "refresh_token": junk })).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{junk}");
        assert!(
            r.detail().starts_with("refresh invalid: "),
            "{}",
            r.detail()
        );
    }
}

#[tokio::test]
async fn refresh_expired() {
    let app = default_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    app.clock.advance(Duration::from_secs(7 * 86_400 + 1));
    let r = app
        .post("/refresh", json!({ "refresh_token": s["refresh_token"] }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.detail(), "refresh expired");
}

#[tokio::test]
async fn a_refresh_token_is_never_a_bearer_token() {
    let app = default_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let r = app
        .get("/revoked-jtis", Some(s["refresh_token"].as_str().unwrap()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(app
        .auth
        .tokens()
        .validate_access(s["refresh_token"].as_str().unwrap())
        .is_err());
}

#[tokio::test]
async fn refresh_token_used_twice_revokes_the_family() {
    let app = common::default_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let first = s["refresh_token"].as_str().unwrap().to_string();
    let r = app
        .post("/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let second = r.body["refresh_token"].as_str().unwrap().to_string();

    // Replaying the spent token is refused...
    let r = app
        .post("/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.detail().starts_with("refresh invalid: "),
        "{}",
        r.detail()
    );
    // ...and the family's newest token dies with it.
    let r = app
        .post("/refresh", json!({ "refresh_token": second }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.detail(), "refresh invalid: token family revoked");

    // Another login's family is untouched.
    let other = app.sign_in(&Wallet::generate("Ed25519")).await;
    assert_eq!(
        app.post(
            "/refresh",
            json!({ "refresh_token": other["refresh_token"] })
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_is_refused() {
    let app = fleet_app();
    let op = operator_token(&app).await;
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let jti = claims_of(s["refresh_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post_bearer(&app, "/revoke", json!({ "jti": jti }), &op)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .post("/refresh", json!({ "refresh_token": s["refresh_token"] }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.detail(), "refresh invalid: token revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_yield_one_success() {
    let app = std::sync::Arc::new(common::default_app());
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let body = json!({ "refresh_token": s["refresh_token"] });
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.post("/refresh", body).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn rotation_bookkeeping_is_not_served_to_consumers() {
    let app = fleet_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let first = s["refresh_token"].clone();
    app.post("/refresh", json!({ "refresh_token": first }))
        .await;
    app.post("/refresh", json!({ "refresh_token": first }))
        .await; // reuse: family revoked
    let svc = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "role": "service" }),
    )
    .await;
    let r = app
        .get("/revoked-jtis", svc.body["session_token"].as_str())
        .await;
    assert_eq!(r.body, json!({ "items": [] }));
}

/// One-time refresh rotation holds across a restart: a spent refresh token
/// replayed after the restart is refused and takes its family with it.
#[tokio::test]
async fn refresh_rotation_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &ENV);
    let s = Http::new(&server.base)
        .sign_in(&Wallet::generate("secp256k1"))
        .await;
    let (status, next) = Http::new(&server.base)
        .post(
            "/refresh",
            json!({ "refresh_token": s["refresh_token"] }),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    server.kill();

    let server = Server::start(dir.path(), &[], &ENV);
    let http = Http::new(&server.base);
    let (status, body) = http
        .post(
            "/refresh",
            json!({ "refresh_token": s["refresh_token"] }),
            &[],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = http
        .post(
            "/refresh",
            json!({ "refresh_token": next["refresh_token"] }),
            &[],
        )
        .await;
    assert_eq!(status, 401, "the family's newest token dies too: {body}");
    assert_eq!(body["detail"], "refresh invalid: token family revoked");
}
