//! A real consumer: pico-client-auth 0.7.1 (PyPI) validates our wallet
//! access token through our JWKS, polls our /revoked-jtis with a
//! fleet-minted service token, and rejects the token once we revoke it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::server::{Http, Server};
use common::Wallet;
use serde_json::json;

#[tokio::test]
async fn pico_client_auth_validates_and_honours_revocation() {
    let Some(python) = common::interop_python() else {
        common::missing_dependency(
            "pico_client_auth_validates_and_honours_revocation",
            "no Python venv with pico-client-auth 0.7.1",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[],
        &[
            ("SERVER_AUTH_FLEET_MINT_SECRET", "interop-fleet-secret"),
            ("SERVER_AUTH_AUTO_CREATE_ADMIN", "true"),
            ("SERVER_AUTH_ADMIN_PASSWORD", "interop-admin-password"),
        ],
    );
    let base = server.base.clone();
    let http = Http::new(&base);

    // A wallet signs in; the consumer's service token comes from the fleet endpoint.
    let wallet = Wallet::generate("ML-DSA-65");
    let tokens = http.sign_in(&wallet).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let service_token = http.fleet_token("interop-fleet-secret", "service").await;

    let mut consumer = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/consumer.py"
        ))
        .args([
            format!("{base}/jwks"),
            format!("{base}/revoked-jtis"),
            service_token,
            access.clone(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(consumer.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || {
        let l = lines.next();
        (l, lines)
    });
    let (first, mut lines) = first.await.unwrap();
    let first = first.expect("consumer output").unwrap();
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

    consumer.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let second = tokio::task::spawn_blocking(move || lines.next())
        .await
        .unwrap()
        .expect("consumer output")
        .unwrap();
    assert!(second.starts_with("REJECTED"), "{second}");
    assert!(second.contains(&jti), "{second}");
    assert!(consumer.wait().unwrap().success());
}
