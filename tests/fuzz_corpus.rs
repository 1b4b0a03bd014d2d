//! The committed fuzz corpus (`fuzz/corpus/<target>/`) replayed as plain
//! tests, with the same checks as the cargo-fuzz targets in
//! `fuzz/fuzz_targets/`, so every input the fuzzers kept (and any crash
//! reproducer added there) stays a regression test on stable Rust.

mod common;
#[path = "../fuzz/decode.rs"]
mod decode;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use wallet_auth::clock::ManualClock;
use wallet_auth::jsonl::{load, load_last};
use wallet_auth::token::TokenService;
use wallet_auth::wallet::{check_encoding, verify};
use wallet_auth::{AuthConfig, MintRecord, RevocationEntry, WalletAuth};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[tokio::test]
async fn router_requests() {
    const SECRET: &str = "fuzz-fleet-secret";
    let clock = ManualClock::starting_now();
    let now = {
        use wallet_auth::clock::Clock;
        clock.now_secs()
    };
    let auth = WalletAuth::builder(AuthConfig {
        fleet_mint_secret: SECRET.into(),
        auto_create_admin: true,
        admin_password: Some("fuzz-admin-password".into()),
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .with_clock(Arc::new(clock))
    .build()
    .unwrap();
    let router = auth.router::<()>();
    let operator = auth
        .tokens()
        .sign_access(&wallet_auth::AccessClaims::new(
            "http://localhost:8100",
            "pico",
            "operator@fuzz",
            "operator",
            now,
            now + 3600,
        ))
        .unwrap();
    let bearer = format!("Bearer {operator}");
    for (path, data) in corpus("router_requests") {
        let Some(input) = decode::route_input(&data) else {
            continue;
        };
        let (method, route) = (input.method, input.route.clone());
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1/auth{route}"))
            .header("content-type", "application/json");
        if input.with_credentials {
            req = req
                .header("authorization", bearer.as_str())
                .header("x-fleet-secret", SECRET);
        }
        let Ok(req) = req.body(Body::from(input.body.to_vec())) else {
            continue;
        };
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let what = format!("{}: {method} {route}: {status}", path.display());
        assert!(
            !status.is_server_error() || status.as_u16() == 503,
            "{what}"
        );
        if !status.is_success() {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{what}: body not JSON"));
            assert!(v["detail"].is_string(), "{what}: no detail");
        }
    }
}

#[test]
fn wallet_verify() {
    for (path, data) in corpus("wallet_verify") {
        let Some((alg, key, sig, msg)) = decode::wallet_input(&data) else {
            continue;
        };
        if check_encoding(alg, key, sig).is_err() {
            assert!(verify(alg, key, msg, sig).is_err(), "{}", path.display());
        }
    }
}

#[test]
fn token_validate() {
    wallet_auth::install_crypto_provider();
    let s = TokenService::new(
        Arc::new(common::signing_key()),
        &[],
        b"fuzz refresh secret",
        "http://localhost:8100".into(),
        "pico".into(),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    );
    for (path, data) in corpus("token_validate") {
        let token = String::from_utf8_lossy(&data);
        assert!(s.validate_access(&token).is_err(), "{}", path.display());
        assert!(s.validate_refresh(&token).is_err(), "{}", path.display());
    }
}

#[test]
fn jsonl_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.jsonl");
    for (path, data) in corpus("jsonl_load") {
        let Some((&n, contents)) = data.split_first() else {
            continue;
        };
        std::fs::write(&file, contents).unwrap();
        let n = usize::from(n % 8);
        let all: Vec<serde_json::Value> = load(&file).unwrap();
        let last: Vec<serde_json::Value> = load_last(&file, n).unwrap();
        assert_eq!(
            last.as_slice(),
            &all[all.len().saturating_sub(n)..],
            "{}",
            path.display()
        );
        load::<RevocationEntry>(&file).unwrap();
        load_last::<RevocationEntry>(&file, n).unwrap();
        load::<MintRecord>(&file).unwrap();
        load_last::<MintRecord>(&file, n).unwrap();
    }
}
