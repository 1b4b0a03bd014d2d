//! The denylist's atomic insert, bookkeeping without subjects, and expiry:
//! written once, run against every backend by `tests/store_conformance.rs`
//! (`revocation_conformance_tests!(name, backend_expr)`), with the
//! [`Backend`](crate::conformance::Backend) of the main suite.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wallet_auth::{RevocationEntry, RevocationKind};

use crate::conformance::Backend;

/// Now, in epoch seconds (the stores that read a clock read the system's).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ML-DSA-65 wallet id: `0x` and 3,904 hex characters in all.
pub fn fat_subject() -> String {
    format!("0x{}", "ab".repeat(1951))
}

pub fn bookkeeping(jti: &str, kind: RevocationKind, exp: u64) -> RevocationEntry {
    RevocationEntry {
        jti: jti.into(),
        revoked_at: 7.5,
        reason: format!("rotated to {jti}-next"),
        revoked_by: fat_subject(),
        exp: Some(exp),
        kind,
    }
}

pub fn operator(jti: &str, exp: Option<u64>) -> RevocationEntry {
    RevocationEntry {
        jti: jti.into(),
        revoked_at: 3.25,
        reason: "lost laptop".into(),
        revoked_by: "operator-1".into(),
        exp,
        kind: RevocationKind::Token,
    }
}

fn jtis(list: &[RevocationEntry]) -> Vec<&str> {
    list.iter().map(|e| e.jti.as_str()).collect()
}

pub async fn try_insert_says_who_created_the_entry(b: &dyn Backend) {
    let store = b.revocations();
    let e = bookkeeping("used-1", RevocationKind::RefreshUsed, now() + 3600);
    assert!(store.try_insert(e.clone()).await.unwrap());
    assert!(!store.try_insert(e.clone()).await.unwrap());
    let other = RevocationEntry {
        revoked_at: 99.0,
        ..e.clone()
    };
    assert!(!store.try_insert(other).await.unwrap());
    assert_eq!(store.get("used-1").await.unwrap().unwrap().revoked_at, 7.5);
    // revoke and try_insert share one notion of presence.
    assert_eq!(
        store.revoke(operator("used-1", None)).await.unwrap().kind,
        RevocationKind::RefreshUsed
    );
    assert!(store.try_insert(operator("op-1", None)).await.unwrap());
    assert_eq!(
        store.revoke(operator("op-1", Some(1))).await.unwrap(),
        operator("op-1", None)
    );
}

pub async fn concurrent_try_inserts_of_one_jti_have_one_winner(b: &dyn Backend) {
    let store = b.revocations();
    let exp = now() + 3600;
    for round in 0..5 {
        let jti = format!("race-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(50));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (store, start, jti) = (Arc::clone(&store), Arc::clone(&start), jti.clone());
            set.spawn(async move {
                start.wait().await;
                store
                    .try_insert(bookkeeping(&jti, RevocationKind::RefreshUsed, exp))
                    .await
                    .unwrap()
            });
        }
        let wins = set.join_all().await.into_iter().filter(|&w| w).count();
        assert_eq!(wins, 1, "round {round}: {wins} winners");
    }
}

pub async fn bookkeeping_entries_are_stored_without_their_subject(b: &dyn Backend) {
    let store = b.revocations();
    let exp = now() + 3600;
    for (jti, kind) in [
        ("used-2", RevocationKind::RefreshUsed),
        ("family:f-2", RevocationKind::RefreshFamily),
    ] {
        store.revoke(bookkeeping(jti, kind, exp)).await.unwrap();
    }
    store.revoke(operator("op-2", None)).await.unwrap();
    let check = |got: RevocationEntry, kind| {
        assert_eq!((got.reason.as_str(), got.revoked_by.as_str()), ("", ""));
        assert_eq!((got.exp, got.kind), (Some(exp), kind));
    };
    check(
        store.get("used-2").await.unwrap().unwrap(),
        RevocationKind::RefreshUsed,
    );
    check(
        store.get("family:f-2").await.unwrap().unwrap(),
        RevocationKind::RefreshFamily,
    );
    assert_eq!(
        store.get("op-2").await.unwrap().unwrap(),
        operator("op-2", None)
    );
    if b.durable() {
        drop(store);
        let store = b.revocations();
        check(
            store.get("used-2").await.unwrap().unwrap(),
            RevocationKind::RefreshUsed,
        );
        assert_eq!(
            store.get("op-2").await.unwrap().unwrap(),
            operator("op-2", None)
        );
    }
}

pub async fn expired_entries_leave_memory_and_the_list(b: &dyn Backend) {
    let store = b.revocations();
    let t = now();
    store.revoke(operator("forever", None)).await.unwrap();
    store
        .revoke(operator("op-soon", Some(t + 100)))
        .await
        .unwrap();
    store
        .revoke(bookkeeping(
            "used-soon",
            RevocationKind::RefreshUsed,
            t + 100,
        ))
        .await
        .unwrap();
    store
        .revoke(bookkeeping(
            "used-later",
            RevocationKind::RefreshUsed,
            t + 10_000,
        ))
        .await
        .unwrap();
    let v = store.version();
    assert_eq!(store.purge_expired(t + 99).await.unwrap(), 0);
    assert_eq!(store.version(), v, "nothing expired: no change");
    assert_eq!(store.purge_expired(t + 100).await.unwrap(), 2);
    assert_ne!(store.version(), v, "a purge is a change");
    assert_eq!(
        jtis(&store.list().await.unwrap()),
        ["used-later", "forever"]
    );
    assert_eq!(store.get("op-soon").await.unwrap(), None);
    assert_eq!(store.get("used-soon").await.unwrap(), None);
    // Long after every exp, only the operator's revocation without one stays.
    assert_eq!(store.purge_expired(t + 1_000_000).await.unwrap(), 1);
    assert_eq!(jtis(&store.list().await.unwrap()), ["forever"]);
    if b.durable() {
        drop(store);
        let store = b.revocations();
        assert_eq!(
            store.get("forever").await.unwrap(),
            Some(operator("forever", None))
        );
    }
}

pub async fn an_expired_entry_counts_as_absent(b: &dyn Backend) {
    let store = b.revocations();
    let past = now() - 10;
    // Stored, though already expired (an insert does not purge).
    assert!(store.try_insert(operator("old", Some(past))).await.unwrap());
    // A new revocation of that jti replaces it.
    assert!(store.try_insert(operator("old", None)).await.unwrap());
    assert_eq!(store.get("old").await.unwrap(), Some(operator("old", None)));
    assert_eq!(store.purge_expired(now()).await.unwrap(), 0);
    assert_eq!(store.get("old").await.unwrap(), Some(operator("old", None)));
    if b.durable() {
        drop(store);
        assert_eq!(
            b.revocations().get("old").await.unwrap(),
            Some(operator("old", None))
        );
    }
}

/// Runs every case of this module against one backend, like
/// `conformance_tests!`.
#[macro_export]
macro_rules! revocation_conformance_tests {
    ($name:ident, $backend:expr) => {
        $crate::revocation_conformance_tests!($name, optional Some($backend));
    };
    ($name:ident, optional $backend:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::revocation_conformance_tests!(@cases $backend;
                try_insert_says_who_created_the_entry,
                concurrent_try_inserts_of_one_jti_have_one_winner,
                bookkeeping_entries_are_stored_without_their_subject,
                expired_entries_leave_memory_and_the_list,
                an_expired_entry_counts_as_absent,
            );
        }
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(backend) = $backend else { return };
                revocation_conformance::$case(&backend).await;
            }
        )*
    };
}
