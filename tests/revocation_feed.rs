//! The incremental revocation feed (SPEC 7): `ETag` and `304` on
//! `/revoked-jtis`, `?since=` deltas and their full fallback, cursors that
//! survive a restart of the JSON Lines store, and the event stream on a real
//! server: delivery within 1 s, `Last-Event-ID` replay, `reset`, closing on
//! the caller's revocation and expiry, dropping a slow reader, the bound on
//! streams, keep-alive comments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::sse::{serve, serve_on, Stream};
use common::{app, app_with, claims_of, item_jtis, post_bearer, token_with_role, TestApp};
use serde_json::{json, Value};
use wallet_auth::clock::Clock;
use wallet_auth::{AccessClaims, AuthConfig};

async fn revoke(app: &TestApp, jti: &str) -> Value {
    let op = token_with_role(app, "operator");
    let r = post_bearer(app, "/revoke", json!({ "jti": jti, "reason": "test" }), &op).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

fn cursor_of(body: &Value) -> String {
    body["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no string cursor in {body}"))
        .to_string()
}

async fn poll(app: &TestApp, query: &str) -> common::Reply {
    let svc = token_with_role(app, "service");
    let r = app.get(&format!("/revoked-jtis{query}"), Some(&svc)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r
}

/// `GET /revoked-jtis` with `If-None-Match: tag`.
async fn poll_if_none_match(app: &TestApp, bearer: &str, tag: &str) -> common::Reply {
    app.raw(
        "GET",
        "/revoked-jtis",
        Vec::new(),
        &[("authorization", bearer), ("if-none-match", tag)],
    )
    .await
}

#[tokio::test]
async fn the_poll_carries_a_strong_etag_and_a_matching_poll_is_a_304() {
    let app = common::default_app();
    revoke(&app, "first").await;
    let r = poll(&app, "").await;
    assert_eq!(item_jtis(&r.body), ["first"]);
    let cursor = cursor_of(&r.body);
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );

    let svc = format!("Bearer {}", token_with_role(&app, "service"));
    let again = poll_if_none_match(&app, &svc, &etag).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, Value::Null, "a 304 has no body");
    assert_eq!(again.headers["etag"], etag.as_str());

    // Another tag, or a changed list: the whole body again, with a new tag.
    let other = poll_if_none_match(&app, &svc, "\"nope\"").await;
    assert_eq!(other.status, StatusCode::OK);
    revoke(&app, "second").await;
    let changed = poll_if_none_match(&app, &svc, &etag).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(item_jtis(&changed.body), ["second", "first"]);
    assert_ne!(changed.headers["etag"], etag.as_str());
    assert_ne!(cursor_of(&changed.body), cursor);

    // The gzip representation has its own tag; either tag matches.
    zipped_headers(&app, &svc).await;
    let new_tag = changed.headers["etag"].to_str().unwrap().to_string();
    let z = app
        .raw(
            "GET",
            "/revoked-jtis",
            Vec::new(),
            &[
                ("authorization", &svc),
                ("accept-encoding", "gzip"),
                ("if-none-match", &new_tag),
            ],
        )
        .await;
    assert_eq!(z.status, StatusCode::NOT_MODIFIED);
    assert_ne!(
        z.headers["etag"],
        new_tag.as_str(),
        "gzip is another representation"
    );
}

/// The headers of a gzip'd poll (its body is not JSON text).
async fn zipped_headers(app: &TestApp, bearer: &str) -> axum::http::HeaderMap {
    use tower::ServiceExt;
    let req = axum::http::Request::get(format!("{}/revoked-jtis", common::PREFIX))
        .header("authorization", bearer)
        .header("accept-encoding", "gzip")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(resp.headers()["etag"]
        .to_str()
        .unwrap()
        .ends_with("-gzip\""));
    resp.headers().clone()
}

