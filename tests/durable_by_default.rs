//! A router with a persistent signing key keeps its denylist on disk unless
//! the configuration explicitly allows memory.

mod common;

use wallet_auth::{AuthConfig, WalletAuth};

#[test]
fn a_persistent_key_with_a_memory_denylist_is_refused() {
    let err = WalletAuth::builder(AuthConfig::default())
        .with_signing_key(common::signing_key())
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("revocation_store_path"), "{text}");
    assert!(text.contains("allow_memory_revocations"), "{text}");
}

#[test]
fn a_file_a_store_or_an_explicit_yes_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    WalletAuth::builder(AuthConfig {
        revocation_store_path: dir.path().join("r.jsonl").display().to_string(),
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .build()
    .unwrap();
    WalletAuth::builder(AuthConfig::default())
        .with_signing_key(common::signing_key())
        .with_revocation_store(std::sync::Arc::new(
            wallet_auth::MemoryRevocationStore::default(),
        ))
        .build()
        .unwrap();
    WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .build()
    .unwrap();
    // An ephemeral key dies with the process, like the memory denylist.
    WalletAuth::builder(AuthConfig::default()).build().unwrap();
}
