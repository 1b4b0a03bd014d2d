//! No lock-out by strangers, over a real socket: clients on other loopback
//! addresses that know a wallet's address and public key spend their whole
//! rate limit on challenges for it and on sign-ins with random nonces, and
//! the wallet still signs in.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Wallet;
use serde_json::{json, Value};
use wallet_auth::http::{serve, ServeOptions};
use wallet_auth::{AuthConfig, WalletAuth};

/// A client whose connections leave from `ip` (a loopback address).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_keep_a_wallet_from_signing_in() {
    let auth = WalletAuth::builder(AuthConfig {
        // Long enough for the victim's 2 s between challenge and sign-in.
        challenge_ttl_seconds: 30,
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .build()
    .unwrap();
    let per_ip = u64::from(auth.config().rate_limit_per_ip_per_minute);
    assert!(per_ip > 0, "the default config has a per-IP limit");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        auth.router(),
        ServeOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let base = format!("http://{addr}/api/v1/auth");

    let victim = Wallet::generate("Ed25519");
    let address = victim.address();
    let public_key = hex::encode(victim.public_key());
    let done = Arc::new(AtomicBool::new(false));
    let attacker_requests = Arc::new(AtomicU64::new(0));
    let attacker_limited = Arc::new(AtomicU64::new(0));

    let mut attackers = Vec::new();
    for last in 2..=5u8 {
        let client = client_from(Ipv4Addr::new(127, 0, 0, last));
        let (base, address, public_key) = (base.clone(), address.clone(), public_key.clone());
        let (done, sent, limited) = (
            Arc::clone(&done),
            Arc::clone(&attacker_requests),
            Arc::clone(&attacker_limited),
        );
        attackers.push(tokio::spawn(async move {
            // Bounded: at most ten times the per-minute limit, and never
            // past the victim's last sign-in.
            for i in 0..(per_ip * 10) {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let (status, _) = if i % 2 == 0 {
                    post(
                        &client,
                        &format!("{base}/challenge"),
                        &json!({ "address": address }),
                    )
                    .await
                } else {
                    let nonce = hex::encode(rand_bytes());
                    post(
                        &client,
                        &format!("{base}/sign-in"),
                        &json!({
                            "address": address,
                            "public_key": public_key,
                            "signature": "11".repeat(64),
                            "challenge": nonce,
                            "algorithm": "Ed25519",
                        }),
                    )
                    .await
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if status == 429 {
                    limited.fetch_add(1, Ordering::Relaxed);
                    // Spent: keep knocking, slowly, as a real attacker would.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    let client = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let mut successes = 0;
    for _ in 0..10 {
        let (status, body) = post(
            &client,
            &format!("{base}/challenge"),
            &json!({ "address": address }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let nonce = body["challenge"].as_str().unwrap().to_string();
        // A wallet that takes 2 s to sign (a human at a hardware wallet).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (status, body) = post(
            &client,
            &format!("{base}/sign-in"),
            &json!({
                "address": address,
                "public_key": public_key,
                "signature": hex::encode(victim.sign(nonce.as_bytes())),
                "challenge": nonce,
                "algorithm": "Ed25519",
            }),
        )
        .await;
        if status == 200 {
            successes += 1;
        } else {
            eprintln!("victim's sign-in refused: {status} {body}");
        }
    }
    done.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();

    let sent = attacker_requests.load(Ordering::Relaxed);
    let limited = attacker_limited.load(Ordering::Relaxed);
    eprintln!("attackers sent {sent} requests, {limited} answered 429; victim {successes}/10");
    // The attackers really did spend their limit (else the test proves nothing).
    assert!(limited > 0, "the attackers were never rate limited");
    assert!(sent >= 4 * per_ip, "the attackers sent {sent} requests");
    assert!(
        successes >= 9,
        "the victim signed in {successes} times out of 10"
    );
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).unwrap();
    b
}
