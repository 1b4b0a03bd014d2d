//! Forged and tampered tokens on every route that takes a Bearer token
//! (`/revoke`, `/revoked-jtis`, `/mints`). Every attack is answered 401 with
//! a non-empty `detail`, and a control shows the same route accepts the
//! honest token, so each refusal is the attack's doing. (The same attacks on
//! `/refresh` are in `tests/refresh.rs`.)
//!
//! Every attack runs twice: against a router signing RS256 (the committed
//! RSA test key) and against one signing ML-DSA-65 (`algorithm: ML-DSA-65`,
//! the key of fixtures/mldsa-jwt/key.pem). The last tests mix the two, as a
//! migration publishing both kinds of key does.
//!
//! Attack tokens are built by hand in `common::forge` (RS256, HMAC) and
//! here (ML-DSA-65).

mod common;

use axum::http::StatusCode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use common::forge::{
    attacker_key, b64json, junk_tokens, now, operator_claims, our_key, public_key_secrets,
    rs_header, signed, ISS,
};
use common::{app, app_with, claims_of, header_of, Reply, TestApp, Wallet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use wallet_auth::token::SigningAlgorithm;
use wallet_auth::{AuthConfig, SigningKey};

const SECRET: &str = "fleet-secret-for-tests";

/// The token algorithms every attack runs against.
const ALGS: [SigningAlgorithm; 2] = [SigningAlgorithm::Rs256, SigningAlgorithm::MlDsa65];

/// Our ML-DSA-65 key: the one Python made in fixtures/mldsa-jwt/.
fn our_ml_dsa_key() -> SigningKey {
    SigningKey::from_pem(include_str!("../fixtures/mldsa-jwt/key.pem")).unwrap()
}

/// An attacker's ML-DSA-65 key.
fn attacker_ml_dsa_key() -> SigningKey {
    SigningKey::from_ml_dsa_65_seed(&[0xa7; 32])
}

fn fleet_app(alg: SigningAlgorithm) -> TestApp {
    wallet_auth::install_crypto_provider();
    let config = AuthConfig {
        fleet_mint_secret: SECRET.into(),
        algorithm: alg.name().into(),
        ..Default::default()
    };
    match alg {
        SigningAlgorithm::MlDsa65 => app_with(config, |b| b.with_signing_key(our_ml_dsa_key())),
        _ => app(config),
    }
}

/// `header.payload.signature`, the signature ML-DSA-65 by `key` over the
/// ASCII signing input, whatever the header says.
fn ml_dsa_signed(header: &Value, payload: &Value, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64json(header), b64json(payload));
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(sig))
}

/// Our header for `alg`: exactly what the router mints.
fn our_header(alg: SigningAlgorithm, kid: &str) -> Value {
    json!({ "alg": alg.name(), "typ": "JWT", "kid": kid })
}

/// `header` and `claims` signed by our key of `alg`.
fn signed_by_us(alg: SigningAlgorithm, header: &Value, claims: &Value) -> String {
    match alg {
        SigningAlgorithm::MlDsa65 => ml_dsa_signed(header, claims, &our_ml_dsa_key()),
        _ => signed(header, claims, &our_key(), Algorithm::RS256),
    }
}

/// An operator access token signed by our own key of the app's algorithm:
/// the control.
fn honest_operator(app: &TestApp) -> String {
    let tokens = app.auth.tokens();
    let alg = tokens.algorithm();
    signed_by_us(alg, &our_header(alg, &tokens.kid()), &operator_claims(app))
}

/// The same claims as [`honest_operator`] with one claim changed (or removed
/// when `value` is null), still signed by our key under our kid.
fn operator_with(app: &TestApp, claim: &str, value: Value) -> String {
    let kid = app.auth.tokens().kid().to_string();
    let alg = app.auth.tokens().algorithm();
    let mut claims = operator_claims(app);
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(claim);
    } else {
        claims[claim] = value;
    }
    signed_by_us(alg, &our_header(alg, &kid), &claims)
}

