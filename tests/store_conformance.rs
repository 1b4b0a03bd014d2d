//! Every store backend against the one conformance suite, plus what only the
//! JSON Lines files have: pico-server-auth's files, torn tails, group commit.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/store_conformance.rs"]
mod conformance;
#[path = "common/revocation_conformance.rs"]
mod revocation_conformance;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use conformance::{entry, mint, Backend};
use tempfile::TempDir;
use wallet_auth::clock::ManualClock;
use wallet_auth::jsonl;
use wallet_auth::{
    ChallengeStore, JsonlMintAuditStore, JsonlRevocationStore, MemoryChallengeStore,
    MemoryMintAuditStore, MemoryRevocationStore, MintAuditStore, MintRecord, RevocationEntry,
    RevocationStore,
};

/// A fresh in-memory store on every open (challenges: one store on a
/// manual clock).
struct Memory {
    clock: ManualClock,
    challenges: Arc<MemoryChallengeStore>,
}

impl Memory {
    fn new() -> Self {
        let clock = ManualClock::starting_now();
        let challenges = Arc::new(MemoryChallengeStore::with_clock(
            1000,
            Arc::new(clock.clone()),
        ));
        Self { clock, challenges }
    }
}

impl Backend for Memory {
    fn challenges(&self) -> Option<Arc<dyn ChallengeStore>> {
        Some(self.challenges.clone())
    }
    fn advance(&self, by: std::time::Duration) -> bool {
        self.clock.advance(by);
        true
    }
    fn revocations(&self) -> Arc<dyn RevocationStore> {
        Arc::new(MemoryRevocationStore::new())
    }
    fn mints(&self, max_in_memory: usize) -> Arc<dyn MintAuditStore> {
        Arc::new(MemoryMintAuditStore::new(max_in_memory))
    }
    fn durable(&self) -> bool {
        false
    }
}

/// Files in a fresh directory on a real disk (under `target/`, not a tmpfs),
/// so fsync really waits.
struct Jsonl {
    dir: TempDir,
}

fn disk_tempdir() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

impl Jsonl {
    fn new() -> Self {
        Self {
            dir: disk_tempdir(),
        }
    }
}

impl Backend for Jsonl {
    fn revocations(&self) -> Arc<dyn RevocationStore> {
        Arc::new(JsonlRevocationStore::open(self.dir.path().join("revocations.jsonl")).unwrap())
    }
    fn mints(&self, max_in_memory: usize) -> Arc<dyn MintAuditStore> {
        Arc::new(
            JsonlMintAuditStore::open(self.dir.path().join("mints.jsonl"), max_in_memory).unwrap(),
        )
    }
    fn durable(&self) -> bool {
        true
    }
}

conformance_tests!(memory, Memory::new());
conformance_tests!(jsonl_files, Jsonl::new());
#[cfg(feature = "redis")]
conformance_tests!(
    redis,
    optional redis_backend::RedisBackend::start("store_conformance::redis").await
);
revocation_conformance_tests!(memory_denylist, Memory::new());
revocation_conformance_tests!(jsonl_denylist, Jsonl::new());
#[cfg(feature = "redis")]
revocation_conformance_tests!(
    redis_denylist,
    optional redis_backend::RedisBackend::start("store_conformance::redis_denylist").await
);

/// A real redis-server per case (a unique key prefix too); reopening a store
/// reconnects to the same server and prefix.
#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use crate::common::redis_server::{unique_prefix, RedisServer};
    use wallet_auth::{RedisOptions, RedisStores};

    pub struct RedisBackend {
        stores: RedisStores,
        _server: RedisServer,
    }

    impl RedisBackend {
        pub async fn start(test: &str) -> Option<Self> {
            let server = RedisServer::start(test)?;
            let options = RedisOptions {
                key_prefix: unique_prefix("conformance"),
                ..Default::default()
            };
            let stores = RedisStores::connect(&server.url(), options).await.unwrap();
            Some(Self {
                stores,
                _server: server,
            })
        }
    }

    impl Backend for RedisBackend {
        fn revocations(&self) -> Arc<dyn RevocationStore> {
            let stores = self.stores.clone();
            let store = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(stores.revocations())
            });
            Arc::new(store.unwrap())
        }
        fn mints(&self, max_in_memory: usize) -> Arc<dyn MintAuditStore> {
            Arc::new(self.stores.mint_audit(max_in_memory))
        }
        fn durable(&self) -> bool {
            true
        }
        fn challenges(&self) -> Option<Arc<dyn ChallengeStore>> {
            Some(Arc::new(self.stores.challenges()))
        }
    }
}

/// Copies a pico-server-auth fixture into `dir`.
fn pico_fixture(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pico")
        .join(name);
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    dst
}

fn jtis(list: &[RevocationEntry]) -> Vec<&str> {
    list.iter().map(|e| e.jti.as_str()).collect()
}

