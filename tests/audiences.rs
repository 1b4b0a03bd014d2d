//! Audience-scoped tokens (SPEC 2): `/sign-in`, `/login` and
//! `/fleet/sessions` mint for one of the configured `audiences` when asked,
//! refresh carries the audience forward, an unknown audience is a 400, and a
//! token minted for one service is refused by another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{app, claims_of, fleet, TestApp, Wallet, FLEET_SECRET};
use serde_json::{json, Value};
use wallet_auth::AuthConfig;

const PASSWORD: &str = "audience-test-password";

fn config() -> AuthConfig {
    AuthConfig {
        audiences: vec!["orders-api".into(), "billing-api".into()],
        fleet_mint_secret: FLEET_SECRET.into(),
        auto_create_admin: true,
        admin_password: Some(PASSWORD.into()),
        ..AuthConfig::default()
    }
}

/// What a downstream service configured for `audience` decides about a
/// token: validated as any RFC 7519 library would (pico-client-auth's
/// checks: RS256 over our JWKS, `iss`, `aud`, `exp`).
fn accepted_by(app: &TestApp, token: &str, audience: &str) -> bool {
    let jwk = &app.auth.jwks()[0];
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk.n.as_deref().unwrap(),
        jwk.e.as_deref().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&["http://localhost:8100"]);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
}

#[tokio::test]
async fn a_sign_in_for_an_audience_mints_for_it_and_refresh_keeps_it() {
    let app = app(config());
    let wallet = Wallet::generate("Ed25519");
    let mut body = app.sign_in_body(&wallet).await;
    body["audience"] = json!("orders-api");
    let r = app.post("/sign-in", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["aud"], "orders-api");
    assert!(accepted_by(&app, access, "orders-api"));
    assert!(
        !accepted_by(&app, access, "billing-api"),
        "another service refuses it"
    );
    assert!(!accepted_by(&app, access, "pico"));

    let refreshed = app
        .post(
            "/refresh",
            json!({ "refresh_token": r.body["refresh_token"] }),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let next = refreshed.body["access_token"].as_str().unwrap();
    assert_eq!(
        claims_of(next)["aud"],
        "orders-api",
        "refresh carries it forward"
    );
    // And the next refresh too.
    let again = app
        .post(
            "/refresh",
            json!({ "refresh_token": refreshed.body["refresh_token"] }),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(
        claims_of(again.body["access_token"].as_str().unwrap())["aud"],
        "orders-api"
    );

    // Without one: the default audience, as in pico.
    let plain = app.sign_in(&wallet).await;
    assert_eq!(
        claims_of(plain["access_token"].as_str().unwrap())["aud"],
        "pico"
    );
}

#[tokio::test]
async fn an_unknown_audience_is_a_400_that_burns_no_challenge() {
    let app = app(config());
    let wallet = Wallet::generate("Ed25519");
    let mut body = app.sign_in_body(&wallet).await;
    for bad in [json!("payments-api"), json!(""), json!("ORDERS-API")] {
        body["audience"] = bad.clone();
        let r = app.post("/sign-in", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            r.detail(),
            format!("audience not allowed: {}", bad.as_str().unwrap())
        );
    }
    body["audience"] = json!(7);
    let r = app.post("/sign-in", body.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.detail(), "audience must be a string");
    // The challenge is still good.
    body["audience"] = json!("billing-api");
    let r = app.post("/sign-in", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "audience": "nope" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.detail(), "audience not allowed: nope");
    let r = app
        .post(
            "/login",
            json!({ "email": "admin@pico.local", "password": PASSWORD, "audience": "nope" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.detail(), "audience not allowed: nope");
}

#[tokio::test]
async fn login_and_fleet_sessions_mint_for_the_audience_asked_for() {
    let app = app(config());
    let r = app
        .post(
            "/login",
            json!({ "email": "admin@pico.local", "password": PASSWORD, "audience": "billing-api" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let admin = r.body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(admin)["aud"], "billing-api");
    let refreshed = app
        .post(
            "/refresh",
            json!({ "refresh_token": r.body["refresh_token"] }),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(
        claims_of(refreshed.body["access_token"].as_str().unwrap())["aud"],
        "billing-api"
    );

    let svc = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "role": "service", "audience": "orders-api" }),
    )
    .await;
    assert_eq!(svc.status, StatusCode::OK, "{}", svc.body);
    let svc = svc.body["session_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&svc)["aud"], "orders-api");
    assert!(accepted_by(&app, &svc, "orders-api"));
    assert!(!accepted_by(&app, &svc, "billing-api"));

    // The router's own gates accept every audience it mints for: the
    // orders-api service reads the feed with its token.
    let r = app.get("/revoked-jtis", Some(&svc)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_host_route_accepts_the_default_audience_only() {
    use axum::routing::get;
    use tower::ServiceExt;
    let app = app(config());
    async fn me(claims: wallet_auth::http::Claims) -> String {
        claims.0.aud
    }
    let host = axum::Router::new()
        .route("/me", get(me))
        .with_state(app.auth.clone());
    let svc = |aud: Option<&str>| {
        let mut body = json!({ "session_id": "s", "agent_id": "a" });
        if let Some(a) = aud {
            body["audience"] = json!(a);
        }
        body
    };
    for (aud, want) in [
        (None, StatusCode::OK),
        (Some("orders-api"), StatusCode::UNAUTHORIZED),
    ] {
        let r = fleet(&app, svc(aud)).await;
        let token = r.body["session_token"].as_str().unwrap();
        let req = axum::http::Request::get("/me")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = host.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), want, "{aud:?}");
    }
}

#[test]
fn an_audience_name_must_be_a_name() {
    for bad in ["", " orders", "a\nb"] {
        let config = AuthConfig {
            audiences: vec![bad.into()],
            ..AuthConfig::default()
        };
        let e = config.validate().unwrap_err();
        assert!(e.to_string().contains("audiences"), "{e}");
    }
    assert!(config().validate().is_ok());
}
