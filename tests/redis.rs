//! Many instances on one real redis-server: two routers sharing challenges
//! and the denylist, the stated propagation bound, and an outage of Redis
//! in the middle of a run.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::redis_server::{unique_prefix, RedisServer};
use common::{claims_of, TestApp, Wallet};
use serde_json::json;
use wallet_auth::{AuthConfig, RedisOptions, RedisStores, RevocationStore};

/// The stated worst case between a revoke acknowledged at one instance and
/// its effect at another: `RedisOptions::max_staleness`, here shortened.
const MAX_STALENESS: Duration = Duration::from_millis(1500);
const FEED_BLOCK: Duration = Duration::from_millis(500);

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        key_prefix: prefix.into(),
        op_timeout: Duration::from_millis(500),
        feed_block: FEED_BLOCK,
        max_staleness: MAX_STALENESS,
        ..Default::default()
    }
}

/// A router whose three stores live in Redis under `prefix`.
async fn app_on(url: &str, prefix: &str) -> TestApp {
    app_on_clock(url, prefix, Arc::new(wallet_auth::clock::SystemClock)).await
}

/// As [`app_on`], the denylist reading time from `clock`.
async fn app_on_clock(url: &str, prefix: &str, clock: wallet_auth::clock::SharedClock) -> TestApp {
    let stores = RedisStores::connect(url, options(prefix))
        .await
        .unwrap()
        .with_clock(clock);
    let revocations = stores.revocations().await.unwrap();
    common::app_with(AuthConfig::default(), |builder| {
        builder
            .with_challenge_store(Arc::new(stores.challenges()))
            .with_revocation_store(Arc::new(revocations))
            .with_mint_audit_store(Arc::new(stores.mint_audit(5000)))
    })
}

/// An access token with `role`, signed by the shared test key.
fn token(app: &TestApp, role: &str) -> String {
    common::token_with_role(app, role)
}

async fn revoke(app: &TestApp, jti: &str) -> common::Reply {
    let op = format!("Bearer {}", token(app, "operator"));
    app.post_with(
        "/revoke",
        json!({ "jti": jti, "reason": "test" }),
        &[("authorization", &op)],
    )
    .await
}

fn listed(reply: &common::Reply, jti: &str) -> bool {
    reply.body["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i["jti"] == jti))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_share_challenges_and_the_denylist() {
    let Some(redis) = RedisServer::start("redis::two_routers_share_challenges_and_the_denylist")
    else {
        return;
    };
    let prefix = unique_prefix("two-routers");
    let a = app_on(&redis.url(), &prefix).await;
    let b = app_on(&redis.url(), &prefix).await;

    // A challenge issued by A is consumed at B; a second use at A fails.
    let wallet = Wallet::generate("Ed25519");
    let body = a.sign_in_body(&wallet).await;
    let signed_in = b.post("/sign-in", body.clone()).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let again = a.post("/sign-in", body).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
    assert_eq!(again.detail(), "invalid or expired challenge");

    // 200 concurrent sign-ins with one challenge, half at A, half at B:
    // exactly one succeeds.
    let body = b.sign_in_body(&wallet).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let app = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let body = body.clone();
        set.spawn(async move { app.post("/sign-in", body).await.status });
    }
    let statuses = set.join_all().await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED));

    // A revokes the refresh token; B lists it and refuses it within the bound.
    let refresh = signed_in.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let jti = claims_of(&refresh)["jti"].as_str().unwrap().to_string();
    let service = token(&b, "service");
    assert!(!listed(&b.get("/revoked-jtis", Some(&service)).await, &jti));
    let r = revoke(&a, &jti).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let acked = Instant::now();
    let seen_after = loop {
        // Time taken before the poll: a poll that started past the bound
        // and still missed the entry is a failure.
        let before = acked.elapsed();
        let polled = b.get("/revoked-jtis", Some(&service)).await;
        assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
        if listed(&polled, &jti) {
            break before;
        }
        assert!(
            before <= MAX_STALENESS,
            "B did not list the revoke within {MAX_STALENESS:?}"
        );
        tokio::task::yield_now().await;
    };
    let refused = b
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    eprintln!("revoke at A seen at B after {seen_after:?} (bound {MAX_STALENESS:?})");

    // The audit is shared too: A's mints are visible at B.
    let op_b = token(&b, "operator");
    let mints = b.get("/mints", Some(&op_b)).await;
    assert_eq!(mints.status, StatusCode::OK);
    assert!(mints.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["jti"] == jti.as_str() && m["revoked"] == true));
}

