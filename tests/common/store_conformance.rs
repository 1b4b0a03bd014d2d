//! The store conformance suite: written once, run against every backend.
//!
//! A backend implements [`Backend`]; `tests/store_conformance.rs` runs every
//! case against it with `conformance_tests!(name, backend_expr)`. A new
//! backend (Redis) adds one `Backend` impl and one macro line.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use wallet_auth::{
    ChallengeMeta, ChallengeStore, MintAuditStore, MintRecord, RevocationEntry, RevocationKind,
    RevocationStore,
};

/// A store backend under test.
pub trait Backend: Send + Sync + 'static {
    /// Opens the denylist. Every call opens the *same* storage: for a durable
    /// backend a second call is a restart.
    fn revocations(&self) -> Arc<dyn RevocationStore>;
    /// Opens the mint audit keeping the newest `max_in_memory` in memory;
    /// same storage on every call, like [`Backend::revocations`].
    fn mints(&self, max_in_memory: usize) -> Arc<dyn MintAuditStore>;
    /// Whether what is written survives reopening.
    fn durable(&self) -> bool;
    /// The challenge store, when the backend has one of its own.
    fn challenges(&self) -> Option<Arc<dyn ChallengeStore>> {
        None
    }
    /// Moves the challenge store's clock forward by `by`; `false` when the
    /// store keeps real time (native TTLs) and the caller must wait instead.
    fn advance(&self, by: Duration) -> bool {
        let _ = by;
        false
    }
}

/// A denylist entry.
pub fn entry(jti: &str, reason: &str, revoked_at: f64) -> RevocationEntry {
    RevocationEntry {
        jti: jti.into(),
        revoked_at,
        reason: reason.into(),
        revoked_by: "operator-1".into(),
        exp: None,
        kind: RevocationKind::Token,
    }
}

/// A mint record numbered `i`.
pub fn mint(i: u64) -> MintRecord {
    MintRecord {
        jti: format!("mint-{i}"),
        sub: format!("0xwallet{i}"),
        role: "operator".into(),
        iat: 1_767_225_600 + i,
        exp: 1_767_225_600 + i + 28_800,
        kind: "access".into(),
        scope: String::new(),
        agent_id: String::new(),
        session_id: String::new(),
    }
}

fn jtis(list: &[RevocationEntry]) -> Vec<&str> {
    list.iter().map(|e| e.jti.as_str()).collect()
}

fn mint_jtis(list: &[MintRecord]) -> Vec<String> {
    list.iter().map(|m| m.jti.clone()).collect()
}

pub async fn idempotent_revoke_returns_first_entry(b: &dyn Backend) {
    let store = b.revocations();
    let first = store.revoke(entry("j1", "first", 10.5)).await.unwrap();
    assert_eq!(first, entry("j1", "first", 10.5));
    let again = store.revoke(entry("j1", "second", 99.0)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(store.get("j1").await.unwrap(), Some(first));
    assert_eq!(store.list().await.unwrap().len(), 1);
}

pub async fn get_unknown_is_none(b: &dyn Backend) {
    let store = b.revocations();
    store.revoke(entry("known", "", 1.0)).await.unwrap();
    assert_eq!(store.get("unknown").await.unwrap(), None);
}

pub async fn list_is_newest_first(b: &dyn Backend) {
    let store = b.revocations();
    for (i, j) in ["a", "b", "c"].iter().enumerate() {
        store.revoke(entry(j, "", 100.0 + i as f64)).await.unwrap();
    }
    assert_eq!(jtis(&store.list().await.unwrap()), ["c", "b", "a"]);
}

pub async fn version_changes_only_when_the_set_changes(b: &dyn Backend) {
    let store = b.revocations();
    let v0 = store.version();
    store.revoke(entry("a", "", 1.0)).await.unwrap();
    let v1 = store.version();
    assert_ne!(v0, v1);
    store.revoke(entry("a", "again", 2.0)).await.unwrap();
    assert_eq!(store.version(), v1, "an idempotent revoke is no change");
    store.revoke(entry("b", "", 3.0)).await.unwrap();
    assert_ne!(store.version(), v1);
}

pub async fn optional_fields_round_trip(b: &dyn Backend) {
    let store = b.revocations();
    // A bookkeeping entry: stored without reason and revoked_by.
    let family = RevocationEntry {
        exp: Some(1_800_000_000),
        kind: RevocationKind::RefreshFamily,
        revoked_by: String::new(),
        ..entry("family-1", "", 5.25)
    };
    assert_eq!(store.revoke(family.clone()).await.unwrap(), family);
    assert_eq!(store.get("family-1").await.unwrap(), Some(family.clone()));
    if b.durable() {
        drop(store);
        assert_eq!(b.revocations().get("family-1").await.unwrap(), Some(family));
    }
}

pub async fn concurrent_revokes_of_one_jti_agree(b: &dyn Backend) {
    let store = b.revocations();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            store
                .revoke(entry("same", &format!("r{i}"), i as f64))
                .await
        });
    }
    let got: Vec<_> = set
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        got.iter().all(|e| *e == got[0]),
        "every caller gets the first entry"
    );
    assert_eq!(store.list().await.unwrap().as_slice(), &[got[0].clone()]);
    if b.durable() {
        drop(store);
        let reopened = b.revocations();
        assert_eq!(reopened.list().await.unwrap().as_slice(), &[got[0].clone()]);
    }
}

