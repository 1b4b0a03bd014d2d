//! Sessions end and refresh is safe to retry: `auth_time`, the
//! `session_max_days` cap, a password change ending the admin's refresh
//! tokens, reuse revoking the access tokens of the family (served to
//! consumers and refused by the router's own Bearer check), and refreshes
//! that fail server-side leaving the presented token usable.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{app, app_with, claims_of, default_app, item_jtis, TestApp, Wallet};
use serde_json::{json, Value};
use wallet_auth::clock::Clock;
use wallet_auth::AuthConfig;

const DAY: u64 = 86_400;

async fn refresh(app: &TestApp, token: &Value) -> common::Reply {
    app.post("/refresh", json!({ "refresh_token": token }))
        .await
}

fn operator(app: &TestApp) -> String {
    common::token_with_role(app, "operator")
}

#[tokio::test]
async fn auth_time_is_the_session_start_and_carries_forward() {
    let app = default_app();
    let start = app.clock.now_secs();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    for token in ["access_token", "refresh_token"] {
        assert_eq!(claims_of(s[token].as_str().unwrap())["auth_time"], start);
    }
    app.clock.advance(Duration::from_secs(3600));
    let r = refresh(&app, &s["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for token in ["access_token", "refresh_token"] {
        let claims = claims_of(r.body[token].as_str().unwrap());
        assert_eq!(claims["auth_time"], start, "{token}");
        assert_eq!(claims["iat"], start + 3600, "{token}");
    }
}

#[tokio::test]
async fn no_family_outlives_session_max_days() {
    let app = app(AuthConfig {
        session_max_days: 10,
        ..Default::default()
    });
    let start = app.clock.now_secs();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let mut token = s["refresh_token"].clone();
    // Refreshing every 4 days keeps each 7-day token alive...
    for _ in 0..2 {
        app.clock.advance(Duration::from_secs(4 * DAY));
        let r = refresh(&app, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        token = r.body["refresh_token"].clone();
        // ...but no token of the family lives past the session's end.
        let exp = claims_of(token.as_str().unwrap())["exp"].as_u64().unwrap();
        assert!(exp <= start + 10 * DAY, "refresh exp {exp} past the cap");
        let access = claims_of(r.body["access_token"].as_str().unwrap());
        assert!(access["exp"].as_u64().unwrap() <= start + 10 * DAY);
    }
    // Day 10: the family is over, though its last token said day 10 too.
    app.clock.advance(Duration::from_secs(2 * DAY));
    let r = refresh(&app, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // A new sign-in starts a new session.
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    assert_eq!(
        refresh(&app, &s["refresh_token"]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn session_max_days_defaults_to_30() {
    assert_eq!(AuthConfig::default().session_max_days, 30);
    let app = default_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let mut token = s["refresh_token"].clone();
    // Days 6, 12, 18, 24 and 29: each refresh keeps the family alive.
    for days in [6, 6, 6, 6, 5] {
        app.clock.advance(Duration::from_secs(days * DAY));
        let r = refresh(&app, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        token = r.body["refresh_token"].clone();
    }
    // Day 30: the session is over.
    app.clock.advance(Duration::from_secs(DAY));
    assert_eq!(refresh(&app, &token).await.status, StatusCode::UNAUTHORIZED);
}

fn admin_config(password: &str) -> AuthConfig {
    AuthConfig {
        auto_create_admin: true,
        admin_password: Some(password.into()),
        ..Default::default()
    }
}

async fn login(app: &TestApp, password: &str) -> common::Reply {
    app.post(
        "/login",
        json!({ "email": "admin@pico.local", "password": password }),
    )
    .await
}

#[tokio::test]
async fn a_password_change_ends_the_admins_refresh_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let stores = |c: AuthConfig| AuthConfig {
        revocation_store_path: dir.path().join("revocations.jsonl").display().to_string(),
        ..c
    };
    let first = app(stores(admin_config("first password 123")));
    let r = login(&first, "first password 123").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["refresh_token"].clone();
    let r = refresh(&first, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["refresh_token"].clone();
    drop(first);

    // The same password after a restart: the token still works.
    let same = app(stores(admin_config("first password 123")));
    let r = refresh(&same, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["refresh_token"].clone();
    drop(same);

    // Another password: every refresh token of the old one is dead.
    let changed = app(stores(admin_config("second password 456")));
    let r = refresh(&changed, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.detail().starts_with("refresh invalid"), "{}", r.detail());
    // The new password logs in and refreshes.
    let r = login(&changed, "second password 456").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        refresh(&changed, &r.body["refresh_token"]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reuse_revokes_the_familys_access_tokens_for_consumers_and_the_router() {
    let app = default_app();
    let op = operator(&app);
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let mut access = vec![s["access_token"].as_str().unwrap().to_string()];
    let first_refresh = s["refresh_token"].clone();
    let mut token = first_refresh.clone();
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(600));
        let r = refresh(&app, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        access.push(r.body["access_token"].as_str().unwrap().to_string());
        token = r.body["refresh_token"].clone();
    }
    // Before the reuse: each access token passes the router's own check
    // (a wallet token on an operator route is 403, not 401).
    for a in &access {
        assert_eq!(
            app.get("/mints", Some(a)).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert!(item_jtis(&app.get("/revoked-jtis", Some(&op)).await.body).is_empty());

    // A thief replays the first refresh token.
    let r = refresh(&app, &first_refresh).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // The current token of the family is dead too.
    assert_eq!(refresh(&app, &token).await.status, StatusCode::UNAUTHORIZED);

    let poll = app.get("/revoked-jtis", Some(&op)).await;
    let mut revoked: Vec<String> = item_jtis(&poll.body)
        .iter()
        .map(|s| s.to_string())
        .collect();
    revoked.sort();
    let mut expected: Vec<String> = access
        .iter()
        .map(|a| claims_of(a)["jti"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(
        revoked, expected,
        "every access token of the family is in the feed"
    );
    for item in poll.body["items"].as_array().unwrap() {
        assert!(
            item["exp"].as_u64().is_some(),
            "{item}: leaves the feed when the token dies"
        );
        assert_eq!(item.as_object().unwrap().get("sub"), None);
    }
    for a in &access {
        let r = app.get("/mints", Some(a)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
}

#[tokio::test]
async fn reuse_skips_access_tokens_that_have_expired() {
    let app = default_app();
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let old_access = s["access_token"].as_str().unwrap().to_string();
    let first = s["refresh_token"].clone();
    // Nine hours later (access tokens live eight), one rotation.
    app.clock.advance(Duration::from_secs(9 * 3600));
    let r = refresh(&app, &first).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let live_access = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(&app, &first).await.status, StatusCode::UNAUTHORIZED);
    let op = operator(&app);
    let poll = app.get("/revoked-jtis", Some(&op)).await;
    let jtis = item_jtis(&poll.body);
    assert_eq!(jtis, vec![claims_of(&live_access)["jti"].as_str().unwrap()]);
    assert!(!jtis.contains(&claims_of(&old_access)["jti"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_refused_for_overload_can_be_retried() {
    // One CPU thread and one waiting slot: most of a burst is refused 503.
    let app = app_with(AuthConfig::default(), |b| b.with_cpu_limits(1, 1));
    let mut tokens = Vec::new();
    for _ in 0..24 {
        tokens.push(app.sign_in(&Wallet::generate("Ed25519")).await["refresh_token"].clone());
    }
    let burst = tokens.iter().map(|t| refresh(&app, t));
    let replies = futures_join_all(burst).await;
    let busy: Vec<&Value> = tokens
        .iter()
        .zip(&replies)
        .filter(|(_, r)| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(t, r)| {
            assert!(r.headers.contains_key("retry-after"));
            t
        })
        .collect();
    assert!(!busy.is_empty(), "the burst never filled the CPU queue");
    for r in &replies {
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::SERVICE_UNAVAILABLE,
            "{} {}",
            r.status,
            r.body
        );
    }
    // Each refused token is still unused: its retry succeeds, not reuse.
    for t in busy {
        let r = refresh(&app, t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r2 = refresh(&app, &r.body["refresh_token"]).await;
        assert_eq!(r2.status, StatusCode::OK, "{}", r2.body);
    }
}

/// Runs the futures concurrently on this task (no `futures` dependency).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

/// A real store that can be made to fail: the memory denylist whose
/// `try_insert` (marking a refresh token used) answers "unavailable" while
/// `failing` is set, as a Redis timeout would.
struct FlakyDenylist {
    inner: wallet_auth::MemoryRevocationStore,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl wallet_auth::RevocationStore for FlakyDenylist {
    async fn revoke(
        &self,
        entry: wallet_auth::RevocationEntry,
    ) -> Result<wallet_auth::RevocationEntry, wallet_auth::StoreError> {
        self.inner.revoke(entry).await
    }
    async fn try_insert(
        &self,
        entry: wallet_auth::RevocationEntry,
    ) -> Result<bool, wallet_auth::StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(wallet_auth::StoreError::Unavailable(
                "injected timeout".into(),
            ));
        }
        self.inner.try_insert(entry).await
    }
    async fn get(
        &self,
        jti: &str,
    ) -> Result<Option<wallet_auth::RevocationEntry>, wallet_auth::StoreError> {
        self.inner.get(jti).await
    }
    async fn list(
        &self,
    ) -> Result<std::sync::Arc<Vec<wallet_auth::RevocationEntry>>, wallet_auth::StoreError> {
        self.inner.list().await
    }
    fn version(&self) -> u64 {
        self.inner.version()
    }
}

#[tokio::test]
async fn a_refresh_whose_store_write_fails_can_be_retried() {
    let store = std::sync::Arc::new(FlakyDenylist {
        inner: wallet_auth::MemoryRevocationStore::new(),
        failing: std::sync::atomic::AtomicBool::new(false),
    });
    let shared = std::sync::Arc::clone(&store);
    let app = app_with(AuthConfig::default(), move |b| {
        b.with_revocation_store(shared)
    });
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = refresh(&app, &s["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // The retry is not reuse: it rotates, and the chain goes on.
    let r = refresh(&app, &s["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r2 = refresh(&app, &r.body["refresh_token"]).await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.body);
    // And the presented token is now spent.
    let again = refresh(&app, &s["refresh_token"]).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

/// The memory mint audit, refusing appends while `failing` is set (a full
/// or unwritable audit disk).
struct FlakyAudit {
    inner: wallet_auth::MemoryMintAuditStore,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl wallet_auth::MintAuditStore for FlakyAudit {
    async fn append(
        &self,
        records: Vec<wallet_auth::MintRecord>,
    ) -> Result<(), wallet_auth::StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(wallet_auth::StoreError::Unavailable(
                "injected: disk full".into(),
            ));
        }
        self.inner.append(records).await
    }
    async fn recent(
        &self,
        limit: usize,
    ) -> Result<Vec<wallet_auth::MintRecord>, wallet_auth::StoreError> {
        self.inner.recent(limit).await
    }
}

#[tokio::test]
async fn a_refresh_refused_by_a_fail_closed_audit_can_be_retried() {
    let audit = std::sync::Arc::new(FlakyAudit {
        inner: wallet_auth::MemoryMintAuditStore::new(100),
        failing: std::sync::atomic::AtomicBool::new(false),
    });
    let shared = std::sync::Arc::clone(&audit);
    let app = app_with(
        AuthConfig {
            mint_audit_fail_closed: true,
            ..Default::default()
        },
        move |b| b.with_mint_audit_store(shared),
    );
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    audit
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = refresh(&app, &s["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    audit
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let r = refresh(&app, &s["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        refresh(&app, &r.body["refresh_token"]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_family_limit_answers_429_and_leaves_the_token_usable() {
    let app = app(AuthConfig {
        refresh_per_family_per_minute: 2,
        ..Default::default()
    });
    let s = app.sign_in(&Wallet::generate("Ed25519")).await;
    let mut token = s["refresh_token"].clone();
    for _ in 0..2 {
        let r = refresh(&app, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        token = r.body["refresh_token"].clone();
    }
    let r = refresh(&app, &token).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.detail(), "too many requests");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another family is not affected; this one refills with time.
    let other = app.sign_in(&Wallet::generate("Ed25519")).await;
    assert_eq!(
        refresh(&app, &other["refresh_token"]).await.status,
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(wait));
    assert_eq!(refresh(&app, &token).await.status, StatusCode::OK);
}
