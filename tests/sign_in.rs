//! Wallet sign-in through the real router: `/jwks` serves the signing key,
//! `/challenge` issues nonces, `/sign-in` verifies every wallet algorithm and
//! mints tokens an independent RS256 verifier accepts, and a challenge is
//! spent once. (Refresh is in `tests/refresh.rs`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{claims_of, default_app, header_of, TestApp, Wallet};
use serde_json::{json, Value};

const ALGS: [&str; 4] = [
    "Ed25519",
    "secp256k1",
    "secp256k1-uncompressed",
    "ML-DSA-65",
];

#[tokio::test]
async fn jwks_serves_the_signing_key() {
    let app = default_app();
    let r = app.get("/jwks", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["e"], "AQAB");
    assert_eq!(k["kid"], app.auth.tokens().kid());
    // 2048-bit modulus in minimal octets: 256 bytes -> 342 base64url chars.
    assert_eq!(k["n"].as_str().unwrap().len(), 342);
}

#[tokio::test]
async fn challenge_contract() {
    let app = default_app();
    let r = app.post("/challenge", json!({ "address": "abc" })).await;
    assert_eq!(r.status, StatusCode::OK);
    let nonce = r.body["challenge"].as_str().unwrap();
    assert_eq!(nonce.len(), 64);
    assert!(nonce
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(r.body["ttl"], 60);
    // A new challenge differs from the old one (which stays valid).
    let r2 = app.post("/challenge", json!({ "address": "abc" })).await;
    assert_ne!(r2.body["challenge"], r.body["challenge"]);

    for bad in [
        json!({}),
        json!({ "address": "" }),
        json!({ "address": 42 }),
        json!({ "address": null }),
    ] {
        let r = app.post("/challenge", bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.detail(), "address required");
    }
    let long = "a".repeat(8193);
    let r = app.post("/challenge", json!({ "address": long })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.detail().contains("address too long"), "{}", r.detail());
    // An ML-DSA-65 wallet id (3,904 characters) is fine.
    let r = app
        .post("/challenge", json!({ "address": "a".repeat(3904) }))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_bodies_get_a_detail() {
    let app = default_app();
    for (body, status) in [
        (b"not json".to_vec(), StatusCode::BAD_REQUEST),
        (b"[1,2]".to_vec(), StatusCode::BAD_REQUEST),
        (b"\"x\"".to_vec(), StatusCode::BAD_REQUEST),
        (b"{\"address\":".to_vec(), StatusCode::BAD_REQUEST),
        (vec![b' '; 64 * 1024 + 1], StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        for path in ["/challenge", "/sign-in", "/refresh"] {
            let r = app.raw("POST", path, body.clone(), &[]).await;
            assert_eq!(r.status, status, "{path}");
            assert!(!r.detail().is_empty());
        }
    }
}

#[tokio::test]
async fn sign_in_succeeds_for_every_algorithm() {
    let app = default_app();
    for alg in ALGS {
        let wallet = Wallet::generate(alg);
        let body = app.sign_in(&wallet).await;
        assert_eq!(body["address"], wallet.address());
        assert_eq!(body["algorithm"], wallet.algorithm());
        let access = body["access_token"].as_str().unwrap();
        let claims = app.auth.tokens().validate_access(access).unwrap();
        assert_eq!(claims.sub, wallet.address());
        assert_eq!(claims.role, "wallet");
        assert_eq!(claims.algorithm.as_deref(), Some(wallet.algorithm()));
        assert_eq!(
            claims.wallet_address.as_deref(),
            Some(wallet.address().as_str())
        );
        assert_eq!(claims.exp - claims.iat, 480 * 60);
        assert_eq!(claims.jti.len(), 32);
        let h = header_of(access);
        assert_eq!(
            h,
            json!({ "alg": "RS256", "typ": "JWT", "kid": app.auth.tokens().kid() })
        );
        let refresh = body["refresh_token"].as_str().unwrap();
        assert_eq!(header_of(refresh)["typ"], "refresh+jwt");
        assert_eq!(claims_of(refresh)["type"], "refresh");
    }
}

async fn expect(app: &TestApp, body: Value, status: StatusCode, detail: &str) {
    let r = app.post("/sign-in", body.clone()).await;
    assert_eq!(r.status, status, "{body}: {}", r.body);
    assert_eq!(r.detail(), detail, "{body}");
}

#[tokio::test]
async fn sign_in_missing_fields_and_bad_hex() {
    let app = default_app();
    let wallet = Wallet::generate("Ed25519");
    let good = app.sign_in_body(&wallet).await;
    for field in ["address", "public_key", "signature", "challenge"] {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        expect(
            &app,
            b.clone(),
            StatusCode::BAD_REQUEST,
            "address, public_key, signature, and challenge required",
        )
        .await;
        b[field] = json!("");
        expect(
            &app,
            b,
            StatusCode::BAD_REQUEST,
            "address, public_key, signature, and challenge required",
        )
        .await;
    }
    for field in ["public_key", "signature"] {
        let mut b = good.clone();
        b[field] = json!("zz");
        expect(&app, b, StatusCode::BAD_REQUEST, "invalid hex encoding").await;
    }
    // None of that consumed the challenge.
    let r = app.post("/sign-in", good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn unsupported_algorithm_keeps_the_challenge() {
    let app = common::app(wallet_auth::AuthConfig {
        supported_wallet_algorithms: vec!["Ed25519".into()],
        ..Default::default()
    });
    let wallet = Wallet::generate("Ed25519");
    let good = app.sign_in_body(&wallet).await;
    for alg in ["RSA", "secp256k1", "ML-DSA-65"] {
        let mut b = good.clone();
        b["algorithm"] = json!(alg);
        expect(
            &app,
            b,
            StatusCode::BAD_REQUEST,
            &format!("unsupported wallet algorithm: {alg}"),
        )
        .await;
    }
    // Without an algorithm the default is ML-DSA-65, not enabled here.
    let mut b = good.clone();
    b.as_object_mut().unwrap().remove("algorithm");
    expect(
        &app,
        b,
        StatusCode::BAD_REQUEST,
        "unsupported wallet algorithm: ML-DSA-65",
    )
    .await;
    let r = app.post("/sign-in", good).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the challenge must still be usable: {}",
        r.body
    );
}

#[tokio::test]
async fn challenge_used_twice_other_address_and_expired() {
    let app = default_app();
    let wallet = Wallet::generate("Ed25519");
    let body = app.sign_in_body(&wallet).await;
    assert_eq!(
        app.post("/sign-in", body.clone()).await.status,
        StatusCode::OK
    );
    expect(
        &app,
        body,
        StatusCode::UNAUTHORIZED,
        "invalid or expired challenge",
    )
    .await;

    // A challenge issued for another address.
    let other = Wallet::generate("Ed25519");
    let nonce = app.challenge(&other.address()).await;
    app.challenge(&wallet.address()).await;
    let b = json!({
        "address": wallet.address(),
        "public_key": hex::encode(wallet.public_key()),
        "signature": hex::encode(wallet.sign(nonce.as_bytes())),
        "challenge": nonce,
        "algorithm": "Ed25519",
    });
    expect(
        &app,
        b,
        StatusCode::UNAUTHORIZED,
        "invalid or expired challenge",
    )
    .await;

    // Expired: the clock moves past the TTL, no sleeping.
    let b = app.sign_in_body(&wallet).await;
    app.clock.advance(Duration::from_secs(61));
    expect(
        &app,
        b,
        StatusCode::UNAUTHORIZED,
        "invalid or expired challenge",
    )
    .await;

    // Just inside the TTL still works.
    let b = app.sign_in_body(&wallet).await;
    app.clock.advance(Duration::from_secs(59));
    assert_eq!(app.post("/sign-in", b).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_signatures_are_401_and_burn_the_challenge() {
    let app = default_app();
    // A signature over another nonce, for each algorithm.
    for alg in ALGS {
        let wallet = Wallet::generate(alg);
        let mut b = app.sign_in_body(&wallet).await;
        b["signature"] = json!(hex::encode(
            wallet.sign(wallet_auth::challenge::new_nonce().as_bytes())
        ));
        expect(
            &app,
            b.clone(),
            StatusCode::UNAUTHORIZED,
            "signature verification failed",
        )
        .await;
        // The attempt burned the challenge.
        let nonce = b["challenge"].as_str().unwrap();
        b["signature"] = json!(hex::encode(wallet.sign(nonce.as_bytes())));
        expect(
            &app,
            b,
            StatusCode::UNAUTHORIZED,
            "invalid or expired challenge",
        )
        .await;
    }

    // High-S secp256k1.
    let wallet = Wallet::generate("secp256k1");
    let mut b = app.sign_in_body(&wallet).await;
    let nonce = b["challenge"].as_str().unwrap().to_string();
    b["signature"] = json!(hex::encode(wallet.sign_high_s(nonce.as_bytes())));
    expect(
        &app,
        b,
        StatusCode::UNAUTHORIZED,
        "signature verification failed",
    )
    .await;

    // Non-canonical Ed25519: S + L verifies under a lax verifier, not ours.
    let wallet = Wallet::generate("Ed25519");
    let mut b = app.sign_in_body(&wallet).await;
    let nonce = b["challenge"].as_str().unwrap().to_string();
    let mut sig = wallet.sign(nonce.as_bytes());
    add_l(&mut sig[32..]);
    b["signature"] = json!(hex::encode(&sig));
    expect(
        &app,
        b,
        StatusCode::UNAUTHORIZED,
        "signature verification failed",
    )
    .await;
}

/// Adds the Ed25519 group order L to a little-endian scalar in place.
fn add_l(s: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(L) {
        let sum = *b as u16 + l as u16 + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}

#[tokio::test]
async fn wrong_lengths_and_address_mismatch_are_400_before_consuming() {
    let app = default_app();
    let wallet = Wallet::generate("ML-DSA-65");
    let good = app.sign_in_body(&wallet).await;
    let pk = good["public_key"].as_str().unwrap().to_string();
    let sig = good["signature"].as_str().unwrap().to_string();

    let mut b = good.clone();
    b["public_key"] = json!(&pk[..pk.len() - 2]);
    b["address"] = json!(&pk[..pk.len() - 2]);
    expect(
        &app,
        b,
        StatusCode::BAD_REQUEST,
        "invalid public_key for ML-DSA-65",
    )
    .await;
    let mut b = good.clone();
    b["signature"] = json!(format!("{sig}00"));
    expect(
        &app,
        b,
        StatusCode::BAD_REQUEST,
        "invalid signature for ML-DSA-65",
    )
    .await;
    let mut b = good.clone();
    b["address"] = json!(pk.to_uppercase());
    expect(
        &app,
        b,
        StatusCode::BAD_REQUEST,
        "address does not match verified public key",
    )
    .await;
    // Ed25519 key where ML-DSA is claimed.
    let ed = Wallet::generate("Ed25519");
    let mut b = good.clone();
    b["public_key"] = json!(hex::encode(ed.public_key()));
    expect(
        &app,
        b,
        StatusCode::BAD_REQUEST,
        "invalid public_key for ML-DSA-65",
    )
    .await;

    assert_eq!(app.post("/sign-in", good).await.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_field_types_are_400() {
    let app = default_app();
    let wallet = Wallet::generate("Ed25519");
    let good = app.sign_in_body(&wallet).await;
    for field in [
        "address",
        "public_key",
        "signature",
        "challenge",
        "algorithm",
    ] {
        for v in [json!(1), json!([]), json!({}), json!(true)] {
            let mut b = good.clone();
            b[field] = v.clone();
            let r = app.post("/sign-in", b).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}");
            // SPEC 1: a non-string algorithm is an unsupported one, shown as JSON.
            let want = if field == "algorithm" {
                format!("unsupported wallet algorithm: {v}")
            } else {
                format!("{field} must be a string")
            };
            assert_eq!(r.detail(), want);
        }
    }
    let mut b = good.clone();
    b["signature"] = json!("ab".repeat(9000));
    let r = app.post("/sign-in", b).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.post("/sign-in", good).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sign_ins_on_one_challenge_yield_one_success() {
    let app = Arc::new(default_app());
    let wallet = Wallet::generate("Ed25519");
    let body = app.sign_in_body(&wallet).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (app, body) = (Arc::clone(&app), body.clone());
        tasks.push(tokio::spawn(
            async move { app.post("/sign-in", body).await },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::UNAUTHORIZED => assert_eq!(r.detail(), "invalid or expired challenge"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(ok, 1);
}

/// An access token validates with an independent RS256 verifier (the `rsa`
/// crate, not the aws-lc code that signed it) using only the served JWK; a
/// refresh token does not.
#[tokio::test]
async fn independent_verifier_accepts_access_rejects_refresh() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    let app = default_app();
    let jwk = app.get("/jwks", None).await.body["keys"][0].clone();
    let n = rsa::BigUint::from_bytes_be(&B64.decode(jwk["n"].as_str().unwrap()).unwrap());
    let e = rsa::BigUint::from_bytes_be(&B64.decode(jwk["e"].as_str().unwrap()).unwrap());
    let key = VerifyingKey::<rsa::sha2::Sha256>::new(rsa::RsaPublicKey::new(n, e).unwrap());
    let verify = |token: &str| -> bool {
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let header = header_of(token);
        if header["alg"] != "RS256" || header["kid"] != jwk["kid"] {
            return false;
        }
        let Ok(bytes) = B64.decode(sig) else {
            return false;
        };
        let Ok(sig) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        key.verify(signed.as_bytes(), &sig).is_ok()
    };
    let s = app.sign_in(&Wallet::generate("secp256k1")).await;
    let access = s["access_token"].as_str().unwrap();
    assert!(verify(access));
    let claims = claims_of(access);
    assert_eq!(claims["iss"], "http://localhost:8100");
    assert_eq!(claims["aud"], "pico");
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert!(!verify(s["refresh_token"].as_str().unwrap()));
    // A changed signature byte is refused (the verifier can fail). The
    // character changed is in the middle of the signature, where all six
    // bits of a base64url character are significant, so the token still
    // decodes and the RSA check itself must refuse it.
    let sig_start = access.rfind('.').unwrap() + 1;
    let at = sig_start + 100;
    let mut tampered = access.to_string();
    let old = &access[at..at + 1];
    tampered.replace_range(at..at + 1, if old == "A" { "B" } else { "A" });
    assert_ne!(tampered, access);
    assert!(B64.decode(&tampered[sig_start..]).is_ok());
    assert!(!verify(&tampered));
}

#[tokio::test]
async fn wrong_method_gets_a_json_detail() {
    let app = default_app();
    for (method, path) in [
        ("GET", "/challenge"),
        ("POST", "/jwks"),
        ("DELETE", "/sign-in"),
        ("PUT", "/revoked-jtis"),
    ] {
        let r = app.raw(method, path, Vec::new(), &[]).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.detail(), "method not allowed");
    }
}
