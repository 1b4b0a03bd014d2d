//! The standalone server as a child process: first start, restart, signals.

mod common;

use common::server::{Http, Server};
use common::Wallet;
use serde_json::{json, Value};

fn validate(token: &str, jwks: &Value) -> Result<Value, jsonwebtoken::errors::Error> {
    wallet_auth::install_crypto_provider();
    let key = &jwks["keys"][0];
    let dk = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["pico"]);
    v.set_issuer(&["http://localhost:8100"]);
    jsonwebtoken::decode::<Value>(token, &dk, &v).map(|d| d.claims)
}

#[tokio::test]
async fn restart_keeps_the_key_and_tokens_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let (_, before) = Http::new(&server.base).get("/jwks", None).await;
    // First start creates the key set, its key file private (0600).
    let key_file = dir.path().join(format!(
        "keys/key-{}.pem",
        before["keys"][0]["kid"].as_str().unwrap()
    ));
    assert!(key_file.exists(), "first start creates the signing key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let tokens = Http::new(&server.base)
        .sign_in(&Wallet::generate("Ed25519"))
        .await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    validate(&access, &before).unwrap();
    let status = server.terminate();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");

    let server = Server::start(dir.path(), &[], &[]);
    let http = Http::new(&server.base);
    let (_, after) = http.get("/jwks", None).await;
    assert_eq!(after["keys"][0]["kid"], before["keys"][0]["kid"]);
    assert_eq!(after, before);
    let claims =
        validate(&access, &after).expect("a token minted before the restart validates after it");
    assert_eq!(claims["role"], "wallet");
    // And the refresh token minted before the restart still works.
    let (status, _) = http
        .post(
            "/refresh",
            json!({ "refresh_token": tokens["refresh_token"] }),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    // A token signed by another key is refused by the same validation.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Server::start(other_dir.path(), &[], &[]);
    let foreign = Http::new(&other.base)
        .sign_in(&Wallet::generate("Ed25519"))
        .await;
    assert!(validate(foreign["access_token"].as_str().unwrap(), &after).is_err());
}

#[tokio::test]
async fn first_start_generates_the_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SERVER_AUTH_AUTO_CREATE_ADMIN", "true")];
    let server = Server::start(dir.path(), &[], &env);
    let password = server
        .stdout_lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .expect("the generated password is printed on first start")
        .trim()
        .to_string();
    assert!(password.len() >= 22, "{password}");
    let hash_file = dir.path().join("admin-password.argon2");
    let stored = std::fs::read_to_string(&hash_file).unwrap();
    assert!(stored.starts_with("$argon2id$"), "only the hash is kept");
    assert!(!stored.contains(&password));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&hash_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let login = |base: String, password: String| async move {
        Http::new(&base)
            .post(
                "/login",
                json!({ "email": "admin@pico.local", "password": password }),
                &[],
            )
            .await
            .0
    };
    assert_eq!(login(server.base.clone(), password.clone()).await, 200);
    assert_eq!(login(server.base.clone(), "wrong".into()).await, 401);
    server.terminate();

    let server = Server::start(dir.path(), &[], &env);
    assert!(
        !server.stdout_lines.iter().any(|l| l.contains(&password)),
        "the password is printed once only"
    );
    assert_eq!(login(server.base.clone(), password).await, 200);
}
