//! Sign in with real wallets (SPEC 9): EIP-4361 for Ethereum accounts
//! (`eip191`), Sign-In With Solana (`solana`), and the domain-bound message
//! for the pico algorithms. The message must be the issued one byte for
//! byte, so a phishing site that relays a victim's signature gets nothing.
//!
//! The wallets' own libraries: `fixtures/wallet-js/signatures.json` holds
//! messages this server issued, signed by viem and @noble/curves (verified
//! here without Node), and `node_e2e_*` runs that script against a running
//! standalone server.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use common::{app, app_with, claims_of, missing_dependency, Reply, TestApp, Wallet};
use serde_json::{json, Value};
use wallet_auth::wallet::{self, eip191, Algorithm};
use wallet_auth::{AuthConfig, ContractWalletVerifier, MemoryChallengeStore, StoreError};

const PICO: [&str; 4] = [
    "Ed25519",
    "secp256k1",
    "secp256k1-uncompressed",
    "ML-DSA-65",
];

fn config() -> AuthConfig {
    AuthConfig {
        supported_wallet_algorithms: ["ML-DSA-65", "Ed25519", "secp256k1", "eip191", "solana"]
            .map(String::from)
            .to_vec(),
        chain_ids: vec![1, 8453],
        ..AuthConfig::default()
    }
}

fn wallets_app() -> TestApp {
    app(config())
}

