//! Access tokens, ML-DSA-65 (RFC 9964) against RS256: mint and verify per
//! second on one core, and token sizes (issue 15).
//!
//! ```text
//! cargo bench --bench token_algorithms
//! ```
//!
//! Each algorithm signs the same wallet access-token claims through
//! `TokenService::sign_access` (header, base64url, signature: what a
//! sign-in pays on the CPU pool) and validates them through
//! `TokenService::validate_access` (what each Bearer check pays: header,
//! kid, signature, claims). Times are thread CPU time, as in `hot_paths`,
//! and criterion reports them as elements per second (one token each). The
//! sizes of the token, its signature and the JWK are printed first.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wallet_auth::clock::SystemClock;
use wallet_auth::token::{AccessClaims, SigningAlgorithm, TokenService};
use wallet_auth::SigningKey;

fn cpu_timed<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let start = cpu_time::ThreadTime::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed()
}

fn service(alg: SigningAlgorithm) -> TokenService {
    wallet_auth::install_crypto_provider();
    TokenService::new(
        Arc::new(SigningKey::generate_for(alg).expect("key")),
        &[],
        b"bench refresh secret",
        "http://localhost:8100".into(),
        "pico".into(),
        Arc::new(SystemClock),
    )
}

fn claims(now: u64) -> AccessClaims {
    let id = "ab".repeat(32);
    AccessClaims {
        algorithm: Some("Ed25519".into()),
        wallet_address: Some(id.clone()),
        auth_time: Some(now),
        ..AccessClaims::new(
            "http://localhost:8100",
            "pico",
            &id,
            "wallet",
            now,
            now + 28_800,
        )
    }
}

fn tokens(c: &mut Criterion) {
    let services: Vec<(SigningAlgorithm, TokenService)> =
        [SigningAlgorithm::Rs256, SigningAlgorithm::MlDsa65]
            .into_iter()
            .map(|alg| (alg, service(alg)))
            .collect();
    for (alg, s) in &services {
        let token = s.sign_access(&claims(s.now())).unwrap();
        let sig = token.rsplit('.').next().unwrap().len();
        let jwk = serde_json::to_string(&s.jwks()[0]).unwrap().len();
        println!(
            "token size {alg}: {} bytes (signature {sig} base64url chars); JWK {jwk} bytes",
            token.len()
        );
    }
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    for (alg, s) in &services {
        let access = claims(s.now());
        g.bench_function(format!("mint/{alg}"), |b| {
            b.iter_custom(|iters| cpu_timed(iters, || s.sign_access(black_box(&access)).unwrap()))
        });
        let token = s.sign_access(&access).unwrap();
        g.bench_function(format!("verify/{alg}"), |b| {
            b.iter_custom(|iters| {
                cpu_timed(iters, || s.validate_access(black_box(&token)).unwrap())
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = tokens
}
criterion_main!(benches);