pub async fn concurrent_revokes_of_distinct_jtis_all_kept(b: &dyn Backend) {
    let store = b.revocations();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        set.spawn(async move { store.revoke(entry(&format!("j{i}"), "", i as f64)).await });
    }
    for r in set.join_all().await {
        r.unwrap();
    }
    let want: HashSet<String> = (0..200).map(|i| format!("j{i}")).collect();
    let have: HashSet<String> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|e| e.jti.clone())
        .collect();
    assert_eq!(have, want);
    if b.durable() {
        drop(store);
        let reopened = b.revocations();
        let have: HashSet<String> = reopened
            .list()
            .await
            .unwrap()
            .iter()
            .map(|e| e.jti.clone())
            .collect();
        assert_eq!(have, want);
    }
}

pub async fn reopen_finds_every_entry(b: &dyn Backend) {
    if !b.durable() {
        return;
    }
    let store = b.revocations();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(
            store
                .revoke(entry(&format!("r{i}"), "why", 1000.0 + f64::from(i)))
                .await
                .unwrap(),
        );
    }
    let before = store.list().await.unwrap();
    drop(store);
    let reopened = b.revocations();
    assert_eq!(
        reopened.list().await.unwrap(),
        before,
        "same entries, same order"
    );
    for e in &written {
        assert_eq!(reopened.get(&e.jti).await.unwrap().as_ref(), Some(e));
    }
    // Still idempotent after a restart.
    let again = reopened.revoke(entry("r0", "later", 5000.0)).await.unwrap();
    assert_eq!(again, written[0]);
    assert_eq!(reopened.list().await.unwrap().len(), 5);
}

pub async fn audit_recent_is_newest_first_and_limited(b: &dyn Backend) {
    let audit = b.mints(100);
    audit.append(vec![mint(0), mint(1)]).await.unwrap();
    audit.append(vec![mint(2)]).await.unwrap();
    audit.append(vec![]).await.unwrap();
    let all = audit.recent(10).await.unwrap();
    assert_eq!(mint_jtis(&all), ["mint-2", "mint-1", "mint-0"]);
    assert_eq!(all[0], mint(2), "records come back whole");
    assert_eq!(
        mint_jtis(&audit.recent(2).await.unwrap()),
        ["mint-2", "mint-1"]
    );
    assert!(audit.recent(0).await.unwrap().is_empty());
}

pub async fn audit_keeps_only_the_newest_n(b: &dyn Backend) {
    let audit = b.mints(3);
    audit.append((0..5).map(mint).collect()).await.unwrap();
    audit.append(vec![mint(5)]).await.unwrap();
    assert_eq!(
        mint_jtis(&audit.recent(100).await.unwrap()),
        ["mint-5", "mint-4", "mint-3"]
    );
}