/// `/challenge` for `wallet`, naming its algorithm; returns the reply body.
async fn challenge(app: &TestApp, wallet: &Wallet, extra: Value) -> Value {
    let mut body = json!({ "address": wallet.address(), "algorithm": wallet.algorithm() });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = app.post("/challenge", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// The wire spelling of a signature of `wallet`.
fn wire_signature(wallet: &Wallet, sig: &[u8]) -> String {
    match wallet.algorithm() {
        "eip191" => format!("0x{}", hex::encode(sig)),
        "solana" => bs58::encode(sig).into_string(),
        _ => hex::encode(sig),
    }
}

/// A sign-in body presenting `message` (signed by `wallet`) for `nonce`.
fn body(wallet: &Wallet, nonce: &str, message: &str) -> Value {
    let mut b = json!({
        "address": wallet.address(),
        "signature": wire_signature(wallet, &wallet.sign(message.as_bytes())),
        "challenge": nonce,
        "algorithm": wallet.algorithm(),
        "message": message,
    });
    if !matches!(wallet.algorithm(), "eip191" | "solana") {
        b["public_key"] = json!(hex::encode(wallet.public_key()));
    }
    b
}

async fn sign_in_with_message(app: &TestApp, wallet: &Wallet) -> Reply {
    let c = challenge(app, wallet, json!({})).await;
    let (nonce, message) = (
        c["challenge"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    );
    app.post("/sign-in", body(wallet, nonce, message)).await
}

fn assert_refused(r: &Reply, status: StatusCode, detail: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.detail(), detail, "{}", r.body);
}

#[tokio::test]
async fn an_ethereum_wallet_signs_in_with_eip4361() {
    let app = wallets_app();
    let wallet = Wallet::generate("eip191");
    let address = wallet.address();
    // Asked in lower case: the message names the EIP-55 address.
    let r = app
        .post(
            "/challenge",
            json!({ "address": address.to_lowercase(), "algorithm": "eip191" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let nonce = r.body["challenge"].as_str().unwrap();
    let message = r.body["message"].as_str().unwrap();
    let lines: Vec<&str> = message.split('\n').collect();
    assert_eq!(
        lines[0],
        "localhost:8100 wants you to sign in with your Ethereum account:"
    );
    assert_eq!(lines[1], address);
    assert_eq!(
        (lines[2], lines[3]),
        ("", ""),
        "two blank lines, no statement"
    );
    assert_eq!(lines[4], "URI: http://localhost:8100");
    assert_eq!(lines[5], "Version: 1");
    assert_eq!(lines[6], "Chain ID: 1");
    assert_eq!(lines[7], format!("Nonce: {nonce}"));
    assert!(lines[8].starts_with("Issued At: ") && lines[8].ends_with('Z'));
    assert!(lines[9].starts_with("Expiration Time: "));
    assert_eq!(lines.len(), 10);

    // Signed in with the lower-case address too: it is compared
    // case-insensitively, and the wallet id is the EIP-55 spelling.
    let mut b = body(&wallet, nonce, message);
    b["address"] = json!(address.to_lowercase());
    let s = app.post("/sign-in", b).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["address"], address);
    assert_eq!(s.body["algorithm"], "eip191");
    let claims = claims_of(s.body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], address);
    assert_eq!(claims["wallet_address"], address);
    assert_eq!(claims["algorithm"], "eip191");
    assert_eq!(claims["chain_id"], 1);
    assert_eq!(claims["role"], "wallet");
}

#[tokio::test]
async fn the_chain_id_is_one_of_chain_ids_and_is_carried() {
    let app = wallets_app();
    let wallet = Wallet::generate("eip191");
    let c = challenge(&app, &wallet, json!({ "chain_id": 8453 })).await;
    let message = c["message"].as_str().unwrap();
    assert!(message.contains("\nChain ID: 8453\n"), "{message}");
    let s = app
        .post(
            "/sign-in",
            body(&wallet, c["challenge"].as_str().unwrap(), message),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    let claims = claims_of(s.body["access_token"].as_str().unwrap());
    assert_eq!(claims["chain_id"], 8453);

    for (chain_id, detail) in [
        (json!(5), "chain id not allowed: 5"),
        (json!(0), "chain_id must be a positive integer"),
        (json!(-1), "chain_id must be a positive integer"),
        (json!("1"), "chain_id must be an integer"),
    ] {
        let r = app
            .post(
                "/challenge",
                json!({ "address": wallet.address(), "algorithm": "eip191", "chain_id": chain_id }),
            )
            .await;
        assert_refused(&r, StatusCode::BAD_REQUEST, detail);
    }
    let r = app
        .post(
            "/challenge",
            json!({ "address": "ab".repeat(32), "algorithm": "Ed25519", "chain_id": 1 }),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "chain_id applies only to algorithm eip191",
    );
}

#[tokio::test]
async fn a_solana_wallet_signs_in_with_siws_hex_or_base58() {
    let app = wallets_app();
    let wallet = Wallet::generate("solana");
    let address = wallet.address();
    let c = challenge(&app, &wallet, json!({})).await;
    let nonce = c["challenge"].as_str().unwrap();
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "localhost:8100 wants you to sign in with your Solana account:\n{address}\n\nURI: "
        )),
        "{message}"
    );
    assert!(message.contains("\nChain ID: mainnet\n"), "{message}");
    let s = app.post("/sign-in", body(&wallet, nonce, message)).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    let claims = claims_of(s.body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], address);
    assert_eq!(claims["algorithm"], "solana");
    assert!(claims.get("chain_id").is_none());

    // Hex works as well as base58.
    let c = challenge(&app, &wallet, json!({})).await;
    let message = c["message"].as_str().unwrap();
    let mut b = body(&wallet, c["challenge"].as_str().unwrap(), message);
    b["signature"] = json!(hex::encode(wallet.sign(message.as_bytes())));
    assert_eq!(app.post("/sign-in", b).await.status, StatusCode::OK);
}

