//! Forged and tampered tokens on every route that takes a Bearer token
//! (`/revoke`, `/revoked-jtis`, `/mints`). Every attack is answered 401 with
//! a non-empty `detail`, and a control shows the same route accepts the
//! honest token, so each refusal is the attack's doing. (The same attacks on
//! `/refresh` are in `tests/refresh.rs`.)
//!
//! Attack tokens are built by hand in `common::forge`.

mod common;

use axum::http::StatusCode;
use common::forge::{
    attacker_key, b64json, honest_operator, junk_tokens, now, operator_claims, our_key,
    public_key_secrets, rs_header, signed, ISS,
};
use common::{app, claims_of, header_of, Reply, TestApp, Wallet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use wallet_auth::AuthConfig;

const SECRET: &str = "fleet-secret-for-tests";

fn fleet_app() -> TestApp {
    wallet_auth::install_crypto_provider();
    app(AuthConfig {
        fleet_mint_secret: SECRET.into(),
        ..Default::default()
    })
}

/// The same claims as [`honest_operator`] with one claim changed (or removed
/// when `value` is null), still signed by our key under our kid.
fn operator_with(app: &TestApp, claim: &str, value: Value) -> String {
    let kid = app.auth.tokens().kid().to_string();
    let mut claims = operator_claims(app);
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(claim);
    } else {
        claims[claim] = value;
    }
    signed(&rs_header(&kid), &claims, &our_key(), Algorithm::RS256)
}

async fn call(app: &TestApp, route: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    let h = [("authorization", bearer.as_str())];
    match route {
        "/revoke" => {
            app.post_with(
                "/revoke",
                json!({ "jti": "0123456789abcdef0123456789abcdef" }),
                &h,
            )
            .await
        }
        "/revoked-jtis" => app.raw("GET", "/revoked-jtis", Vec::new(), &h).await,
        "/mints" => app.raw("GET", "/mints", Vec::new(), &h).await,
        other => unreachable!("{other}"),
    }
}

const BEARER_ROUTES: [&str; 3] = ["/revoke", "/revoked-jtis", "/mints"];

async fn refused(app: &TestApp, route: &str, what: &str, token: &str) {
    common::forge::assert_refused(&call(app, route, token).await, route, what);
}

async fn refused_everywhere(app: &TestApp, what: &str, token: &str) {
    for route in BEARER_ROUTES {
        refused(app, route, what, token).await;
    }
}

#[tokio::test]
async fn control_the_honest_operator_token_passes_every_bearer_route() {
    let app = fleet_app();
    let token = honest_operator(&app);
    for route in BEARER_ROUTES {
        let r = call(&app, route, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{route}: {}", r.body);
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = fleet_app();
    let kid = app.auth.tokens().kid().to_string();
    let claims = operator_claims(&app);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": kid });
        let unsigned = format!("{}.{}", b64json(&header), b64json(&claims));
        refused_everywhere(
            &app,
            &format!("alg {alg}, empty sig"),
            &format!("{unsigned}."),
        )
        .await;
        refused_everywhere(&app, &format!("alg {alg}, no sig"), &unsigned).await;
        // A real RS256 signature kept under an alg-none header.
        let good = honest_operator(&app);
        let sig = good.rsplit('.').next().unwrap();
        refused_everywhere(
            &app,
            &format!("alg {alg}, stale sig"),
            &format!("{unsigned}.{sig}"),
        )
        .await;
    }
}

#[tokio::test]
async fn hs256_keyed_with_our_public_key_is_refused() {
    let app = fleet_app();
    let kid = app.auth.tokens().kid().to_string();
    let claims = operator_claims(&app);
    for (what, secret) in public_key_secrets(&app) {
        let key = EncodingKey::from_secret(&secret);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": kid });
            let token = signed(&header, &claims, &key, alg);
            refused_everywhere(&app, &format!("{alg:?} keyed with {what}"), &token).await;
        }
    }
}

#[tokio::test]
async fn another_rsa_key_with_our_kid_is_refused() {
    let app = fleet_app();
    let kid = app.auth.tokens().kid().to_string();
    let claims = operator_claims(&app);
    let token = signed(&rs_header(&kid), &claims, &attacker_key(), Algorithm::RS256);
    refused_everywhere(&app, "attacker RS256 under our kid", &token).await;
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": kid });
        // With the attacker's key and with ours: only RS256 is accepted.
        for key in [attacker_key(), our_key()] {
            let token = signed(&header, &claims, &key, alg);
            refused_everywhere(&app, &format!("{alg:?}"), &token).await;
        }
    }
}

