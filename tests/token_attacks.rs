//! Forged and tampered tokens on every route that takes a Bearer token
//! (`/revoke`, `/revoked-jtis`, `/mints`) and on `/refresh`. Every attack is
//! answered 401 with a non-empty `detail`, and a control shows the same
//! route accepts the honest token, so each refusal is the attack's doing.
//!
//! Attack tokens are built by hand (base64url JSON header and payload), with
//! signatures from `jsonwebtoken::crypto::sign`.

mod common;

use axum::http::StatusCode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use common::{app, claims_of, header_of, other_key_pem, test_key_pem, Reply, TestApp, Wallet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use wallet_auth::AuthConfig;

const SECRET: &str = "fleet-secret-for-tests";
const ISS: &str = "http://localhost:8100";
const AUD: &str = "pico";

fn fleet_app() -> TestApp {
    wallet_auth::install_crypto_provider();
    app(AuthConfig {
        fleet_mint_secret: SECRET.into(),
        ..Default::default()
    })
}

fn now(app: &TestApp) -> u64 {
    use wallet_auth::clock::Clock;
    app.clock.now_secs()
}

fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

/// `header.payload.signature` with the signature made by `key` under `alg`.
fn signed(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64json(header), b64json(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

fn our_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(test_key_pem().as_bytes()).unwrap()
}

fn attacker_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(other_key_pem().as_bytes()).unwrap()
}

/// Honest operator access-token claims (what `/login` would mint).
fn operator_claims(app: &TestApp) -> Value {
    let t = now(app);
    json!({
        "iss": ISS, "aud": AUD, "sub": "operator@test", "iat": t, "exp": t + 3600,
        "jti": wallet_auth::token::new_jti(), "role": "operator",
    })
}

fn rs_header(kid: &str) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": kid })
}

/// An operator access token signed by our own key: the control.
fn honest_operator(app: &TestApp) -> String {
    let kid = app.auth.tokens().kid().to_string();
    signed(
        &rs_header(&kid),
        &operator_claims(app),
        &our_key(),
        Algorithm::RS256,
    )
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

/// Encodings of "the server's public key" an alg-confusion attacker might
/// use as an HMAC secret.
fn public_key_secrets(app: &TestApp) -> Vec<(&'static str, Vec<u8>)> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&test_key_pem()).unwrap();
    let public = rsa::RsaPublicKey::from(&private);
    let spki_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let pkcs1_pem = public.to_pkcs1_pem(LineEnding::LF).unwrap();
    let spki_der = public.to_public_key_der().unwrap().as_bytes().to_vec();
    let pkcs1_der = public.to_pkcs1_der().unwrap().as_bytes().to_vec();
    let jwk = &app.auth.tokens().jwks()[0];
    let jwks = serde_json::to_vec(&serde_json::json!({ "keys": app.auth.jwks() })).unwrap();
    vec![
        ("SPKI PEM", spki_pem.as_bytes().to_vec()),
        ("SPKI PEM without final newline", {
            spki_pem.trim_end().as_bytes().to_vec()
        }),
        ("PKCS#1 PEM", pkcs1_pem.as_bytes().to_vec()),
        ("SPKI DER", spki_der.clone()),
        (
            "SPKI DER as base64",
            STANDARD.encode(&spki_der).into_bytes(),
        ),
        ("PKCS#1 DER", pkcs1_der),
        ("JWK n (base64url text)", jwk.n.as_bytes().to_vec()),
        ("JWK n (raw bytes)", B64.decode(&jwk.n).unwrap()),
        ("JWK as JSON", serde_json::to_vec(jwk).unwrap()),
        ("JWKS document", jwks),
        ("kid", jwk.kid.as_bytes().to_vec()),
    ]
}

/// Junk, truncated and over-long variants of `good`.
fn junk_tokens(good: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [
        "garbage",
        "a.b.c",
        "..",
        "...",
        "a.b",
        "e30.e30.",
        "e30.e30.e30",
        "eyJhbGciOiJSUzI1NiJ9",
        "%%%.%%%.%%%",
        "\u{00e9}t\u{00e9}.\u{00e9}.\u{00e9}",
    ]
    .iter()
    .map(|s| (format!("junk {s:?}"), (*s).to_string()))
    .collect();
    let parts: Vec<&str> = good.split('.').collect();
    out.push(("header only".into(), parts[0].to_string()));
    out.push(("no signature".into(), format!("{}.{}", parts[0], parts[1])));
    out.push((
        "empty signature".into(),
        format!("{}.{}.", parts[0], parts[1]),
    ));
    out.push((
        "four parts".into(),
        format!("{good}.{}", parts[2].get(..10).unwrap_or("")),
    ));
    for cut in [1, 10, good.len() / 2, good.len() - 1] {
        out.push((format!("truncated to {cut}"), good[..cut].to_string()));
    }
    out.push((
        "signature truncated by one byte".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            B64.encode(&B64.decode(parts[2]).unwrap()[1..])
        ),
    ));
    out.push((
        "over-long (padded)".into(),
        format!("{good}{}", "A".repeat(17_000)),
    ));
    out.push((
        "over-long payload".into(),
        format!("{}.{}.{}", parts[0], "A".repeat(40_000), parts[2]),
    ));
    out.push(("over-long (60 KB)".into(), "x".repeat(60_000)));
    out
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
        "/refresh" => {
            app.post("/refresh", json!({ "refresh_token": token }))
                .await
        }
        other => unreachable!("{other}"),
    }
}

const BEARER_ROUTES: [&str; 3] = ["/revoke", "/revoked-jtis", "/mints"];

async fn refused(app: &TestApp, route: &str, what: &str, token: &str) {
    let r = call(app, route, token).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "{route}: {what}: {} {}",
        r.status,
        r.body
    );
    let detail = r.body["detail"].as_str().unwrap_or("");
    assert!(!detail.is_empty(), "{route}: {what}: no detail: {}", r.body);
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

// ---------------------------------------------------------------- /refresh

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