#[tokio::test]
async fn pico_algorithms_sign_the_message_naming_their_key() {
    let app = wallets_app();
    for alg in PICO {
        let wallet = Wallet::generate(alg);
        let c = challenge(&app, &wallet, json!({})).await;
        let message = c["message"].as_str().unwrap();
        let header = format!(
            "localhost:8100 wants you to sign in with your {} key:\n{}\n\n\nURI: ",
            wallet.algorithm(),
            wallet.address()
        );
        assert!(message.starts_with(&header), "{alg}: {message}");
        assert!(!message.contains("Chain ID"), "{message}");
        let s = app
            .post(
                "/sign-in",
                body(&wallet, c["challenge"].as_str().unwrap(), message),
            )
            .await;
        assert_eq!(s.status, StatusCode::OK, "{alg}: {}", s.body);
    }
    // No algorithm named: "your wallet key", and any pico algorithm may sign it.
    let wallet = Wallet::generate("Ed25519");
    let r = app
        .post("/challenge", json!({ "address": wallet.address() }))
        .await;
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("localhost:8100 wants you to sign in with your wallet key:\n"),
        "{message}"
    );
    let s = app
        .post(
            "/sign-in",
            body(&wallet, r.body["challenge"].as_str().unwrap(), message),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);

    // Presenting the message but signing the nonce: the message is what is verified.
    let c = challenge(&app, &wallet, json!({})).await;
    let nonce = c["challenge"].as_str().unwrap();
    let mut b = body(&wallet, nonce, c["message"].as_str().unwrap());
    b["signature"] = json!(hex::encode(wallet.sign(nonce.as_bytes())));
    assert_refused(
        &app.post("/sign-in", b).await,
        StatusCode::UNAUTHORIZED,
        "signature verification failed",
    );
    // Without a message, pico's bare nonce still signs in.
    app.sign_in(&wallet).await;
}

#[tokio::test]
async fn require_signed_message_refuses_the_bare_nonce() {
    let app = app(AuthConfig {
        require_signed_message: true,
        ..config()
    });
    let wallet = Wallet::generate("Ed25519");
    let b = app.sign_in_body(&wallet).await;
    let r = app.post("/sign-in", b.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.detail().starts_with("message required"), "{}", r.body);
    // The refusal burned nothing: the same challenge signs in with its message.
    let s = sign_in_with_message(&app, &wallet).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
}