#[tokio::test]
async fn pico_revocations_load_and_are_served() {
    let dir = disk_tempdir();
    let path = pico_fixture("revocations.jsonl", dir.path());
    let store = JsonlRevocationStore::open(&path).unwrap();
    // The malformed middle line and the torn tail are skipped; file order
    // is revocation order, so newest first is the file reversed.
    let list = store.list().await.unwrap();
    assert_eq!(
        jtis(&list),
        ["jti-delta", "jti-charlie", "jti-bravo", "jti-alpha"]
    );
    let charlie = store.get("jti-charlie").await.unwrap().unwrap();
    assert_eq!(charlie.reason, "clé compromise ✓");
    assert_eq!(charlie.revoked_by, "op-2");
    assert_eq!(charlie.revoked_at, 1_767_225_603.125);
    assert_eq!(store.get("broken").await.unwrap(), None);
    assert_eq!(store.get("jti-torn").await.unwrap(), None);
    // Idempotent against what pico wrote.
    let alpha = store
        .revoke(entry("jti-alpha", "again", 1.0))
        .await
        .unwrap();
    assert_eq!(alpha.reason, "lost laptop");
}

#[tokio::test]
async fn appending_after_a_torn_tail_loads_fully() {
    let dir = disk_tempdir();
    let path = pico_fixture("revocations.jsonl", dir.path());
    let store = JsonlRevocationStore::open(&path).unwrap();
    let echo = store
        .revoke(entry("jti-echo", "after crash", 2e9))
        .await
        .unwrap();
    drop(store);
    // The new line is not glued to the torn one.
    let text = std::fs::read_to_string(&path).unwrap();
    let last_line = text.lines().last().unwrap();
    assert!(
        last_line.starts_with("{\"jti\":\"jti-echo\""),
        "{last_line}"
    );
    assert!(text.ends_with('\n'));
    let all: Vec<RevocationEntry> = jsonl::load(&path).unwrap();
    assert_eq!(all.len(), 5);
    let reopened = JsonlRevocationStore::open(&path).unwrap();
    assert_eq!(reopened.get("jti-echo").await.unwrap(), Some(echo));
    assert_eq!(reopened.list().await.unwrap()[0].jti, "jti-echo");
}

#[tokio::test]
async fn pico_mints_load_newest_n() {
    let dir = disk_tempdir();
    let path = pico_fixture("mints.jsonl", dir.path());
    let audit = JsonlMintAuditStore::open(&path, 5).unwrap();
    let recent = audit.recent(100).await.unwrap();
    let jtis: Vec<_> = recent.iter().map(|m| m.jti.as_str()).collect();
    assert_eq!(
        jtis,
        ["mint-11", "mint-10", "mint-09", "mint-08", "mint-07"]
    );
    assert_eq!(
        recent[0],
        MintRecord {
            jti: "mint-11".into(),
            sub: "session-11".into(),
            role: "agent".into(),
            iat: 1_767_226_260,
            exp: 1_767_312_660,
            kind: "sign".into(),
            scope: "fleet:read".into(),
            agent_id: "agent-11".into(),
            session_id: "session-11".into(),
        }
    );
    // A window larger than the file: everything but the two bad lines,
    // across the malformed line in the middle.
    let all = JsonlMintAuditStore::open(&path, 100).unwrap();
    assert_eq!(all.recent(100).await.unwrap().len(), 12);
    // Appending after the torn tail, then reopening, loads fully.
    audit.append(vec![mint(99)]).await.unwrap();
    drop((audit, all));
    let records: Vec<MintRecord> = jsonl::load(&path).unwrap();
    assert_eq!(records.len(), 13);
    let reopened = JsonlMintAuditStore::open(&path, 2).unwrap();
    let jtis: Vec<_> = reopened
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.jti)
        .collect();
    assert_eq!(jtis, ["mint-99", "mint-11"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revokes_share_fsyncs() {
    let dir = disk_tempdir();
    let path = dir.path().join("revocations.jsonl");
    let store = Arc::new(JsonlRevocationStore::open(&path).unwrap());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            store
                .revoke(entry(&format!("j{i}"), "", f64::from(i)))
                .await
        });
    }
    for r in set.join_all().await {
        r.unwrap();
    }
    let batches = store.writer().batches();
    assert_eq!(store.writer().lines(), 200);
    assert!(
        batches < 200,
        "group commit: {batches} fsync batches for 200 revokes"
    );
    drop(store);
    let reopened = JsonlRevocationStore::open(&path).unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 200);
}

#[test]
fn an_unwritable_path_fails_at_open() {
    let dir = disk_tempdir();
    assert!(JsonlRevocationStore::open(dir.path()).is_err());
    assert!(JsonlMintAuditStore::open(dir.path(), 10).is_err());
}
