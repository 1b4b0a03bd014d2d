//! `POST /refresh`, refresh-token rotation, through the real router: a
//! refresh rotates and keeps the role and family, expires, is never a
//! Bearer token, dies when revoked, kills its family when replayed (also
//! across a restart of the standalone server), and of concurrent refreshes
//! of one token exactly one succeeds. Forged and tampered refresh tokens
//! (other algorithms and keys, wrong or missing claims, access and fleet
//! tokens, junk) are answered 401 with a `detail`, and a hand-made honest
//! refresh token is accepted, so each refusal is the attack's doing.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::forge::{
    attacker_key, b64json, honest_operator, junk_tokens, now, our_key, public_key_secrets, signed,
    AUD, ISS,
};
use common::server::{Http, Server};
use common::{claims_of, default_app, test_key_pem, Reply, TestApp, Wallet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use common::{fleet, fleet_app, operator_token, post_bearer, FLEET_SECRET as SECRET};

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
    let rotated = app
        .post("/refresh", json!({ "refresh_token": first }))
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
    // Served: the family's access tokens (SPEC 10), never the bookkeeping
    // (the used refresh token, the family entry).
    let mut served = common::item_jtis(&r.body);
    served.sort();
    let mut access: Vec<String> = [&s["access_token"], &rotated.body["access_token"]]
        .iter()
        .map(|t| {
            common::claims_of(t.as_str().unwrap())["jti"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    access.sort();
    assert_eq!(served, access);
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

// ------------------------------------------- forged and tampered refresh tokens

async fn call(app: &TestApp, route: &str, token: &str) -> Reply {
    assert_eq!(route, "/refresh");
    app.post("/refresh", json!({ "refresh_token": token }))
        .await
}

async fn refused(app: &TestApp, route: &str, what: &str, token: &str) {
    common::forge::assert_refused(&call(app, route, token).await, route, what);
}

/// The HS256 refresh key, derived as `WalletAuth` derives it from the
/// signing key (HMAC-SHA256 keyed by the label over the PKCS#8 DER). The
/// control test below proves the derivation matches, so the claim tests
/// that use it fail on the claim, not on the signature.
fn refresh_key() -> EncodingKey {
    let pem = test_key_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        b"wallet-auth refresh-token HS256 key v1",
    );
    let tag = aws_lc_rs::hmac::sign(&key, &der);
    EncodingKey::from_secret(tag.as_ref())
}

fn refresh_claims(app: &TestApp) -> Value {
    let t = now(app);
    json!({
        "iss": ISS, "aud": AUD, "sub": "wallet", "iat": t, "exp": t + 86_400,
        "jti": wallet_auth::token::new_jti(), "role": "wallet", "type": "refresh",
        "fam": wallet_auth::token::new_jti(),
    })
}

fn refresh_header() -> Value {
    json!({ "alg": "HS256", "typ": "refresh+jwt" })
}

fn refresh_with(app: &TestApp, claim: &str, value: Value) -> String {
    let mut claims = refresh_claims(app);
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(claim);
    } else {
        claims[claim] = value;
    }
    signed(&refresh_header(), &claims, &refresh_key(), Algorithm::HS256)
}

async fn refresh_refused(app: &TestApp, what: &str, token: &str) {
    refused(app, "/refresh", what, token).await;
}

#[tokio::test]
async fn control_a_hand_made_refresh_token_is_accepted() {
    let app = fleet_app();
    let token = signed(
        &refresh_header(),
        &refresh_claims(&app),
        &refresh_key(),
        Algorithm::HS256,
    );
    let r = call(&app, "/refresh", &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn refresh_refuses_forged_algorithms_and_keys() {
    let app = fleet_app();
    let claims = refresh_claims(&app);
    let kid = app.auth.tokens().kid().to_string();
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "typ": "refresh+jwt" });
        let unsigned = format!("{}.{}", b64json(&header), b64json(&claims));
        refresh_refused(&app, &format!("alg {alg}"), &format!("{unsigned}.")).await;
        refresh_refused(&app, &format!("alg {alg}, no sig"), &unsigned).await;
    }
    for (what, secret) in public_key_secrets(&app) {
        let key = EncodingKey::from_secret(&secret);
        let token = signed(&refresh_header(), &claims, &key, Algorithm::HS256);
        refresh_refused(&app, &format!("HS256 keyed with {what}"), &token).await;
    }
    for (who, key) in [("attacker", attacker_key()), ("our", our_key())] {
        for typ in ["refresh+jwt", "JWT"] {
            let header = json!({ "alg": "RS256", "typ": typ, "kid": kid });
            let token = signed(&header, &claims, &key, Algorithm::RS256);
            refresh_refused(&app, &format!("RS256 by {who} key, typ {typ}"), &token).await;
        }
    }
    // The right key under a kid nobody knows, or under the wrong typ.
    let header = json!({ "alg": "HS256", "typ": "refresh+jwt", "kid": "unknown" });
    let token = signed(
        &header,
        &claims,
        &EncodingKey::from_secret(b"guess"),
        Algorithm::HS256,
    );
    refresh_refused(&app, "unknown kid, guessed secret", &token).await;
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let token = signed(&header, &claims, &refresh_key(), Algorithm::HS256);
    refresh_refused(&app, "typ JWT", &token).await;
    let header = json!({ "alg": "HS512", "typ": "refresh+jwt" });
    let token = signed(&header, &claims, &refresh_key(), Algorithm::HS512);
    refresh_refused(&app, "HS512", &token).await;
}

#[tokio::test]
async fn refresh_refuses_missing_expired_and_wrong_claims() {
    let app = fleet_app();
    let t = now(&app);
    let cases = [
        ("missing exp", "exp", Value::Null),
        ("expired", "exp", json!(t - 1)),
        ("exp as string", "exp", json!((t + 60).to_string())),
        ("wrong iss", "iss", json!("https://evil.example")),
        ("missing iss", "iss", Value::Null),
        ("wrong aud", "aud", json!("not-pico")),
        ("missing aud", "aud", Value::Null),
        ("type access", "type", json!("access")),
        ("missing type", "type", Value::Null),
        ("missing fam", "fam", Value::Null),
        ("empty jti", "jti", json!("")),
    ];
    for (what, claim, value) in cases {
        let token = refresh_with(&app, claim, value);
        refresh_refused(&app, what, &token).await;
    }
    let r = call(&app, "/refresh", &refresh_with(&app, "exp", json!(t - 1))).await;
    assert_eq!(r.detail(), "refresh expired");
    let r = call(&app, "/refresh", &refresh_with(&app, "iss", json!("x"))).await;
    assert!(r.detail().contains("issuer"), "{}", r.body);
    let r = call(&app, "/refresh", &refresh_with(&app, "aud", json!("x"))).await;
    assert!(r.detail().contains("audience"), "{}", r.body);
}

#[tokio::test]
async fn refresh_refuses_access_and_fleet_tokens() {
    let app = fleet_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    refresh_refused(
        &app,
        "wallet access token",
        s["access_token"].as_str().unwrap(),
    )
    .await;
    refresh_refused(&app, "operator access token", &honest_operator(&app)).await;
    let r = app
        .post_with(
            "/fleet/sessions",
            json!({ "session_id": "s1", "agent_id": "a1" }),
            &[("x-fleet-secret", SECRET)],
        )
        .await;
    refresh_refused(
        &app,
        "fleet token",
        r.body["session_token"].as_str().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn refresh_refuses_a_revoked_jti() {
    let app = fleet_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let refresh = s["refresh_token"].as_str().unwrap();
    let jti = claims_of(refresh)["jti"].as_str().unwrap().to_string();
    let h = format!("Bearer {}", honest_operator(&app));
    let r = app
        .post_with(
            "/revoke",
            json!({ "jti": jti }),
            &[("authorization", h.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    refresh_refused(&app, "revoked refresh jti", refresh).await;
}

#[tokio::test]
async fn refresh_refuses_junk_truncated_and_over_long_tokens() {
    let app = fleet_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let good = s["refresh_token"].as_str().unwrap();
    for (what, token) in junk_tokens(good) {
        refresh_refused(&app, &what, &token).await;
    }
    // A forged role on a real refresh token.
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = claims_of(good);
    claims["role"] = json!("operator");
    let forged = format!("{}.{}.{}", parts[0], b64json(&claims), parts[2]);
    refresh_refused(&app, "refresh role forged", &forged).await;
}
