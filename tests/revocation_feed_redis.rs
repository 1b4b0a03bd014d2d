//! The revocation feed (SPEC 7) with the Redis stores: two routers on one
//! redis-server share one cursor space, a cursor from one instance is good
//! at the other (also while it lags, and after a restart), and the event
//! stream of one instance carries revocations made at another.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::redis_server::{unique_prefix, RedisServer};
use common::sse::{serve, Stream};
use common::{item_jtis, token_with_role, TestApp};
use serde_json::{json, Value};
use wallet_auth::{AuthConfig, RedisOptions, RedisStores};

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        key_prefix: prefix.into(),
        op_timeout: Duration::from_millis(500),
        feed_block: Duration::from_millis(500),
        max_staleness: Duration::from_millis(1500),
        ..Default::default()
    }
}

async fn app_on(url: &str, prefix: &str) -> TestApp {
    let stores = RedisStores::connect(url, options(prefix)).await.unwrap();
    let revocations = stores.revocations().await.unwrap();
    common::app_with(AuthConfig::default(), |builder| {
        builder
            .with_challenge_store(Arc::new(stores.challenges()))
            .with_revocation_store(Arc::new(revocations))
            .with_mint_audit_store(Arc::new(stores.mint_audit(5000)))
    })
}

async fn revoke(app: &TestApp, jti: &str) {
    let op = token_with_role(app, "operator");
    let r = common::post_bearer(app, "/revoke", json!({ "jti": jti, "reason": "r" }), &op).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn poll(app: &TestApp, query: &str) -> Value {
    let svc = token_with_role(app, "service");
    let r = app.get(&format!("/revoked-jtis{query}"), Some(&svc)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

fn cursor(body: &Value) -> String {
    body["cursor"].as_str().unwrap().to_string()
}

/// Polls `app` until its full list's cursor differs from `from` (its feed
/// read the revocation just made), bounded by the propagation bound.
async fn until_moved(app: &TestApp, from: &str) -> String {
    // Twice max_staleness: the machine running the suite is shared.
    let deadline = Instant::now() + Duration::from_millis(3000);
    loop {
        let c = cursor(&poll(app, "").await);
        if c != from {
            return c;
        }
        assert!(Instant::now() < deadline, "cursor stayed at {from}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `app` until its full list's cursor is `want` (the feed reached
/// it), bounded by the stated propagation bound.
async fn until_cursor(app: &TestApp, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_millis(3000);
    loop {
        let body = poll(app, "").await;
        if cursor(&body) == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "cursor {} never reached {want}",
            cursor(&body)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_cursor_space() {
    let Some(redis) =
        RedisServer::start("revocation_feed_redis::two_instances_share_one_cursor_space")
    else {
        return;
    };
    let prefix = unique_prefix("feed-cursors");
    let a = app_on(&redis.url(), &prefix).await;
    let b = app_on(&redis.url(), &prefix).await;
    let start = cursor(&poll(&a, "").await);
    assert_eq!(cursor(&poll(&b, "").await), start);

    revoke(&a, "from-a").await;
    // Even an instance's own revocation moves its feed once its feed task
    // has read it, in the shared order.
    let after_a = until_moved(&a, &start).await;
    // A cursor from A is good at B at once: B has it already, or lags and
    // knows it is behind, never a full refetch.
    let at_b = poll(&b, &format!("?since={after_a}")).await;
    assert_eq!(at_b["full"], false, "{at_b}");
    assert_eq!(at_b["cursor"], after_a.as_str());
    until_cursor(&b, &after_a).await;

    revoke(&b, "from-b").await;
    let after_b = until_moved(&b, &after_a).await;
    until_cursor(&a, &after_b).await;
    for app in [&a, &b] {
        let delta = poll(app, &format!("?since={start}")).await;
        assert_eq!(
            item_jtis(&delta),
            ["from-a", "from-b"],
            "one order everywhere"
        );
        assert_eq!(delta["cursor"], after_b.as_str());
        let empty = poll(app, &format!("?since={after_b}")).await;
        assert_eq!(
            empty,
            json!({ "items": [], "cursor": after_b, "full": false })
        );
    }

    // A restarted instance keeps the cursor space: no refetch.
    drop(a);
    let a2 = app_on(&redis.url(), &prefix).await;
    let same = poll(&a2, &format!("?since={after_b}")).await;
    assert_eq!(
        same,
        json!({ "items": [], "cursor": after_b, "full": false })
    );
    // A cursor beyond the shared counter is unknown: the full list.
    let future = poll(&a2, "?since=18446744073709551615").await;
    assert_eq!(future["full"], true);
    assert_eq!(item_jtis(&future), ["from-b", "from-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_at_one_instance_carries_revocations_made_at_another() {
    let Some(redis) = RedisServer::start(
        "revocation_feed_redis::a_stream_at_one_instance_carries_revocations_made_at_another",
    ) else {
        return;
    };
    let prefix = unique_prefix("feed-stream");
    let a = app_on(&redis.url(), &prefix).await;
    let b = app_on(&redis.url(), &prefix).await;
    let served_b = serve(b.router.clone()).await;
    let svc = token_with_role(&b, "service");
    let url = format!("{}/revoked-jtis/stream", served_b.base);
    let mut stream = Stream::open(&url, &svc, None).await;
    for i in 0..3 {
        let jti = format!("cross-{i}");
        revoke(&a, &jti).await;
        let acknowledged = Instant::now();
        let ev = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(ev.event, "revoked");
        assert_eq!(ev.json()["jti"], jti.as_str());
        assert!(
            acknowledged.elapsed() < Duration::from_secs(1),
            "took {:?}",
            acknowledged.elapsed()
        );
    }
    // Replay at B of what A revoked, from a cursor of A's.
    let first = cursor(&poll(&a, "").await);
    revoke(&a, "missed").await;
    let mut resumed = Stream::open(&url, &svc, Some(&first)).await;
    let ev = resumed.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(ev.json()["jti"], "missed");
}