/// Two servers that share a challenge store (the strongest case: the
/// relayed nonce is valid at the first), with different domains.
#[tokio::test]
async fn a_message_issued_by_another_server_is_refused() {
    let shared = Arc::new(MemoryChallengeStore::new(1000));
    let ours = app_with(
        AuthConfig {
            domain: "app.example.com".into(),
            ..config()
        },
        |b| b.with_challenge_store(shared.clone()),
    );
    let phisher = app_with(
        AuthConfig {
            domain: "app-example.evil".into(),
            ..config()
        },
        |b| b.with_challenge_store(shared.clone()),
    );
    for alg in ["eip191", "solana", "Ed25519"] {
        let wallet = Wallet::generate(alg);
        // The phishing site shows the victim its own message for a nonce
        // that is valid at ours, and relays the signature.
        let c = challenge(&phisher, &wallet, json!({})).await;
        let message = c["message"].as_str().unwrap();
        assert!(
            message.starts_with("app-example.evil wants you"),
            "{message}"
        );
        let relayed = body(&wallet, c["challenge"].as_str().unwrap(), message);
        assert_refused(
            &ours.post("/sign-in", relayed.clone()).await,
            StatusCode::UNAUTHORIZED,
            "message does not match the issued challenge",
        );
        // And spent: replaying it at the phisher's own server fails too.
        assert_refused(
            &phisher.post("/sign-in", relayed).await,
            StatusCode::UNAUTHORIZED,
            "invalid or expired challenge",
        );
    }
    // Separate stores: the other server's nonce was never issued here.
    let elsewhere = app(AuthConfig {
        domain: "other.example.com".into(),
        ..config()
    });
    let wallet = Wallet::generate("eip191");
    let c = challenge(&elsewhere, &wallet, json!({})).await;
    let relayed = body(
        &wallet,
        c["challenge"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    );
    assert_refused(
        &ours.post("/sign-in", relayed).await,
        StatusCode::UNAUTHORIZED,
        "invalid or expired challenge",
    );
}

/// Each edit is signed by the wallet (as a victim's wallet would sign what
/// a phishing page shows it): only the byte-for-byte comparison refuses it.
#[tokio::test]
async fn a_message_that_differs_in_any_field_or_byte_is_refused() {
    let app = wallets_app();
    let wallet = Wallet::generate("eip191");
    let other = Wallet::generate("eip191");
    type Edit = Box<dyn Fn(&str, &str) -> String>;
    let other_address = other.address();
    let edits: Vec<(&str, Edit)> = vec![
        (
            "nonce",
            Box::new(|m: &str, n: &str| m.replace(n, &"0".repeat(64))),
        ),
        (
            "address",
            Box::new(move |m: &str, _: &str| {
                let line = m.split('\n').nth(1).unwrap().to_string();
                m.replace(&line, &other_address)
            }),
        ),
        (
            "address case",
            Box::new(|m: &str, _: &str| {
                let line = m.split('\n').nth(1).unwrap().to_string();
                m.replace(&line, &line.to_lowercase())
            }),
        ),
        (
            "chain id",
            Box::new(|m: &str, _: &str| m.replace("Chain ID: 1\n", "Chain ID: 8453\n")),
        ),
        (
            "domain",
            Box::new(|m: &str, _: &str| m.replace("localhost:8100 wants", "localhost:8101 wants")),
        ),
        (
            "expiration",
            Box::new(|m: &str, _: &str| {
                let (head, _) = m.rsplit_once("Expiration Time: ").unwrap();
                format!("{head}Expiration Time: 2999-01-01T00:00:00Z")
            }),
        ),
        (
            "statement added",
            Box::new(|m: &str, _: &str| m.replacen("\n\n\nURI", "\n\nSign in\n\nURI", 1)),
        ),
        (
            "trailing newline",
            Box::new(|m: &str, _: &str| format!("{m}\n")),
        ),
        ("CRLF", Box::new(|m: &str, _: &str| m.replace('\n', "\r\n"))),
        (
            "last byte",
            Box::new(|m: &str, _: &str| {
                let mut b = m.as_bytes().to_vec();
                let last = b.len() - 1;
                b[last] = if b[last] == b'Z' { b'z' } else { b'Z' };
                String::from_utf8(b).unwrap()
            }),
        ),
    ];
    for (what, edit) in &edits {
        let c = challenge(&app, &wallet, json!({})).await;
        let nonce = c["challenge"].as_str().unwrap();
        let issued = c["message"].as_str().unwrap();
        let changed = edit(issued, nonce);
        assert_ne!(changed, issued, "{what}: the edit changed nothing");
        let r = app.post("/sign-in", body(&wallet, nonce, &changed)).await;
        assert_refused(
            &r,
            StatusCode::UNAUTHORIZED,
            "message does not match the issued challenge",
        );
        // The attempt spent the challenge: the honest message is refused now.
        let r = app.post("/sign-in", body(&wallet, nonce, issued)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
    }
    // The message of another of the same wallet's challenges.
    let first = challenge(&app, &wallet, json!({})).await;
    let second = challenge(&app, &wallet, json!({})).await;
    let r = app
        .post(
            "/sign-in",
            body(
                &wallet,
                first["challenge"].as_str().unwrap(),
                second["message"].as_str().unwrap(),
            ),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "message does not match the issued challenge",
    );
    // A Solana message presented as eip191 (and the reverse) never matches.
    let sol = Wallet::generate("solana");
    let c = challenge(&app, &sol, json!({})).await;
    let mut b = body(
        &sol,
        c["challenge"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    );
    b["algorithm"] = json!("Ed25519");
    b["address"] = json!(hex::encode(sol.public_key()));
    b["public_key"] = json!(hex::encode(sol.public_key()));
    b["signature"] = json!(hex::encode(
        sol.sign(c["message"].as_str().unwrap().as_bytes())
    ));
    let r = app.post("/sign-in", b).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

#[tokio::test]
async fn a_message_presented_after_its_expiry_is_refused() {
    let app = wallets_app();
    for alg in ["eip191", "solana", "ML-DSA-65"] {
        let wallet = Wallet::generate(alg);
        let c = challenge(&app, &wallet, json!({})).await;
        let b = body(
            &wallet,
            c["challenge"].as_str().unwrap(),
            c["message"].as_str().unwrap(),
        );
        app.clock.advance(Duration::from_secs(60));
        assert_refused(
            &app.post("/sign-in", b).await,
            StatusCode::UNAUTHORIZED,
            "invalid or expired challenge",
        );
        // One second before its Expiration Time it still signs in.
        let c = challenge(&app, &wallet, json!({})).await;
        let b = body(
            &wallet,
            c["challenge"].as_str().unwrap(),
            c["message"].as_str().unwrap(),
        );
        app.clock.advance(Duration::from_secs(58));
        let r = app.post("/sign-in", b).await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", r.body);
    }
}

#[tokio::test]
async fn the_high_s_twin_of_an_ethereum_signature_is_refused() {
    let app = wallets_app();
    let wallet = Wallet::generate("eip191");
    let c = challenge(&app, &wallet, json!({})).await;
    let nonce = c["challenge"].as_str().unwrap();
    let message = c["message"].as_str().unwrap();
    let mut b = body(&wallet, nonce, message);
    let twin = wallet.sign_eip191_high_s(message.as_bytes());
    // The twin is a valid signature by the same key, by plain ECDSA.
    b["signature"] = json!(format!("0x{}", hex::encode(&twin)));
    assert_refused(
        &app.post("/sign-in", b).await,
        StatusCode::UNAUTHORIZED,
        "signature verification failed",
    );
    assert_eq!(
        wallet::verify(
            Algorithm::Eip191,
            &wallet.public_key(),
            message.as_bytes(),
            &twin
        ),
        Err(wallet_auth::VerifyError::HighS)
    );
}

#[tokio::test]
async fn malformed_wallet_input_is_a_400_that_burns_nothing() {
    let app = wallets_app();
    let wallet = Wallet::generate("eip191");
    let address = wallet.address();
    let c = challenge(&app, &wallet, json!({})).await;
    let nonce = c["challenge"].as_str().unwrap();
    let message = c["message"].as_str().unwrap();
    let good = body(&wallet, nonce, message);
    let sig = wallet.sign(message.as_bytes());
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let mut bad_checksum = address.clone().into_bytes();
    let i = bad_checksum
        .iter()
        .rposition(u8::is_ascii_alphabetic)
        .filter(|&i| i > 1)
        .unwrap();
    bad_checksum[i] ^= 0x20;
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let mut v29 = sig.clone();
    v29[64] = 29;
    let cases = [
        (
            with("address", json!(&address[2..])),
            "invalid address for eip191: expected 0x and 40 hex digits",
        ),
        (
            with("address", json!(format!("{address}00"))),
            "invalid address for eip191: expected 0x and 40 hex digits",
        ),
        (
            with("address", json!(bad_checksum)),
            "invalid address for eip191: mixed case that is not its EIP-55 checksum (send it in lower case or EIP-55)",
        ),
        (
            with("signature", json!(format!("0x{}", hex::encode(&sig[..64])))),
            "invalid signature for eip191: expected 65 bytes (r, s, v) as 130 hex digits; \
             contract-wallet (EIP-1271) signatures are not verified by this server; got 64 bytes",
        ),
        (
            with("signature", json!(format!("0x{}", hex::encode([&sig[..], &sig[..]].concat())))),
            "invalid signature for eip191: expected 65 bytes (r, s, v) as 130 hex digits; \
             contract-wallet (EIP-1271) signatures are not verified by this server; got 130 bytes",
        ),
        (
            with("signature", json!(format!("0x{}", hex::encode(&v29)))),
            "invalid signature for eip191: v must be 27, 28, 0 or 1, got 29",
        ),
        (with("signature", json!("0xzz")), "invalid hex encoding"),
        (
            with("message", Value::Null),
            "address, signature, challenge, and message required",
        ),
        (
            with("message", json!("")),
            "address, signature, challenge, and message required",
        ),
        (with("message", json!(7)), "message must be a string"),
        (
            with("message", json!("x".repeat(20_000))),
            "message too long (max 12288 characters)",
        ),
    ];
    for (b, detail) in &cases {
        assert_refused(
            &app.post("/sign-in", b.clone()).await,
            StatusCode::BAD_REQUEST,
            detail,
        );
    }
    // Solana: a malformed address or signature.
    let sol = Wallet::generate("solana");
    let sc = challenge(&app, &sol, json!({})).await;
    let sgood = body(
        &sol,
        sc["challenge"].as_str().unwrap(),
        sc["message"].as_str().unwrap(),
    );
    for (field, value, detail) in [
        (
            "address",
            json!(hex::encode(sol.public_key())),
            "invalid address for solana: expected the base58 of a 32-byte Ed25519 public key",
        ),
        (
            "signature",
            json!(hex::encode([0u8; 63])),
            "invalid signature for solana: expected 64 bytes as 128 hex digits or base58",
        ),
        (
            "signature",
            json!("0OIl"),
            "invalid signature for solana: expected 64 bytes as 128 hex digits or base58",
        ),
    ] {
        let mut b = sgood.clone();
        b[field] = value;
        assert_refused(
            &app.post("/sign-in", b).await,
            StatusCode::BAD_REQUEST,
            detail,
        );
    }
    // /challenge refuses what cannot be an address of the algorithm.
    for (addr, alg, detail) in [
        (
            "0x1234",
            "eip191",
            "invalid address for eip191: expected 0x and 40 hex digits",
        ),
        (
            "not-base58-0OIl",
            "solana",
            "invalid address for solana: expected the base58 of a 32-byte Ed25519 public key",
        ),
    ] {
        let r = app
            .post("/challenge", json!({ "address": addr, "algorithm": alg }))
            .await;
        assert_refused(&r, StatusCode::BAD_REQUEST, detail);
    }
    let r = app
        .post(
            "/challenge",
            json!({ "address": address, "algorithm": "RSA" }),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "unsupported wallet algorithm: RSA",
    );
    // None of it burned the challenges.
    let s = app.post("/sign-in", good).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(app.post("/sign-in", sgood).await.status, StatusCode::OK);
}

#[tokio::test]
async fn wallet_algorithms_are_off_unless_enabled() {
    let app = common::default_app();
    let wallet = Wallet::generate("eip191");
    for path in ["/challenge", "/sign-in"] {
        let r = app
            .post(
                path,
                json!({
                    "address": wallet.address(), "algorithm": "eip191", "message": "m",
                    "signature": "0x00", "challenge": "c"
                }),
            )
            .await;
        assert_refused(
            &r,
            StatusCode::BAD_REQUEST,
            "unsupported wallet algorithm: eip191",
        );
    }
}

/// An EIP-1271 stand-in: the contract `address` accepts exactly `accepted`.
struct Contract {
    address: [u8; 20],
    accepted: Vec<u8>,
    chain_id: u64,
}

#[async_trait]
impl ContractWalletVerifier for Contract {
    async fn is_valid_signature(
        &self,
        chain_id: u64,
        address: &[u8; 20],
        hash: &[u8; 32],
        signature: &[u8],
    ) -> Result<bool, StoreError> {
        let _ = hash;
        Ok(chain_id == self.chain_id && *address == self.address && signature == self.accepted)
    }
}

#[tokio::test]
async fn contract_wallets_need_a_verifier() {
    // A Safe-like account: its "signature" is two owners' signatures.
    let owner = Wallet::generate("eip191");
    let contract_address = [0x5a; 20];
    let contract_id = eip191::checksum_address(&contract_address);
    let plain = wallets_app();
    let with_verifier = app_with(config(), |b| {
        b.with_contract_wallet_verifier(Arc::new(Contract {
            address: contract_address,
            accepted: vec![0xab; 130],
            chain_id: 1,
        }))
    });
    for app in [&plain, &with_verifier] {
        let r = app
            .post(
                "/challenge",
                json!({ "address": contract_id, "algorithm": "eip191" }),
            )
            .await;
        let nonce = r.body["challenge"].as_str().unwrap();
        let message = r.body["message"].as_str().unwrap();
        let mut b = json!({
            "address": contract_id, "message": message, "challenge": nonce,
            "algorithm": "eip191", "signature": format!("0x{}", hex::encode([0xab; 130])),
        });
        let r = app.post("/sign-in", b.clone()).await;
        if std::ptr::eq(app, &plain) {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
            assert!(r.detail().contains("EIP-1271"), "{}", r.body);
            // An owner's EOA signature is not the contract's.
            b["signature"] = json!(format!("0x{}", hex::encode(owner.sign(message.as_bytes()))));
            assert_refused(
                &app.post("/sign-in", b).await,
                StatusCode::UNAUTHORIZED,
                "signature verification failed: not signed by the key of this address, \
                 and contract-wallet (EIP-1271) signatures are not verified by this server",
            );
        } else {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let claims = claims_of(r.body["access_token"].as_str().unwrap());
            assert_eq!(claims["sub"], contract_id);
            // A signature the contract refuses.
            let r = app
                .post(
                    "/challenge",
                    json!({ "address": contract_id, "algorithm": "eip191" }),
                )
                .await;
            b["challenge"] = r.body["challenge"].clone();
            b["message"] = r.body["message"].clone();
            b["signature"] = json!(format!("0x{}", hex::encode([0xac; 130])));
            assert_refused(
                &app.post("/sign-in", b).await,
                StatusCode::UNAUTHORIZED,
                "signature verification failed",
            );
            // EOAs still sign in by recovery, without asking the contract.
            let s = sign_in_with_message(app, &owner).await;
            assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        }
    }
}

/// EIP-191 `personal_sign` known answer: the signature of "hello world" by
/// the private key 0x4c08…2318 (the key of the web3.js and ethers docs),
/// as ethers' `Wallet.signMessage` and viem's `signMessage` make it.
#[test]
fn eip191_known_answer() {
    let address = eip191::parse_address("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23").unwrap();
    let wallet = Wallet::from_seed(
        "eip191",
        hex::decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert_eq!(wallet.public_key(), address);
    assert_eq!(
        wallet.address(),
        "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    );
    // RFC 6979 signatures are deterministic: the same bytes as the JS wallets.
    let sig = wallet.sign(b"hello world");
    wallet::verify(Algorithm::Eip191, &address, b"hello world", &sig).unwrap();
    assert_eq!(
        hex::encode(eip191::personal_message_hash(b"hello world")),
        "d9eba16ed0ecae432b71fe008c98cc872bb4cc214d3220a36f365326cf807d68"
    );
}

/// EIP-55's own checksum examples.
#[test]
fn eip55_checksum_examples() {
    for want in [
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ] {
        let bytes = eip191::parse_address(&want.to_lowercase()).unwrap();
        assert_eq!(eip191::checksum_address(&bytes), want);
        assert_eq!(
            common::wallets::eip55(&bytes),
            want,
            "the test helper agrees"
        );
    }
}

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wallet-js/signatures.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Messages this server issued, signed by viem (`signMessage`) and
/// @noble/curves (`ed25519.sign`), recorded by `fixtures/wallet-js/sign.mjs`.
#[test]
fn signatures_made_by_the_wallet_libraries_verify() {
    let f = fixture();
    let eth = &f["eip191"];
    let message = eth["message"].as_str().unwrap();
    let address = eip191::parse_address(eth["address"].as_str().unwrap()).unwrap();
    let sig = hex::decode(eth["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    wallet::verify(Algorithm::Eip191, &address, message.as_bytes(), &sig).unwrap();
    let mut tampered = message.as_bytes().to_vec();
    tampered[0] ^= 1;
    assert!(wallet::verify(Algorithm::Eip191, &address, &tampered, &sig).is_err());
    // The reference parser's fields are the ones the message states.
    let parsed = &eth["parsed"];
    assert_eq!(parsed["address"], eth["address"]);
    assert!(message.starts_with(&format!(
        "{} wants you to sign in with your Ethereum account:\n{}\n",
        parsed["domain"].as_str().unwrap(),
        parsed["address"].as_str().unwrap()
    )));
    assert!(message.contains(&format!("\nNonce: {}\n", parsed["nonce"].as_str().unwrap())));
    assert!(message.contains(&format!("\nChain ID: {}\n", parsed["chainId"])));

    let sol = &f["solana"];
    let message = sol["message"].as_str().unwrap();
    let key = wallet::solana::parse_address(sol["address"].as_str().unwrap()).unwrap();
    for field in ["signature", "signature_base58"] {
        let sig = wallet::solana::parse_signature(sol[field].as_str().unwrap()).unwrap();
        wallet::verify(Algorithm::Solana, &key, message.as_bytes(), &sig).unwrap();
    }
    assert_eq!(sol["parsed"]["chainId"], "mainnet");
    assert!(message.contains(&format!(
        "\nNonce: {}\n",
        sol["parsed"]["nonce"].as_str().unwrap()
    )));
}

/// The Node script against a running standalone server: viem and
/// @noble/curves sign in, and the reference parsers read our messages to
/// exactly the fields we issued.
#[test]
fn node_e2e_wallet_libraries_against_a_running_server() {
    const TEST: &str = "node_e2e_wallet_libraries_against_a_running_server";
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wallet-js");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        return missing_dependency(TEST, "node is not installed");
    }
    for package in [
        "viem",
        "@spruceid/siwe-parser",
        "@solana/wallet-standard-util",
        "@noble/curves",
        "bs58",
    ] {
        if !root.join("node_modules").join(package).exists() {
            return missing_dependency(
                TEST,
                &format!("{package} is not installed (npm ci in fixtures/wallet-js)"),
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = "wallet-auth.e2e.test:8100";
    let uri = "https://wallet-auth.e2e.test:8100/login";
    let server = common::server::Server::start(
        dir.path(),
        &[],
        &[
            (
                "SERVER_AUTH_SUPPORTED_WALLET_ALGORITHMS",
                "eip191,solana,Ed25519",
            ),
            ("SERVER_AUTH_DOMAIN", domain),
            ("SERVER_AUTH_URI", uri),
            ("SERVER_AUTH_CHAIN_IDS", "1,8453"),
            ("SERVER_AUTH_RATE_LIMIT_PER_IP_PER_MINUTE", "0"),
        ],
    );
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&root)
        .args(["sign.mjs", "--server", &server.base, "--domain", domain])
        .args(["--uri", uri, "--chain-id", "8453"]);
    if std::env::var("WALLET_JS_RECORD").is_ok() {
        cmd.args(["--record", "signatures.json"]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node sign.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["failures"], json!([]), "{report}");
    let eth = &report["eip191"];
    assert_eq!(eth["status"], 200);
    assert_eq!(eth["chain_id"], 8453);
    let fields = &eth["fields"];
    assert_eq!(fields["domain"], domain);
    assert_eq!(fields["uri"], uri);
    assert_eq!(fields["version"], "1");
    assert_eq!(fields["chainId"], 8453);
    assert_eq!(fields["statement"], Value::Null);
    assert_eq!(
        fields["address"],
        "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    );
    assert_eq!(eth["sub"], fields["address"]);
    let sol = &report["solana"];
    assert_eq!(sol["status"], 200);
    assert_eq!(sol["fields"]["domain"], domain);
    assert_eq!(sol["sub"], sol["fields"]["address"]);
    drop(server);
}
