//! The consumer crate's denylist against the real server on loopback
//! (issue 13): a revocation bites within 1 s with the event stream and
//! within the poll interval without it; a late consumer catches up with one
//! full fetch and then deltas only; a server restart does not cost a full
//! refetch; with Redis, a revocation at one instance reaches a consumer of
//! another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::issuer::{consumer_config, eventually, operator_claims, Issuer};
use common::{claims_of, token_with_role};
use serde_json::json;
use wallet_auth::AuthConfig;
use wallet_auth_consumer::{Consumer, Reason, RevocationSource};

/// A consumer of `issuer` on the event stream, once it is ready and
/// streaming (bounded).
async fn streaming_consumer(issuer: &Issuer, app: &common::TestApp) -> Consumer {
    let consumer = Consumer::start(consumer_config(issuer, app, RevocationSource::Stream)).unwrap();
    assert!(consumer.ready(Duration::from_secs(10)).await);
    eventually("the stream", Duration::from_secs(5), || {
        consumer.revocation_status().streaming
    })
    .await;
    consumer
}

/// Revokes `token` through the server's `/revoke` (the real wire) and
/// returns when it answered 200.
async fn revoke_over_http(issuer: &Issuer, app: &common::TestApp, token: &str) {
    let jti = claims_of(token)["jti"].as_str().unwrap().to_string();
    let op = token_with_role(app, "operator");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/revoke", issuer.url()))
        .bearer_auth(op)
        .json(&json!({ "jti": jti, "reason": "test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Validates `token` until it is refused as revoked; the time it took.
async fn time_until_revoked(consumer: &Consumer, token: &str, bound: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        match consumer.validate(token).await {
            Err(r) if r.reason() == Reason::Revoked => return t0.elapsed(),
            Ok(_) => {}
            Err(r) => panic!("unexpected refusal {r}"),
        }
        assert!(t0.elapsed() < bound, "still accepted after {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_a_revocation_bites_within_one_second() {
    let app = common::app(AuthConfig::default());
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let consumer = streaming_consumer(&issuer, &app).await;
    let token = token_with_role(&app, "wallet");
    let claims = consumer.validate(&token).await.unwrap();
    assert_eq!(claims.role, "wallet");
    revoke_over_http(&issuer, &app, &token).await;
    let took = time_until_revoked(&consumer, &token, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(issuer.counts.full_polls(), 1, "one full fetch at start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_stream_a_revocation_bites_within_the_poll_interval() {
    let app = common::app(AuthConfig::default());
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let config = consumer_config(&issuer, &app, RevocationSource::Poll);
    let interval = config.poll_interval;
    let consumer = Consumer::start(config).unwrap();
    assert!(consumer.ready(Duration::from_secs(10)).await);
    let token = token_with_role(&app, "wallet");
    consumer.validate(&token).await.unwrap();
    revoke_over_http(&issuer, &app, &token).await;
    // The interval, plus what one poll takes on a shared machine.
    let took = time_until_revoked(&consumer, &token, interval + Duration::from_millis(500)).await;
    assert!(took <= interval + Duration::from_millis(500), "{took:?}");
    assert_eq!(issuer.counts.streams(), 0);
    assert!(issuer.counts.delta_polls() >= 1, "polls go by delta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_consumer_catches_up_with_one_full_fetch_then_deltas() {
    let app = common::app(AuthConfig::default());
    let op = operator_claims();
    for i in 0..10_000 {
        app.auth
            .revoke(&op, &format!("old-{i:05}"), "bulk", None)
            .await
            .unwrap();
    }
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let mut config = consumer_config(&issuer, &app, RevocationSource::Poll);
    config.poll_interval = Duration::from_millis(100);
    let consumer = Consumer::start(config).unwrap();
    eventually("the 10,000", Duration::from_secs(20), || {
        consumer.revocation_status().entries == 10_000
    })
    .await;
    for i in 0..3 {
        app.auth
            .revoke(&op, &format!("new-{i}"), "later", None)
            .await
            .unwrap();
    }
    eventually("the 3 new ones", Duration::from_secs(5), || {
        consumer.revocation_status().entries == 10_003
    })
    .await;
    let deltas = issuer.counts.delta_polls();
    eventually("more polls", Duration::from_secs(5), || {
        issuer.counts.delta_polls() >= deltas + 3
    })
    .await;
    assert_eq!(
        issuer.counts.full_polls(),
        1,
        "one full fetch, then deltas only"
    );

    // The stream too: one full fetch, then the stream.
    let streamer =
        Consumer::start(consumer_config(&issuer, &app, RevocationSource::Stream)).unwrap();
    eventually("the stream", Duration::from_secs(10), || {
        streamer.revocation_status().streaming
    })
    .await;
    app.auth.revoke(&op, "newest", "later", None).await.unwrap();
    eventually("the stream's event", Duration::from_secs(2), || {
        streamer.revocation_status().entries == 10_004
    })
    .await;
    assert_eq!(issuer.counts.full_polls(), 2, "one each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_costs_no_full_refetch() {
    let dir = tempfile::tempdir().unwrap();
    let config = || AuthConfig {
        revocation_store_path: dir.path().join("revocations.jsonl").display().to_string(),
        ..AuthConfig::default()
    };
    let app = common::app(config());
    let op = operator_claims();
    app.auth.revoke(&op, "before", "r", None).await.unwrap();
    let mut issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let consumer = streaming_consumer(&issuer, &app).await;
    assert_eq!(consumer.revocation_status().entries, 1);

    issuer.stop().await;
    drop(app);
    let app = common::app(config());
    app.auth.revoke(&op, "while-down", "r", None).await.unwrap();
    issuer.restart(app.router.clone()).await;
    app.auth.revoke(&op, "after", "r", None).await.unwrap();
    eventually(
        "both revocations made since",
        Duration::from_secs(10),
        || consumer.revocation_status().entries == 3,
    )
    .await;
    assert_eq!(
        issuer.counts.full_polls(),
        1,
        "the restart cost no full refetch"
    );
    assert!(issuer.counts.streams() >= 2, "the stream reconnected");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_revocation_at_one_instance_reaches_a_consumer_of_another() {
    use common::redis_server::{unique_prefix, RedisServer};
    use std::sync::Arc;
    use wallet_auth::{RedisOptions, RedisStores};

    let Some(redis) = RedisServer::start(
        "consumer_feed::with_redis_a_revocation_at_one_instance_reaches_a_consumer_of_another",
    ) else {
        return;
    };
    let prefix = unique_prefix("consumer-pair");
    let options = RedisOptions {
        key_prefix: prefix.clone(),
        op_timeout: Duration::from_millis(500),
        feed_block: Duration::from_millis(500),
        max_staleness: Duration::from_millis(1500),
        ..Default::default()
    };
    let mut apps = Vec::new();
    for _ in 0..2 {
        let stores = RedisStores::connect(&redis.url(), options.clone())
            .await
            .unwrap();
        let revocations = stores.revocations().await.unwrap();
        apps.push(common::app_with(AuthConfig::default(), |builder| {
            builder
                .with_challenge_store(Arc::new(stores.challenges()))
                .with_revocation_store(Arc::new(revocations))
                .with_mint_audit_store(Arc::new(stores.mint_audit(5000)))
        }));
    }
    let (a, b) = (&apps[0], &apps[1]);
    let issuer_a = Issuer::serve(Issuer::bind().await, a.router.clone());
    let issuer_b = Issuer::serve(Issuer::bind().await, b.router.clone());
    let consumer = streaming_consumer(&issuer_b, b).await;
    let token = token_with_role(b, "wallet");
    consumer.validate(&token).await.unwrap();
    revoke_over_http(&issuer_a, a, &token).await;
    // Twice the instances' propagation bound (max_staleness), as
    // tests/revocation_feed_redis.rs allows on a shared machine.
    let took = time_until_revoked(&consumer, &token, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
}