/// Between a revoke acknowledged at A and `MAX_STALENESS` later, B's denylist
/// answers either with the entry or with an error (fail closed) — never
/// "not revoked" past the bound, even while B's feed is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_instance_fails_closed_within_the_bound() {
    let Some(redis) = RedisServer::start("redis::a_cut_off_instance_fails_closed_within_the_bound")
    else {
        return;
    };
    let prefix = unique_prefix("cut-off");
    let proxy = common::proxy::Proxy::start(redis.port).await;
    let a = RedisStores::connect(&redis.url(), options(&prefix))
        .await
        .unwrap()
        .revocations()
        .await
        .unwrap();
    let b = RedisStores::connect(&proxy.url(), options(&prefix))
        .await
        .unwrap()
        .revocations()
        .await
        .unwrap();
    assert_eq!(b.get("j").await.unwrap(), None);

    // B no longer hears from Redis (its connections stall, as in a
    // partition); A revokes.
    proxy.freeze();
    let entry = wallet_auth::RevocationEntry {
        jti: "j".into(),
        revoked_at: 1.0,
        reason: "cut off".into(),
        revoked_by: "op".into(),
        exp: None,
        kind: wallet_auth::RevocationKind::Token,
    };
    a.revoke(entry.clone()).await.unwrap();
    let acked = Instant::now();
    let mut failed_closed = false;
    loop {
        let before = acked.elapsed();
        if before > MAX_STALENESS + Duration::from_millis(500) {
            break;
        }
        match b.get("j").await {
            Ok(None) => assert!(
                before <= MAX_STALENESS,
                "B still answered 'not revoked' {before:?} after the revoke"
            ),
            Ok(Some(_)) => panic!("B cannot have heard of it through a frozen proxy"),
            Err(_) => failed_closed = true,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed_closed, "B must fail closed once its copy is stale");

    // Reconnected, B catches up by itself.
    proxy.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(got)) = b.get("j").await {
            assert_eq!(got, entry);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not catch up after thawing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis is killed mid-run and started again on the same port and directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_answers_503_fails_closed_and_recovers() {
    let Some(mut redis) =
        RedisServer::start("redis::redis_outage_answers_503_fails_closed_and_recovers")
    else {
        return;
    };
    let prefix = unique_prefix("outage");
    // The denylist's staleness bound runs on this clock: the test moves it
    // past the bound instead of sleeping.
    let store_clock = wallet_auth::clock::ManualClock::starting_now();
    let app = app_on_clock(&redis.url(), &prefix, Arc::new(store_clock.clone())).await;
    let wallet = Wallet::generate("Ed25519");
    let signed_in = app.sign_in(&wallet).await;
    let refresh = signed_in["refresh_token"].as_str().unwrap().to_string();

    // Revokes acknowledged (200) under appendfsync always, then SIGKILL.
    let mut acked = Vec::new();
    for i in 0..20 {
        let jti = format!("acked-{i}");
        let r = revoke(&app, &jti).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        acked.push(jti);
    }
    redis.kill();

    let r = app
        .post("/challenge", json!({ "address": wallet.address() }))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.detail(), "service unavailable");
    let body = json!({
        "address": wallet.address(),
        "public_key": hex::encode(wallet.public_key()),
        "signature": hex::encode(wallet.sign(b"x")),
        "challenge": "0".repeat(64),
        "algorithm": wallet.algorithm(),
    });
    let r = app.post("/sign-in", body).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(!r.detail().is_empty());
    let r = app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let r = app.get("/jwks", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Once the local denylist is past the bound, gated routes fail closed.
    store_clock.advance(MAX_STALENESS + Duration::from_millis(300));
    let service = token(&app, "service");
    let r = app.get("/revoked-jtis", Some(&service)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let r = app.get("/jwks", None).await;
    assert_eq!(r.status, StatusCode::OK);

    // Redis returns: the same router recovers by itself.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = app
            .post("/challenge", json!({ "address": wallet.address() }))
            .await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.sign_in(&wallet).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed_now = loop {
        let r = app.get("/revoked-jtis", Some(&service)).await;
        if r.status == StatusCode::OK {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "denylist did not recover: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Nothing acknowledged was lost: a fresh instance loads every revoke
    // from the restarted Redis (not from this instance's memory).
    let fresh = RedisStores::connect(&redis.url(), options(&prefix))
        .await
        .unwrap()
        .revocations()
        .await
        .unwrap();
    for jti in &acked {
        assert!(listed(&listed_now, jti), "{jti} missing after restart");
        assert!(
            fresh.get(jti).await.unwrap().is_some(),
            "{jti} lost by Redis; log:\n{}",
            redis.log()
        );
    }
}

/// What the standalone server checks at start-up.
#[tokio::test]
async fn persistence_is_read_from_redis() {
    let Some(redis) = RedisServer::start("redis::persistence_is_read_from_redis") else {
        return;
    };
    let stores = RedisStores::connect(&redis.url(), options("p:"))
        .await
        .unwrap();
    let p = stores.persistence().await.unwrap();
    assert!(p.appendonly && p.appendfsync == "always", "{p:?}");
    assert!(p.survives_crash());
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query_async(&mut conn)
        .await
        .unwrap();
    let p = stores.persistence().await.unwrap();
    assert_eq!(p.appendfsync, "everysec");
    assert!(!p.survives_crash());
}

/// Two standalone servers given `SERVER_AUTH_REDIS_URL` share challenges:
/// one issued by the first is signed in at the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_servers_select_redis_with_the_env_var() {
    let Some(redis) = RedisServer::start("redis::standalone_servers_select_redis_with_the_env_var")
    else {
        return;
    };
    // The example must carry the feature, whatever built it last.
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--example", "standalone", "--features", "redis"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(built.success());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let url = redis.url();
    let env = [("SERVER_AUTH_REDIS_URL", url.as_str())];
    let one = common::server::Server::start(dir.path(), &[], &env);
    // Same data dir: the second server loads the key the first created.
    let two = common::server::Server::start(dir.path(), &[], &env);
    let http = reqwest::Client::new();
    let wallet = Wallet::generate("Ed25519");
    let address = wallet.address();
    let challenge: serde_json::Value = http
        .post(format!("{}/challenge", one.base))
        .json(&json!({ "address": address }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nonce = challenge["challenge"].as_str().unwrap();
    let body = json!({
        "address": address,
        "public_key": hex::encode(wallet.public_key()),
        "signature": hex::encode(wallet.sign(nonce.as_bytes())),
        "challenge": nonce,
        "algorithm": wallet.algorithm(),
    });
    let at_two = http
        .post(format!("{}/sign-in", two.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(at_two.status(), 200);
    let at_one = http
        .post(format!("{}/sign-in", one.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(at_one.status(), 401);
    // No files: the denylist and the audit are in Redis.
    assert!(!dir.path().join("revocations.jsonl").exists());
    assert!(!dir.path().join("mints.jsonl").exists());
    one.terminate();
    two.terminate();
}
