//! Known answers for ML-DSA-65 tokens (RFC 9964) against an independent
//! implementation, Python `cryptography` (OpenSSL's ML-DSA-65), with the
//! fixtures and scripts of fixtures/mldsa-jwt/:
//!
//! - the PKCS#8 key Python wrote loads here with the JWK (and kid) Python
//!   computed, and is written back byte for byte;
//! - the token Python signed with it verifies here, through `TokenService`
//!   and through the router's Bearer check;
//! - the tokens we mint (wallet sign-in and fleet) verify with Python's
//!   `verify.py` against our JWKS.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{app_with, claims_of, header_of, Wallet};
use serde_json::{json, Value};
use wallet_auth::clock::ManualClock;
use wallet_auth::token::{SigningAlgorithm, TokenService};
use wallet_auth::{AuthConfig, Jwk, SigningKey, TokenError};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mldsa-jwt");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()
}

fn python_key() -> SigningKey {
    SigningKey::from_pem(&fixture("key.pem")).unwrap()
}

fn python_token() -> String {
    fixture("token.jwt").trim().to_string()
}

fn service(key: SigningKey, issuer: &str, now_secs: u64) -> TokenService {
    wallet_auth::install_crypto_provider();
    TokenService::new(
        Arc::new(key),
        &[],
        b"known-answer refresh secret",
        issuer.into(),
        "pico".into(),
        Arc::new(ManualClock::new(now_secs * 1000)),
    )
}

#[test]
fn the_python_key_loads_with_pythons_jwk_and_writes_back_byte_for_byte() {
    let key = python_key();
    assert_eq!(key.algorithm(), SigningAlgorithm::MlDsa65);
    let jwk: Jwk = serde_json::from_str(&fixture("jwk.json")).unwrap();
    assert_eq!(key.jwk(), &jwk);
    assert_eq!(
        serde_json::to_value(key.jwk()).unwrap(),
        serde_json::from_str::<Value>(&fixture("jwk.json")).unwrap()
    );
    assert_eq!(key.to_pkcs8_pem().unwrap().as_str(), fixture("key.pem"));
}

#[test]
fn a_token_python_signed_verifies_with_us() {
    let claims: Value = serde_json::from_str(&fixture("claims.json")).unwrap();
    let iat = claims["iat"].as_u64().unwrap();
    let token = python_token();
    assert_eq!(
        header_of(&token),
        json!({ "alg": "ML-DSA-65", "typ": "JWT", "kid": python_key().kid() })
    );
    let ours = service(python_key(), "http://localhost:8100", iat);
    let got = ours.validate_access(&token).unwrap();
    assert_eq!(serde_json::to_value(&got).unwrap(), claims);

    // Controls that the check is real: one changed claim, one flipped
    // signature bit, another key, another issuer, a later clock.
    let parts: Vec<&str> = token.split('.').collect();
    let mut changed = claims.clone();
    changed["role"] = json!("wallet");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        common::forge::b64json(&changed),
        parts[2]
    );
    assert_eq!(ours.validate_access(&forged), Err(TokenError::BadSignature));
    let mut sig = parts[2].as_bytes().to_vec();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(sig).unwrap()
    );
    assert_eq!(
        ours.validate_access(&flipped),
        Err(TokenError::BadSignature)
    );
    let other = service(
        SigningKey::from_ml_dsa_65_seed(&[9; 32]),
        "http://localhost:8100",
        iat,
    );
    assert_eq!(other.validate_access(&token), Err(TokenError::UnknownKid));
    let elsewhere = service(python_key(), "https://elsewhere.example", iat);
    assert_eq!(
        elsewhere.validate_access(&token),
        Err(TokenError::WrongIssuer)
    );
    let later = service(
        python_key(),
        "http://localhost:8100",
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(later.validate_access(&token), Err(TokenError::Expired));
}

#[tokio::test]
async fn the_router_accepts_the_python_token_as_an_operator_bearer() {
    let app = pq_app();
    let r = app.get("/mints", Some(&python_token())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn pq_app() -> common::TestApp {
    wallet_auth::install_crypto_provider();
    app_with(
        AuthConfig {
            algorithm: "ML-DSA-65".into(),
            fleet_mint_secret: common::FLEET_SECRET.into(),
            ..Default::default()
        },
        |b| b.with_signing_key(python_key()),
    )
}

/// A Python whose `cryptography` has ML-DSA-65: the interop venv's.
fn python_with_ml_dsa() -> Option<std::path::PathBuf> {
    let python = common::interop_python()?;
    let ok = std::process::Command::new(&python)
        .args([
            "-c",
            "from cryptography.hazmat.primitives.asymmetric import mldsa; mldsa.MLDSA65PublicKey",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

#[tokio::test]
async fn the_tokens_we_mint_verify_with_python_cryptography() {
    let Some(python) = python_with_ml_dsa() else {
        common::missing_dependency(
            "the_tokens_we_mint_verify_with_python_cryptography",
            "no Python venv with cryptography >= 48 (ML-DSA-65)",
        );
        return;
    };
    let app = pq_app();
    let wallet = Wallet::generate("Ed25519");
    let access = app.sign_in(&wallet).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = common::fleet(
        &app,
        json!({ "session_id": "s1", "agent_id": "a1", "role": "service" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fleet = r.body["session_token"].as_str().unwrap().to_string();
    let jwks = app.get("/jwks", None).await.body.to_string();
    let kid = app.auth.tokens().kid().to_string();
    let verify = |token: &str| {
        std::process::Command::new(&python)
            .arg(format!("{DIR}/verify.py"))
            .args([jwks.as_str(), token])
            .output()
            .unwrap()
    };
    for token in [&access, &fleet] {
        let out = verify(token);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let sub = claims_of(token)["sub"].as_str().unwrap().to_string();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), format!("OK {kid} {sub}"));
    }
    // The Python verifier is not a rubber stamp: a changed payload fails.
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims = claims_of(&access);
    claims["role"] = json!("operator");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        common::forge::b64json(&claims),
        parts[2]
    );
    let out = verify(&forged);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "FAIL bad signature"
    );
}