#[tokio::test]
async fn unknown_or_missing_kid_is_refused() {
    let app = fleet_app();
    let claims = operator_claims(&app);
    for kid in ["", "unknown", "../../etc/passwd", "0"] {
        let token = signed(&rs_header(kid), &claims, &our_key(), Algorithm::RS256);
        refused_everywhere(&app, &format!("kid {kid:?}"), &token).await;
    }
    let header = json!({ "alg": "RS256", "typ": "JWT" });
    let token = signed(&header, &claims, &our_key(), Algorithm::RS256);
    refused_everywhere(&app, "no kid", &token).await;
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": 7 });
    let token = signed(&header, &claims, &our_key(), Algorithm::RS256);
    refused_everywhere(&app, "numeric kid", &token).await;
}

#[tokio::test]
async fn missing_expired_and_wrong_claims_are_refused() {
    let app = fleet_app();
    let t = now(&app);
    let cases = [
        ("missing exp", "exp", Value::Null),
        ("expired", "exp", json!(t - 1)),
        ("expiring now", "exp", json!(t)),
        ("exp as string", "exp", json!((t + 3600).to_string())),
        ("exp negative", "exp", json!(-1)),
        ("exp float", "exp", json!(1e300)),
        ("wrong iss", "iss", json!("https://evil.example")),
        ("iss with trailing slash", "iss", json!(format!("{ISS}/"))),
        ("missing iss", "iss", Value::Null),
        ("wrong aud", "aud", json!("not-pico")),
        ("aud list without ours", "aud", json!(["other"])),
        ("missing aud", "aud", Value::Null),
        ("missing sub", "sub", Value::Null),
        ("missing jti", "jti", Value::Null),
        ("empty jti", "jti", json!("")),
        ("refresh type claim", "type", json!("refresh")),
    ];
    for (what, claim, value) in cases {
        let token = operator_with(&app, claim, value);
        refused_everywhere(&app, what, &token).await;
    }
    // The honest token, once the clock passes its exp.
    let token = honest_operator(&app);
    app.clock.advance(std::time::Duration::from_secs(3600));
    refused_everywhere(&app, "expired by the clock", &token).await;
}

#[tokio::test]
async fn a_refresh_token_is_refused_as_a_bearer_token() {
    let app = fleet_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    refused_everywhere(&app, "refresh token", s["refresh_token"].as_str().unwrap()).await;
    // A refresh token claiming the operator role, signed by our RSA key with
    // our kid: the `type` claim alone must keep it out.
    let mut claims = operator_claims(&app);
    claims["type"] = json!("refresh");
    claims["fam"] = json!(wallet_auth::token::new_jti());
    let kid = app.auth.tokens().kid().to_string();
    let header = json!({ "alg": "RS256", "typ": "refresh+jwt", "kid": kid });
    let token = signed(&header, &claims, &our_key(), Algorithm::RS256);
    refused_everywhere(&app, "RS256 refresh+jwt", &token).await;
}

#[tokio::test]
async fn a_fleet_token_with_a_forged_role_is_refused() {
    let app = fleet_app();
    let r = app
        .post_with(
            "/fleet/sessions",
            json!({ "session_id": "s1", "agent_id": "a1", "role": "service" }),
            &[("x-fleet-secret", SECRET)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let real = r.body["session_token"].as_str().unwrap().to_string();
    // Control: the real service token reads the denylist.
    assert_eq!(
        call(&app, "/revoked-jtis", &real).await.status,
        StatusCode::OK
    );
    let parts: Vec<&str> = real.split('.').collect();
    for role in ["operator", "admin", "Operator"] {
        let mut claims = claims_of(&real);
        claims["role"] = json!(role);
        let forged = format!("{}.{}.{}", parts[0], b64json(&claims), parts[2]);
        refused_everywhere(&app, &format!("fleet role forged to {role}"), &forged).await;
    }
    // Same claims, header rewritten (kid dropped): the signature no longer covers it.
    let mut header = header_of(&real);
    header.as_object_mut().unwrap().remove("kid");
    let forged = format!("{}.{}.{}", b64json(&header), parts[1], parts[2]);
    refused_everywhere(&app, "header rewritten", &forged).await;
}

#[tokio::test]
async fn a_revoked_jti_is_refused() {
    let app = fleet_app();
    let admin = honest_operator(&app);
    let victim = honest_operator(&app);
    let jti = claims_of(&victim)["jti"].as_str().unwrap().to_string();
    let h = format!("Bearer {admin}");
    let r = app
        .post_with(
            "/revoke",
            json!({ "jti": jti }),
            &[("authorization", h.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    refused_everywhere(&app, "revoked jti", &victim).await;
    // The token that revoked it still works.
    assert_eq!(call(&app, "/mints", &admin).await.status, StatusCode::OK);
}

#[tokio::test]
async fn junk_truncated_and_over_long_tokens_are_refused() {
    let app = fleet_app();
    let good = honest_operator(&app);
    for (what, token) in junk_tokens(&good) {
        refused_everywhere(&app, &what, &token).await;
    }
}
