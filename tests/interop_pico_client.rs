//! A real consumer: pico-client-auth 0.7.1 (PyPI) validates our wallet
//! access token through our JWKS, polls our /revoked-jtis with a
//! fleet-minted service token, and rejects the token once we revoke it.
//!
//! Twice: with RS256 tokens, and with ML-DSA-65 tokens (`algorithm:
//! ML-DSA-65`, RFC 9964 JWKS entries). For the second, pico-client-auth's
//! ML-DSA path imports liboqs-python (`oqs`), whose wheel carries no liboqs
//! and tries to download it at import, which cannot work here. Its one
//! `oqs` call (`oqs.Signature(alg).verify(msg, sig, pub)`) is served by
//! tests/interop/oqs_adapter/oqs.py over Python `cryptography`'s ML-DSA-65,
//! put on PYTHONPATH for the consumer process only; pico-client-auth's own
//! code is unchanged.

mod common;

use std::process::Command;

use common::pico::Consumer;
use common::server::{Http, Server};
use common::Wallet;
use serde_json::json;

/// Where the `oqs` adapter lives (PYTHONPATH of the ML-DSA-65 consumer).
const OQS_ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/oqs_adapter");

#[tokio::test]
async fn pico_client_auth_validates_and_honours_revocation() {
    let Some(python) = common::pico::python("pico_client_auth_validates_and_honours_revocation")
    else {
        return;
    };
    validates_and_honours_revocation(&python, "RS256").await;
}

#[tokio::test]
async fn pico_client_auth_validates_ml_dsa_65_tokens_and_honours_revocation() {
    let Some(python) =
        common::pico::python("pico_client_auth_validates_ml_dsa_65_tokens_and_honours_revocation")
    else {
        return;
    };
    // The consumer's `oqs` is the adapter, not a liboqs-python of its own.
    let which = Command::new(&python)
        .args(["-c", "import oqs; print(oqs.__file__)"])
        .env("PYTHONPATH", OQS_ADAPTER)
        .output()
        .unwrap();
    assert!(which.status.success(), "{which:?}");
    let path = String::from_utf8_lossy(&which.stdout);
    assert!(path.trim().starts_with(OQS_ADAPTER), "{path}");
    validates_and_honours_revocation(&python, "ML-DSA-65").await;
}

/// The interop scenario with tokens of `algorithm`.
async fn validates_and_honours_revocation(python: &std::path::Path, algorithm: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[],
        &[
            ("SERVER_AUTH_FLEET_MINT_SECRET", "interop-fleet-secret"),
            ("SERVER_AUTH_AUTO_CREATE_ADMIN", "true"),
            ("SERVER_AUTH_ADMIN_PASSWORD", "interop-admin-password"),
            ("SERVER_AUTH_ALGORITHM", algorithm),
        ],
    );
    let base = server.base.clone();
    let http = Http::new(&base);

    // A wallet signs in; the consumer's service token comes from the fleet endpoint.
    let wallet = Wallet::generate("ML-DSA-65");
    let tokens = http.sign_in(&wallet).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let service_token = http.fleet_token("interop-fleet-secret", "service").await;
    // Both are of the configured algorithm, under the key the JWKS lists.
    let (status, jwks) = http.get("/jwks", None).await;
    assert_eq!(status, 200);
    let key = &jwks["keys"][0];
    for token in [&access, &service_token] {
        let header = common::header_of(token);
        assert_eq!(
            header,
            json!({ "alg": algorithm, "typ": "JWT", "kid": key["kid"] })
        );
    }
    assert_eq!(key["alg"], algorithm);
    if algorithm == "ML-DSA-65" {
        assert_eq!(key["kty"], "AKP");
        // The standalone created an ML-DSA-65 PKCS#8 key in its key set on first start.
        let pem = std::fs::read_to_string(
            dir.path()
                .join(format!("keys/key-{}.pem", key["kid"].as_str().unwrap())),
        )
        .unwrap();
        let created = wallet_auth::SigningKey::from_pem(&pem).unwrap();
        assert_eq!(created.kid(), key["kid"]);
    }

    let mut consumer = Consumer::start(
        python,
        &base,
        service_token,
        access.clone(),
        algorithm,
        &[("PYTHONPATH", OQS_ADAPTER)],
    );
    let first = consumer.line().await;
    assert_eq!(first, format!("VALID {} wallet", wallet.address()));

    // The operator revokes the token's jti.
    let op = http
        .login("admin@pico.local", "interop-admin-password")
        .await;
    let jti = common::claims_of(&access)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let bearer = format!("Bearer {op}");
    let (status, revoked) = http
        .post(
            "/revoke",
            json!({ "jti": jti, "reason": "interop" }),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(revoked["revoked"]["jti"], jti);

    consumer.go();
    let second = consumer.line().await;
    assert!(second.starts_with("REJECTED"), "{second}");
    assert!(second.contains(&jti), "{second}");
    consumer.exits_ok();
}
