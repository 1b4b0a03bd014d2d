//! Micro-benchmarks of the hot paths (issue 6, part 1).
//!
//! ```text
//! cargo bench --bench hot_paths            # everything
//! cargo bench --bench hot_paths -- verify  # one group
//! ```
//!
//! `bench/run.sh` runs these in the same run as the load benchmark and reads
//! the medians from `target/criterion/*/new/estimates.json` to compute the
//! crypto-bound ceiling of sign-in. The `verify` and `mint` groups report
//! thread CPU time (see [`cpu_timed`]); the others report wall time.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/wallets.rs"]
mod wallets;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wallet_auth::jsonl::JsonlWriter;
use wallet_auth::token::{AccessClaims, RefreshClaims};
use wallet_auth::wallet::{self, Algorithm};
use wallet_auth::{
    AuthConfig, ChallengeStore, MemoryChallengeStore, MemoryRevocationStore, RevocationEntry,
    RevocationKind, SigningKey, WalletAuth,
};
use wallets::Wallet;

const CHALLENGE: &[u8] = b"4f1c2a9be0d3c7a8f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291807";

/// Runs `f` `iters` times and returns the CPU time this thread spent, not
/// the wall time: on a machine shared with other engineers, time spent
/// preempted must not count as the cost of the operation. The crypto-bound
/// ceiling of sign-in is computed from these figures.
fn cpu_timed<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let start = cpu_time::ThreadTime::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed()
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    for (name, alg) in [
        ("Ed25519", Algorithm::Ed25519),
        ("secp256k1", Algorithm::Secp256k1),
        ("ML-DSA-65", Algorithm::MlDsa65),
    ] {
        let w = Wallet::from_seed(name, [7u8; 32]);
        let pk = w.public_key();
        let sig = w.sign(CHALLENGE);
        wallet::verify(alg, &pk, CHALLENGE, &sig).expect("valid signature");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cpu_timed(iters, || {
                    wallet::verify(alg, black_box(&pk), black_box(CHALLENGE), black_box(&sig))
                })
            })
        });
    }
    g.finish();
}

fn service() -> WalletAuth {
    WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(SigningKey::generate(2048).expect("RSA key"))
    .build()
    .expect("service")
}

fn access_claims(now: u64) -> AccessClaims {
    let id = "ab".repeat(32);
    AccessClaims {
        iss: "http://localhost:8100".into(),
        aud: "pico".into(),
        sub: id.clone(),
        iat: now,
        exp: now + 28_800,
        jti: wallet_auth::token::new_jti(),
        role: "wallet".into(),
        algorithm: Some("Ed25519".into()),
        wallet_address: Some(id),
        chain_id: None,
        session_id: None,
        agent_id: None,
        scope: None,
        auth_time: Some(now),
        token_type: None,
    }
}

fn mint(c: &mut Criterion) {
    let auth = service();
    let now = auth.tokens().now();
    let access = access_claims(now);
    let jti = wallet_auth::token::new_jti();
    let refresh = RefreshClaims {
        iss: access.iss.clone(),
        aud: access.aud.clone(),
        sub: access.sub.clone(),
        iat: now,
        exp: now + 7 * 86_400,
        jti: jti.clone(),
        role: Some("wallet".into()),
        token_type: "refresh".into(),
        fam: jti,
        auth_time: Some(now),
        gen: 0,
        pwv: None,
    };
    let mut g = c.benchmark_group("mint");
    g.bench_function("rs256_access", |b| {
        b.iter_custom(|iters| {
            cpu_timed(iters, || {
                auth.tokens().sign_access(black_box(&access)).unwrap()
            })
        })
    });
    g.bench_function("hs256_refresh", |b| {
        b.iter_custom(|iters| {
            cpu_timed(iters, || {
                auth.tokens().sign_refresh(black_box(&refresh)).unwrap()
            })
        })
    });
    let token = auth.tokens().sign_access(&access).unwrap();
    g.bench_function("rs256_validate", |b| {
        b.iter_custom(|iters| {
            cpu_timed(iters, || {
                auth.tokens().validate_access(black_box(&token)).unwrap()
            })
        })
    });
    g.finish();
}

fn challenge(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryChallengeStore::new(1_000_000);
    let ttl = Duration::from_secs(60);
    // A store that already holds many outstanding challenges.
    rt.block_on(async {
        for i in 0..100_000 {
            store.issue(&format!("{i:064x}"), ttl).await.unwrap();
        }
    });
    let address = "cd".repeat(32);
    let mut g = c.benchmark_group("challenge");
    g.bench_function("issue_consume", |b| {
        b.iter(|| {
            rt.block_on(async {
                let n = store.issue(&address, ttl).await.unwrap();
                assert!(store.consume(&address, &n).await.unwrap());
            })
        })
    });
    g.finish();
}

fn denylist(c: &mut Criterion) {
    let store = MemoryRevocationStore::new();
    let jtis: Vec<String> = (0..10_000).map(|i| format!("{i:032x}")).collect();
    for j in &jtis {
        store.insert_if_absent(RevocationEntry {
            jti: j.clone(),
            revoked_at: 1.0,
            reason: "bench".into(),
            revoked_by: "bench".into(),
            exp: None,
            kind: RevocationKind::Token,
        });
    }
    let absent = wallet_auth::token::new_jti();
    let mut g = c.benchmark_group("denylist_10k");
    g.bench_function("lookup_hit", |b| {
        b.iter(|| store.lookup(black_box(&jtis[4321])).is_some())
    });
    g.bench_function("lookup_miss", |b| {
        b.iter(|| store.lookup(black_box(&absent)).is_some())
    });
    g.finish();
}

/// One append (with fsync) from each of `writers` concurrent tasks; the time
/// reported is per append, so group commit shows as a smaller figure.
fn jsonl(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let writer = Arc::new(
        rt.block_on(async { JsonlWriter::open(dir.path().join("bench.jsonl")) })
            .unwrap(),
    );
    let line = br#"{"jti":"0123456789abcdef0123456789abcdef","revoked_at":1795352918.94,"reason":"bench","revoked_by":"admin@pico.local"}"#.to_vec();
    let mut g = c.benchmark_group("jsonl_append_fsync");
    g.sample_size(10);
    for writers in [1usize, 16, 256] {
        g.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let writer = Arc::clone(&writer);
                let line = line.clone();
                rt.block_on(async move {
                    // `writers` tasks, each appending its share in a loop.
                    let per = iters.div_ceil(writers as u64);
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..writers)
                        .map(|_| {
                            let w = Arc::clone(&writer);
                            let l = line.clone();
                            tokio::spawn(async move {
                                for _ in 0..per {
                                    w.append(vec![l.clone()]).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    // Per append actually made.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * writers as u64) as f64)
                })
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
    targets = verify, mint, challenge, denylist, jsonl
}
criterion_main!(benches);