/// Encodings of our ML-DSA-65 public key an alg-confusion attacker might
/// use as an HMAC secret.
fn ml_dsa_public_key_secrets(app: &TestApp) -> Vec<(&'static str, Vec<u8>)> {
    let jwk = &app.auth.tokens().jwks()[0];
    let pub_text = jwk.pub_.as_deref().unwrap();
    let raw = B64.decode(pub_text).unwrap();
    // SubjectPublicKeyInfo { id-ml-dsa-65, BIT STRING raw } (RFC 9881).
    let mut spki = vec![
        0x30, 0x82, 0x07, 0xb2, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x03, 0x12, 0x03, 0x82, 0x07, 0xa1, 0x00,
    ];
    spki.extend_from_slice(&raw);
    let b64 = STANDARD.encode(&spki);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let spki_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let jwks = serde_json::to_vec(&json!({ "keys": app.auth.jwks() })).unwrap();
    vec![
        ("raw public key", raw),
        ("JWK pub (base64url text)", pub_text.as_bytes().to_vec()),
        ("SPKI DER", spki.clone()),
        ("SPKI DER as base64", b64.clone().into_bytes()),
        ("SPKI PEM", spki_pem.clone().into_bytes()),
        (
            "SPKI PEM without final newline",
            spki_pem.trim_end().as_bytes().to_vec(),
        ),
        ("JWK as JSON", serde_json::to_vec(jwk).unwrap()),
        ("JWKS document", jwks),
        ("kid", jwk.kid.as_bytes().to_vec()),
    ]
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
    for alg in ALGS {
        let app = fleet_app(alg);
        let token = honest_operator(&app);
        assert_eq!(header_of(&token)["alg"], alg.name());
        for route in BEARER_ROUTES {
            let r = call(&app, route, &token).await;
            assert_eq!(r.status, StatusCode::OK, "{alg} {route}: {}", r.body);
        }
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    for token_alg in ALGS {
        alg_none_is_refused_by(fleet_app(token_alg)).await;
    }
}

async fn alg_none_is_refused_by(app: TestApp) {
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
        // A real signature (RS256 or ML-DSA-65) kept under an alg-none header.
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
    for token_alg in ALGS {
        let app = fleet_app(token_alg);
        let secrets = match token_alg {
            SigningAlgorithm::MlDsa65 => ml_dsa_public_key_secrets(&app),
            _ => public_key_secrets(&app),
        };
        hs256_keyed_with_secrets_is_refused(&app, secrets).await;
    }
}

async fn hs256_keyed_with_secrets_is_refused(app: &TestApp, secrets: Vec<(&str, Vec<u8>)>) {
    let kid = app.auth.tokens().kid().to_string();
    let claims = operator_claims(app);
    for (what, secret) in secrets {
        let key = EncodingKey::from_secret(&secret);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": kid });
            let token = signed(&header, &claims, &key, alg);
            refused_everywhere(app, &format!("{alg:?} keyed with {what}"), &token).await;
        }
    }
}

#[tokio::test]
async fn another_rsa_key_with_our_kid_is_refused() {
    let app = fleet_app(SigningAlgorithm::Rs256);
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
async fn another_ml_dsa_key_with_our_kid_is_refused() {
    let app = fleet_app(SigningAlgorithm::MlDsa65);
    let kid = app.auth.tokens().kid().to_string();
    let claims = operator_claims(&app);
    let header = our_header(SigningAlgorithm::MlDsa65, &kid);
    let token = ml_dsa_signed(&header, &claims, &attacker_ml_dsa_key());
    refused_everywhere(&app, "attacker ML-DSA-65 under our kid", &token).await;
    // Our own ML-DSA signature under another ML-DSA name, or a name
    // differing in case or spelling: only ML-DSA-65 exactly is accepted.
    for alg in [
        "ML-DSA-44",
        "ML-DSA-87",
        "ml-dsa-65",
        "MLDSA65",
        "ML-DSA-65 ",
        "AKP",
    ] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": kid });
        let token = ml_dsa_signed(&header, &claims, &our_ml_dsa_key());
        refused_everywhere(&app, &format!("alg {alg:?}"), &token).await;
    }
    // An RSA signature (the attacker's, or our RSA test key's) under our
    // ML-DSA kid: the header's alg is not the key's.
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": kid });
        for key in [attacker_key(), our_key()] {
            let token = signed(&header, &claims, &key, alg);
            refused_everywhere(&app, &format!("{alg:?} under the ML-DSA kid"), &token).await;
        }
    }
    // ML-DSA header, RSA signature; and a crit header we cannot honour.
    let rsa = signed(&rs_header(&kid), &claims, &our_key(), Algorithm::RS256);
    let sig = rsa.rsplit('.').next().unwrap();
    let forged = format!("{}.{}.{sig}", b64json(&header), b64json(&claims));
    refused_everywhere(&app, "ML-DSA header, RS256 signature", &forged).await;
    let crit = json!({ "alg": "ML-DSA-65", "typ": "JWT", "kid": kid, "crit": ["exp"], "exp": 1 });
    let token = ml_dsa_signed(&crit, &claims, &our_ml_dsa_key());
    refused_everywhere(&app, "crit header", &token).await;
}

#[tokio::test]
async fn unknown_or_missing_kid_is_refused() {
    for token_alg in ALGS {
        let app = fleet_app(token_alg);
        let claims = operator_claims(&app);
        let alg = token_alg.name();
        for kid in ["", "unknown", "../../etc/passwd", "0"] {
            let token = signed_by_us(token_alg, &our_header(token_alg, kid), &claims);
            refused_everywhere(&app, &format!("{alg} kid {kid:?}"), &token).await;
        }
        let header = json!({ "alg": alg, "typ": "JWT" });
        let token = signed_by_us(token_alg, &header, &claims);
        refused_everywhere(&app, "no kid", &token).await;
        let header = json!({ "alg": alg, "typ": "JWT", "kid": 7 });
        let token = signed_by_us(token_alg, &header, &claims);
        refused_everywhere(&app, "numeric kid", &token).await;
    }
}