#[tokio::test]
async fn a_delta_poll_serves_what_was_added_oldest_first() {
    let app = common::default_app();
    revoke(&app, "old").await;
    let c1 = cursor_of(&poll(&app, "").await.body);

    revoke(&app, "a").await;
    revoke(&app, "b").await;
    let delta = poll(&app, &format!("?since={c1}")).await.body;
    assert_eq!(item_jtis(&delta), ["a", "b"], "oldest first");
    assert_eq!(delta["full"], false);
    let item = &delta["items"][0];
    assert_eq!(item["reason"], "test");
    assert!(
        item["revoked_at"].is_f64() && item["revoked_by"].is_string(),
        "{item}"
    );
    let c2 = cursor_of(&delta);
    assert_ne!(c2, c1);

    // Nothing new: an empty delta at the same cursor.
    let empty = poll(&app, &format!("?since={c2}")).await.body;
    assert_eq!(empty, json!({ "items": [], "cursor": c2, "full": false }));

    // The full poll's cursor is where the delta ended.
    assert_eq!(cursor_of(&poll(&app, "").await.body), c2);
}

#[tokio::test]
async fn bookkeeping_entries_never_reach_the_feed() {
    let app = common::default_app();
    let wallet = common::Wallet::generate("Ed25519");
    let s = app.sign_in(&wallet).await;
    let c = cursor_of(&poll(&app, "").await.body);
    // A refresh marks its token used (a bookkeeping entry).
    let r = app
        .post("/refresh", json!({ "refresh_token": s["refresh_token"] }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let delta = poll(&app, &format!("?since={c}")).await.body;
    assert_eq!(delta, json!({ "items": [], "cursor": c, "full": false }));
    // Reusing it revokes the family: its access tokens are served, the
    // family entry and the used token are not.
    let reuse = app
        .post("/refresh", json!({ "refresh_token": s["refresh_token"] }))
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    let delta = poll(&app, &format!("?since={c}")).await.body;
    let served = item_jtis(&delta);
    assert!(!served.is_empty());
    for item in delta["items"].as_array().unwrap() {
        assert_eq!(item["reason"], "refresh token reuse detected", "{item}");
        assert!(item.get("kind").is_none(), "{item}");
    }
    let access = claims_of(s["access_token"].as_str().unwrap());
    assert!(served.contains(&access["jti"].as_str().unwrap()));
}

#[tokio::test]
async fn an_unknown_or_malformed_cursor_gets_the_full_list() {
    let app = common::default_app();
    revoke(&app, "x").await;
    revoke(&app, "y").await;
    for since in [
        "18446744073709551615",
        "99999999999999999999",
        "abc",
        "-1",
        "1.5",
        "",
        "%31",
    ] {
        let r = poll(&app, &format!("?since={since}")).await.body;
        assert_eq!(r["full"], true, "since={since}: {r}");
        assert_eq!(item_jtis(&r), ["y", "x"], "the full list, newest first");
        assert!(r["cursor"].is_string());
    }
    // The plain poll (pico-client-auth's) is that same full list.
    assert_eq!(poll(&app, "").await.body["full"], true);
}

#[tokio::test]
async fn a_delta_far_behind_gets_the_full_list() {
    let app = common::default_app();
    let c = cursor_of(&poll(&app, "").await.body);
    let op = AccessClaims::new("i", "pico", "op", "operator", 0, u64::MAX);
    for i in 0..=wallet_auth::MAX_DELTA {
        app.auth
            .revoke(&op, &format!("j{i}"), "", None)
            .await
            .unwrap();
    }
    let r = poll(&app, &format!("?since={c}")).await.body;
    assert_eq!(r["full"], true);
    assert_eq!(
        r["items"].as_array().unwrap().len(),
        wallet_auth::MAX_DELTA + 1
    );
}

#[tokio::test]
async fn cursors_stay_valid_across_a_restart_of_the_jsonl_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revoked.jsonl");
    let config = || AuthConfig {
        revocation_store_path: path.to_string_lossy().into_owned(),
        ..AuthConfig::default()
    };
    let first = app(config());
    revoke(&first, "before-1").await;
    revoke(&first, "before-2").await;
    let c = cursor_of(&poll(&first, "").await.body);
    drop(first);

    let second = app(config());
    let same = poll(&second, &format!("?since={c}")).await.body;
    assert_eq!(
        same,
        json!({ "items": [], "cursor": c, "full": false }),
        "no refetch after a restart"
    );
    assert_eq!(cursor_of(&poll(&second, "").await.body), c);
    revoke(&second, "after").await;
    let delta = poll(&second, &format!("?since={c}")).await.body;
    assert_eq!(item_jtis(&delta), ["after"]);
    assert_eq!(delta["full"], false);
}

/// A service token valid for `secs` from the app's clock, and its jti.
fn service_token(app: &TestApp, secs: u64) -> (String, String) {
    let now = app.clock.now_secs();
    let claims = AccessClaims::new(
        "http://localhost:8100",
        "pico",
        "svc@test",
        "service",
        now,
        now + secs,
    );
    let jti = claims.jti.clone();
    (app.auth.tokens().sign_access(&claims).unwrap(), jti)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_receives_a_revoke_within_a_second() {
    let app = common::default_app();
    let served = serve(app.router.clone()).await;
    let (svc, _) = service_token(&app, 3600);
    let mut stream =
        Stream::open(&format!("{}/revoked-jtis/stream", served.base), &svc, None).await;
    let op = token_with_role(&app, "operator");
    for i in 0..3 {
        let jti = format!("live-{i}");
        let r = reqwest::Client::new()
            .post(format!("{}/revoke", served.base))
            .bearer_auth(&op)
            .json(&json!({ "jti": jti, "reason": "r", "exp": app.clock.now_secs() + 60 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let acknowledged = Instant::now();
        let ev = stream.next_event(Duration::from_secs(1)).await.unwrap();
        assert!(acknowledged.elapsed() < Duration::from_secs(1));
        assert_eq!(ev.event, "revoked");
        let data = ev.json();
        assert_eq!(data["jti"], jti.as_str());
        assert_eq!(data["reason"], "r");
        assert!(
            data["exp"].is_u64() && data["revoked_at"].is_f64(),
            "{data}"
        );
        assert!(data.get("kind").is_none());
        // The id is the cursor a delta poll continues from.
        let delta = poll(&app, &format!("?since={}", ev.id)).await.body;
        assert_eq!(delta["items"], json!([]));
        assert_eq!(delta["cursor"], ev.id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_replays_what_was_missed_then_goes_live() {
    let app = common::default_app();
    let served = serve(app.router.clone()).await;
    let url = format!("{}/revoked-jtis/stream", served.base);
    revoke(&app, "seen").await;
    let seen = cursor_of(&poll(&app, "").await.body);
    for jti in ["m1", "m2", "m3"] {
        revoke(&app, jti).await;
    }
    let (svc, _) = service_token(&app, 3600);
    let mut stream = Stream::open(&url, &svc, Some(&seen)).await;
    let mut ids = Vec::new();
    for jti in ["m1", "m2", "m3"] {
        let ev = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.json()["jti"].clone()),
            ("revoked", json!(jti))
        );
        ids.push(ev.id.parse::<u64>().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    revoke(&app, "live").await;
    let ev = stream.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(ev.json()["jti"], "live");

    // `?since=` does the same as the header.
    let mut by_query = Stream::open(&format!("{url}?since={}", ids[1]), &svc, None).await;
    assert_eq!(
        by_query
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .json()["jti"],
        "m3"
    );
    assert_eq!(
        by_query
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .json()["jti"],
        "live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_last_event_id_gets_a_reset() {
    let app = common::default_app();
    let served = serve(app.router.clone()).await;
    let url = format!("{}/revoked-jtis/stream", served.base);
    revoke(&app, "x").await;
    let (svc, _) = service_token(&app, 3600);
    for id in ["18446744073709551615", "not-a-cursor"] {
        let position = cursor_of(&poll(&app, "").await.body);
        let mut stream = Stream::open(&url, &svc, Some(id)).await;
        let ev = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(ev.event, "reset", "{id}: {ev:?}");
        assert_eq!(ev.id, position);
        assert_eq!(ev.json()["cursor"], position.as_str());
        // Then live.
        revoke(&app, &format!("after-{id}")).await;
        let next = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(next.json()["jti"], format!("after-{id}").as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_closes_when_its_token_is_revoked_or_expires() {
    let app = common::default_app();
    let served = serve(app.router.clone()).await;
    let url = format!("{}/revoked-jtis/stream", served.base);

    let (svc, jti) = service_token(&app, 3600);
    let mut stream = Stream::open(&url, &svc, None).await;
    revoke(&app, &jti).await;
    // The revocation itself may be delivered; then the stream ends.
    let started = Instant::now();
    while let Some(ev) = stream.next_event(Duration::from_secs(3)).await {
        assert_eq!(ev.json()["jti"], jti.as_str());
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // And the token opens no new stream.
    let again = Stream::request(&url, &svc, None).await;
    assert_eq!(again.status(), 401);

    let (short, _) = service_token(&app, 30);
    let mut stream = Stream::open(&url, &short, None).await;
    app.clock.advance(Duration::from_secs(31));
    let started = Instant::now();
    stream.expect_end(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() <= wallet_auth::http::TOKEN_CHECK + Duration::from_secs(1),
        "closed within a token check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = common::default_app();
    // Small socket buffers, so that a reader that stops reading backs up
    // into the server's per-connection queue quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let served = serve_on(socket.listen(16).unwrap(), app.router.clone());
    let (svc, _) = service_token(&app, 3600);

    let client = tokio::net::TcpSocket::new_v4().unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    let mut conn = client.connect(served.addr).await.unwrap();
    conn.write_all(
        format!(
            "GET {}/revoked-jtis/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {svc}\r\n\r\n",
            common::PREFIX
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = conn.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // Far more events than the queue and the socket buffers hold, while the
    // client reads nothing.
    const EVENTS: usize = 6000;
    let op = AccessClaims::new("i", "pico", "op", "operator", 0, u64::MAX);
    let reason = "r".repeat(200);
    for i in 0..EVENTS {
        app.auth
            .revoke(&op, &format!("slow-{i:05}"), &reason, None)
            .await
            .unwrap();
    }
    // Now read: what was buffered arrives, then the connection ends.
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the slow reader's connection was not closed");
    let text = String::from_utf8_lossy(&got);
    let received = text.matches("event: revoked").count();
    // At most what was queued and buffered before the drop (possibly
    // nothing: the drop may come before the connection wrote anything),
    // and the connection aborted, not ended with the last chunk.
    assert!(
        received < EVENTS,
        "received all {received} events: not dropped"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "ended cleanly: {received} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_bounded_and_kept_alive() {
    let app = app_with(
        AuthConfig {
            revocation_stream_max: 2,
            ..AuthConfig::default()
        },
        |b| b.with_stream_keep_alive(Duration::from_millis(100)),
    );
    let served = serve(app.router.clone()).await;
    let url = format!("{}/revoked-jtis/stream", served.base);
    let (svc, _) = service_token(&app, 3600);
    let mut a = Stream::open(&url, &svc, None).await;
    let _b = Stream::open(&url, &svc, None).await;
    let refused = Stream::request(&url, &svc, None).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert!(body["detail"].is_string());

    // No events: a comment keeps the connection alive.
    let block = a.next_block(Duration::from_secs(2)).await.unwrap();
    assert!(
        block.comment.is_some() && block.event.is_empty(),
        "{block:?}"
    );

    // A stream that ends frees its place.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = Stream::request(&url, &svc, None).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_stream_needs_a_service_token() {
    let app = common::default_app();
    let r = app.get("/revoked-jtis/stream", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let agent = token_with_role(&app, "agent");
    let r = app.get("/revoked-jtis/stream", Some(&agent)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["detail"].is_string());
}
