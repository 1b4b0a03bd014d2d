//! The library's configuration as an embedder meets it: `WalletAuth::builder`
//! refuses a bad `AuthConfig` at `build()` with an error naming the field,
//! and never prints a secret in that error or in the config's `Debug`.
//! (The standalone binary's `SERVER_AUTH_*` variables and YAML file are in
//! `tests/standalone_config.rs`.)

mod common;

use wallet_auth::{AuthConfig, WalletAuth};

#[test]
fn bad_config_fails_at_build_naming_the_field() {
    for (config, field) in [
        (
            AuthConfig {
                algorithm: "HS256".into(),
                ..Default::default()
            },
            "algorithm",
        ),
        (
            AuthConfig {
                supported_wallet_algorithms: vec!["RSA".into()],
                ..Default::default()
            },
            "supported_wallet_algorithms",
        ),
        (
            AuthConfig {
                supported_wallet_algorithms: vec![],
                ..Default::default()
            },
            "supported_wallet_algorithms",
        ),
        (
            AuthConfig {
                challenge_ttl_seconds: 0,
                ..Default::default()
            },
            "challenge_ttl_seconds",
        ),
        (
            AuthConfig {
                route_prefix: "api/".into(),
                ..Default::default()
            },
            "route_prefix",
        ),
        (
            AuthConfig {
                revocation_store_path: "/proc/definitely/not/writable.jsonl".into(),
                ..Default::default()
            },
            "revocation_store_path",
        ),
        (
            AuthConfig {
                signing_key_path: Some("/nonexistent/key.pem".into()),
                ..Default::default()
            },
            "signing_key_path",
        ),
    ] {
        let config = AuthConfig {
            allow_memory_revocations: true,
            ..config
        };
        let mut b = WalletAuth::builder(config);
        if field != "signing_key_path" {
            b = b.with_signing_key(common::signing_key());
        }
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn redis_url_without_the_redis_stores_is_a_config_error() {
    let config = AuthConfig {
        redis_url: "redis://:secret@127.0.0.1:6379".into(),
        allow_memory_revocations: true,
        ..Default::default()
    };
    assert!(!format!("{config:?}").contains(":secret@"), "redacted");
    let err = wallet_auth::WalletAuth::builder(config)
        .with_signing_key(common::signing_key())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("redis_url"), "{err}");
    assert!(!err.to_string().contains(":secret@"), "{err}");
}