pub async fn audit_reopen_keeps_the_newest_n(b: &dyn Backend) {
    if !b.durable() {
        return;
    }
    let audit = b.mints(4);
    audit.append((0..3).map(mint).collect()).await.unwrap();
    audit.append((3..8).map(mint).collect()).await.unwrap();
    audit.append(vec![mint(8), mint(9)]).await.unwrap();
    drop(audit);
    let reopened = b.mints(4);
    let recent = reopened.recent(100).await.unwrap();
    assert_eq!(mint_jtis(&recent), ["mint-9", "mint-8", "mint-7", "mint-6"]);
    assert_eq!(recent[0], mint(9));
    reopened.append(vec![mint(10)]).await.unwrap();
    assert_eq!(
        mint_jtis(&reopened.recent(100).await.unwrap()),
        ["mint-10", "mint-9", "mint-8", "mint-7"]
    );
    drop(reopened);
    // A larger window after a restart sees the whole file.
    assert_eq!(b.mints(1000).recent(1000).await.unwrap().len(), 11);
}

const TTL: Duration = Duration::from_secs(60);

fn is_lower_hex_64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub async fn challenge_consumes_once(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    let n = store.issue("alice", TTL).await.unwrap();
    assert!(is_lower_hex_64(&n), "{n}");
    assert!(store.consume("alice", &n).await.unwrap());
    assert!(!store.consume("alice", &n).await.unwrap(), "second consume");
    assert!(
        !store.consume("nobody", &n).await.unwrap(),
        "unknown address"
    );
}

pub async fn challenge_several_outstanding_each_once(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    // A stranger asking for challenges for alice takes nothing from her.
    let mut nonces = Vec::new();
    for _ in 0..5 {
        nonces.push(store.issue("alice", TTL).await.unwrap());
    }
    let distinct: HashSet<&String> = nonces.iter().collect();
    assert_eq!(distinct.len(), 5);
    // Consumed in another order than issued, each exactly once.
    for n in nonces.iter().rev() {
        assert!(store.consume("alice", n).await.unwrap(), "{n}");
    }
    for n in &nonces {
        assert!(!store.consume("alice", n).await.unwrap(), "second use {n}");
    }
}

pub async fn challenge_is_per_address(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    let a = store.issue("alice", TTL).await.unwrap();
    let bob = store.issue("bob", TTL).await.unwrap();
    assert!(
        !store.consume("bob", &a).await.unwrap(),
        "alice's nonce at bob"
    );
    assert!(
        !store.consume("alice", &bob).await.unwrap(),
        "bob's at alice"
    );
    // Neither misplaced attempt burned anything.
    assert!(store.consume("alice", &a).await.unwrap());
    assert!(store.consume("bob", &bob).await.unwrap());
}

pub async fn challenge_wrong_nonce_burns_nothing(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    let n = store.issue("alice", TTL).await.unwrap();
    let mut flipped = n.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let wrong = [
        String::new(),
        "zz".into(),
        "0".repeat(64),
        flipped,
        n.to_uppercase(),
        format!("{n}0"),
        n[..63].to_string(),
        format!(" {}", &n[1..]),
        "é".repeat(32),
    ];
    for w in &wrong {
        if *w != n {
            assert!(!store.consume("alice", w).await.unwrap(), "{w:?}");
        }
    }
    assert!(
        store.consume("alice", &n).await.unwrap(),
        "the issued nonce still works after {} wrong ones",
        wrong.len()
    );
    assert!(!store.consume("alice", &n).await.unwrap());
}

pub async fn challenge_expires(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    let ttl = Duration::from_millis(300);
    let short = store.issue("alice", ttl).await.unwrap();
    let long = store.issue("alice", TTL).await.unwrap();
    let keep = store.issue("bob", TTL).await.unwrap();
    let past = ttl + Duration::from_millis(300);
    if !b.advance(past) {
        // Native TTLs keep real time.
        tokio::time::sleep(past).await;
    }
    assert!(!store.consume("alice", &short).await.unwrap(), "expired");
    assert!(
        store.consume("alice", &long).await.unwrap(),
        "the same address's later challenge has its own ttl"
    );
    assert!(store.consume("bob", &keep).await.unwrap(), "not expired");
    // Swept, not merely refused.
    store.purge_expired().await.unwrap();
    assert!(!store.consume("alice", &short).await.unwrap());
}

