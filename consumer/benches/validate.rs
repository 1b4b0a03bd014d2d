#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Consumer validations per second against a bare `jsonwebtoken` RS256
//! decode of the same token with the same key, in one run (issue 13's
//! ratio; target at least 90%).
//!
//! The JWKS is served from an in-process listener once; the consumer
//! validates from its warm cache (revocation checks off, as a bare decode
//! has none). Both sides run inside the same `block_on`, so the runtime's
//! cost is on both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use wallet_auth_consumer::{Config, Consumer, RevocationSource};

const PEM: &str = include_str!("../../fixtures/keys/test-rsa-2048.pem");

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = EncodingKey::from_rsa_pem(PEM.as_bytes()).expect("test key");
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("bench".into());
    let jwk_value = serde_json::to_value(&jwk).expect("jwk json");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bench".into());
    let claims = json!({
        "iss": "http://localhost:8100", "aud": "pico", "sub": "bench", "role": "wallet",
        "jti": "0123456789abcdef0123456789abcdef", "iat": now, "exp": now + 3600,
    });
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("token");

    let consumer = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let jwks = json!({ "keys": [jwk_value] });
        let app = axum::Router::new().route(
            "/api/v1/auth/jwks",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut config = Config::new("http://localhost:8100", "pico");
        config.base_url = Some(format!("http://{addr}"));
        config.revocations = RevocationSource::Off;
        let consumer = Consumer::start(config).expect("consumer");
        assert!(consumer.ready(Duration::from_secs(10)).await, "JWKS");
        consumer.validate(&token).await.expect("valid");
        consumer
    });

    let n = jwk.algorithm.clone();
    let decoding = match n {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => {
            DecodingKey::from_rsa_components(&rsa.n, &rsa.e).expect("key")
        }
        _ => unreachable!("an RSA key"),
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["http://localhost:8100"]);
    validation.set_audience(&["pico"]);
    jsonwebtoken::decode::<Value>(&token, &decoding, &validation).expect("bare decode");

    let mut group = c.benchmark_group("validate_rs256");
    group.bench_function("bare_jsonwebtoken", |b| {
        b.iter(|| {
            rt.block_on(async {
                jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_ok()
            })
        })
    });
    group.bench_function("consumer", |b| {
        b.iter(|| rt.block_on(consumer.validate(&token)).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