#[tokio::test]
async fn missing_expired_and_wrong_claims_are_refused() {
    for alg in ALGS {
        missing_expired_and_wrong_claims_are_refused_by(fleet_app(alg)).await;
    }
}

async fn missing_expired_and_wrong_claims_are_refused_by(app: TestApp) {
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
    for alg in ALGS {
        let app = fleet_app(alg);
        let s = app.sign_in(&Wallet::generate("Ed25519")).await;
        refused_everywhere(&app, "refresh token", s["refresh_token"].as_str().unwrap()).await;
        // A refresh token claiming the operator role, signed by our key with
        // our kid: the `type` claim alone must keep it out.
        let mut claims = operator_claims(&app);
        claims["type"] = json!("refresh");
        claims["fam"] = json!(wallet_auth::token::new_jti());
        let kid = app.auth.tokens().kid().to_string();
        let header = json!({ "alg": alg.name(), "typ": "refresh+jwt", "kid": kid });
        let token = signed_by_us(alg, &header, &claims);
        refused_everywhere(&app, &format!("{alg} refresh+jwt"), &token).await;
        // The same claims under a JWT header: the `type` claim alone.
        let token = signed_by_us(alg, &our_header(alg, &kid), &claims);
        refused_everywhere(&app, &format!("{alg} type refresh"), &token).await;
    }
}

#[tokio::test]
async fn a_fleet_token_with_a_forged_role_is_refused() {
    for alg in ALGS {
        a_fleet_token_with_a_forged_role_is_refused_by(fleet_app(alg)).await;
    }
}

async fn a_fleet_token_with_a_forged_role_is_refused_by(app: TestApp) {
    let r = app
        .post_with(
            "/fleet/sessions",
            json!({ "session_id": "s1", "agent_id": "a1", "role": "service" }),
            &[("x-fleet-secret", SECRET)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let real = r.body["session_token"].as_str().unwrap().to_string();
    let alg = app.auth.tokens().algorithm();
    assert_eq!(header_of(&real), our_header(alg, &app.auth.tokens().kid()));
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
    for alg in ALGS {
        a_revoked_jti_is_refused_by(fleet_app(alg)).await;
    }
}

async fn a_revoked_jti_is_refused_by(app: TestApp) {
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
    for alg in ALGS {
        let app = fleet_app(alg);
        let good = honest_operator(&app);
        for (what, token) in junk_tokens(&good) {
            refused_everywhere(&app, &format!("{alg} {what}"), &token).await;
        }
    }
}

/// A migration: the router signs with one algorithm and still publishes
/// the other's key. Each key is accepted with its own algorithm only.
#[tokio::test]
async fn a_migration_accepts_each_published_key_with_its_own_algorithm_only() {
    wallet_auth::install_crypto_provider();
    let rsa = common::signing_key();
    let pq = our_ml_dsa_key();
    let pairs = [
        (
            SigningAlgorithm::MlDsa65,
            rsa.jwk().clone(),
            pq.jwk().clone(),
        ),
        (SigningAlgorithm::Rs256, pq.jwk().clone(), rsa.jwk().clone()),
    ];
    for (signer, retired, active) in pairs {
        let config = AuthConfig {
            fleet_mint_secret: SECRET.into(),
            algorithm: signer.name().into(),
            ..Default::default()
        };
        let app = app_with(config, |b| {
            let b = match signer {
                SigningAlgorithm::MlDsa65 => b.with_signing_key(our_ml_dsa_key()),
                _ => b,
            };
            b.with_retired_key(retired.clone())
        });
        let jwks = app.auth.jwks();
        let kids: Vec<&str> = jwks.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(
            kids,
            [active.kid.as_str(), retired.kid.as_str()],
            "{signer}"
        );
        let claims = operator_claims(&app);
        let by_rsa = |kid: &str| signed(&rs_header(kid), &claims, &our_key(), Algorithm::RS256);
        let by_pq =
            |kid: &str| ml_dsa_signed(&our_header(SigningAlgorithm::MlDsa65, kid), &claims, &pq);
        let (rsa_kid, pq_kid) = (rsa.kid(), pq.kid());
        // Controls: each key's own token passes.
        for (what, token) in [
            ("RS256 by the RSA key", by_rsa(rsa_kid)),
            ("ML-DSA-65 by the ML-DSA key", by_pq(pq_kid)),
        ] {
            let r = call(&app, "/mints", &token).await;
            assert_eq!(r.status, StatusCode::OK, "{signer}: {what}: {}", r.body);
        }
        // Crossed: the other kid, its header alg not the key's.
        refused_everywhere(
            &app,
            &format!("{signer}: RS256 under the ML-DSA kid"),
            &by_rsa(pq_kid),
        )
        .await;
        refused_everywhere(
            &app,
            &format!("{signer}: ML-DSA-65 under the RSA kid"),
            &by_pq(rsa_kid),
        )
        .await;
        // What it mints is of the configured algorithm, under the active kid.
        let minted = common::token_with_role(&app, "operator");
        assert_eq!(header_of(&minted), our_header(signer, &active.kid));
    }
}