/// The meta given at issue comes back at take, exactly, once; `issue`
/// keeps the default (no message).
pub async fn challenge_keeps_its_meta(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    let mut bytes = [0u8; ChallengeMeta::ENCODED_LEN];
    bytes[0] = 5; // an EIP-4361 message
    bytes[1..5].copy_from_slice(&60u32.to_be_bytes());
    bytes[5..13].copy_from_slice(&1_767_225_600u64.to_be_bytes());
    bytes[13..21].copy_from_slice(&8453u64.to_be_bytes());
    let meta = ChallengeMeta::from_bytes(&bytes).unwrap();
    let address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let n = store.issue_with(address, TTL, meta).await.unwrap();
    let bare = store.issue(address, TTL).await.unwrap();
    assert_eq!(
        store
            .take("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", &n)
            .await
            .unwrap(),
        None
    );
    let back = store.take(address, &n).await.unwrap().expect("issued");
    assert_eq!(back, meta);
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(store.take(address, &n).await.unwrap(), None, "taken once");
    assert_eq!(
        store.take(address, &bare).await.unwrap(),
        Some(ChallengeMeta::default())
    );
}

pub async fn challenge_long_address(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    let long = "ab".repeat(4096);
    let n = store.issue(&long, TTL).await.unwrap();
    assert!(!store.consume(&long[..long.len() - 1], &n).await.unwrap());
    let n2 = store.issue(&long, TTL).await.unwrap();
    assert!(store.consume(&long, &n2).await.unwrap());
    assert!(
        store.consume(&long, &n).await.unwrap(),
        "the attempt at a near-miss address burned nothing"
    );
}

pub async fn challenge_200_concurrent_consumes_one_success(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    for round in 0..3 {
        // Other outstanding challenges of the same address, and 100 callers
        // with wrong nonces in the race, change nothing.
        let other = store.issue("alice", TTL).await.unwrap();
        let n = store.issue("alice", TTL).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(300));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..300 {
            let nonce = if i % 3 == 2 {
                wallet_auth::challenge::new_nonce()
            } else {
                n.clone()
            };
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            set.spawn(async move {
                start.wait().await;
                store.consume("alice", &nonce).await.unwrap()
            });
        }
        let wins = set.join_all().await.into_iter().filter(|&ok| ok).count();
        assert_eq!(wins, 1, "round {round}: {wins} successes");
        assert!(
            store.consume("alice", &other).await.unwrap(),
            "round {round}"
        );
    }
}

pub async fn challenge_concurrent_issues_and_consumes_of_one_address(b: &dyn Backend) {
    let Some(store) = b.challenges() else { return };
    // 100 tasks each issue and consume their own challenge for one address
    // at once: every one succeeds, as if alone.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            let n = store.issue("alice", TTL).await.unwrap();
            tokio::task::yield_now().await;
            store.consume("alice", &n).await.unwrap()
        });
    }
    assert!(set.join_all().await.into_iter().all(|ok| ok));
}

/// Runs every case against one backend: `conformance_tests!(module, expr)`
/// where `expr` builds a fresh backend (fresh storage) for each case, or
/// `conformance_tests!(module, optional expr)` where `expr` is an
/// `Option` of one (`None`: its server is missing, and said so loudly).
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $backend:expr) => {
        $crate::conformance_tests!($name, optional Some($backend));
    };
    ($name:ident, optional $backend:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_tests!(@cases $backend;
                challenge_consumes_once,
                challenge_several_outstanding_each_once,
                challenge_is_per_address,
                challenge_wrong_nonce_burns_nothing,
                challenge_expires,
                challenge_long_address,
                challenge_200_concurrent_consumes_one_success,
                challenge_concurrent_issues_and_consumes_of_one_address,
                challenge_keeps_its_meta,
                idempotent_revoke_returns_first_entry,
                get_unknown_is_none,
                list_is_newest_first,
                version_changes_only_when_the_set_changes,
                optional_fields_round_trip,
                concurrent_revokes_of_one_jti_agree,
                concurrent_revokes_of_distinct_jtis_all_kept,
                reopen_finds_every_entry,
                audit_recent_is_newest_first_and_limited,
                audit_keeps_only_the_newest_n,
                audit_reopen_keeps_the_newest_n,
            );
        }
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                // `None` when the backend's server is missing (reported loudly).
                let Some(backend) = $backend else { return };
                conformance::$case(&backend).await;
            }
        )*
    };
}
