//! Hand-made tokens for the attack tests: base64url JSON header and payload,
//! signatures from `jsonwebtoken::crypto::sign`, under our key, an
//! attacker's key, or secrets an alg-confusion attacker would try.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::{other_key_pem, test_key_pem, TestApp};

pub const ISS: &str = "http://localhost:8100";
pub const AUD: &str = "pico";

pub fn now(app: &TestApp) -> u64 {
    use wallet_auth::clock::Clock;
    app.clock.now_secs()
}

pub fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

/// `header.payload.signature` with the signature made by `key` under `alg`.
pub fn signed(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64json(header), b64json(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

pub fn our_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(test_key_pem().as_bytes()).unwrap()
}

pub fn attacker_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(other_key_pem().as_bytes()).unwrap()
}

/// Honest operator access-token claims (what `/login` would mint).
pub fn operator_claims(app: &TestApp) -> Value {
    let t = now(app);
    json!({
        "iss": ISS, "aud": AUD, "sub": "operator@test", "iat": t, "exp": t + 3600,
        "jti": wallet_auth::token::new_jti(), "role": "operator",
    })
}

pub fn rs_header(kid: &str) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": kid })
}

/// An operator access token signed by our own key: the control.
pub fn honest_operator(app: &TestApp) -> String {
    let kid = app.auth.tokens().kid().to_string();
    signed(
        &rs_header(&kid),
        &operator_claims(app),
        &our_key(),
        Algorithm::RS256,
    )
}

/// Encodings of "the server's public key" an alg-confusion attacker might
/// use as an HMAC secret.
pub fn public_key_secrets(app: &TestApp) -> Vec<(&'static str, Vec<u8>)> {
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
        (
            "JWK n (base64url text)",
            jwk.n.as_deref().unwrap().as_bytes().to_vec(),
        ),
        (
            "JWK n (raw bytes)",
            B64.decode(jwk.n.as_deref().unwrap()).unwrap(),
        ),
        ("JWK as JSON", serde_json::to_vec(jwk).unwrap()),
        ("JWKS document", jwks),
        ("kid", jwk.kid.as_bytes().to_vec()),
    ]
}

/// Junk, truncated and over-long variants of `good`.
pub fn junk_tokens(good: &str) -> Vec<(String, String)> {
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

/// Asserts that `r`, the answer of `route` to a forged or bad token
/// (`what`), is a 401 with a non-empty `detail`.
pub fn assert_refused(r: &super::Reply, route: &str, what: &str) {
    assert_eq!(
        r.status,
        axum::http::StatusCode::UNAUTHORIZED,
        "{route}: {what}: {} {}",
        r.status,
        r.body
    );
    let detail = r.body["detail"].as_str().unwrap_or("");
    assert!(!detail.is_empty(), "{route}: {what}: no detail: {}", r.body);
}
