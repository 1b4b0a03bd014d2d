//! Durability of the denylist and the mint audit: pico-server-auth's files
//! load and are served; every revocation answered 200 survives SIGKILL; a
//! full disk is answered, not panicked on. (Refresh rotation across a
//! restart is in `tests/refresh.rs`.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::server::{Http, Server};
use common::Wallet;
use serde_json::json;
use wallet_auth::AuthConfig;

/// A fleet secret long enough to pass the configuration check.
const FLEET_SECRET: &str = "durability-fleet-secret";

#[tokio::test]
async fn pico_files_load_and_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pico");
    let revocations = dir.path().join("revocations.jsonl");
    let mints = dir.path().join("mints.jsonl");
    std::fs::copy(format!("{fixtures}/revocations.jsonl"), &revocations).unwrap();
    std::fs::copy(format!("{fixtures}/mints.jsonl"), &mints).unwrap();
    let app = common::app(AuthConfig {
        revocation_store_path: revocations.to_string_lossy().into(),
        mint_audit_path: mints.to_string_lossy().into(),
        fleet_mint_secret: FLEET_SECRET.into(),
        ..Default::default()
    });
    let svc = app
        .post_with(
            "/fleet/sessions",
            json!({"session_id":"x","agent_id":"y","role":"service"}),
            &[("x-fleet-secret", FLEET_SECRET)],
        )
        .await;
    let svc = svc.body["session_token"].as_str().unwrap().to_string();
    let r = app.get("/revoked-jtis", Some(&svc)).await;
    assert_eq!(r.status, StatusCode::OK);
    let jtis = common::item_jtis(&r.body);
    // The malformed line and the torn tail are skipped; the rest, newest first.
    assert_eq!(jtis, ["jti-delta", "jti-charlie", "jti-bravo", "jti-alpha"]);
    assert_eq!(r.body["items"][1]["reason"], "clé compromise ✓");
    assert_eq!(r.body["items"][3]["revoked_at"], 1767225600.125);

    // The loaded mints are served by /mints, with revoked computed now.
    let op = operator(&app);
    let r = app.get("/mints?limit=5000", Some(&op)).await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    assert!(items.len() >= 10, "{}", items.len());
    assert!(items.iter().any(|i| i["jti"] == "mint-00"));
    // Appending after the torn tail keeps the file loadable.
    let h = format!("Bearer {op}");
    let r = app
        .post_with(
            "/revoke",
            json!({ "jti": "after-torn" }),
            &[("authorization", h.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let reloaded = wallet_auth::JsonlRevocationStore::open(&revocations).unwrap();
    use wallet_auth::RevocationStore;
    assert!(reloaded.get("after-torn").await.unwrap().is_some());
    assert!(reloaded.get("jti-alpha").await.unwrap().is_some());
}

fn operator(app: &common::TestApp) -> String {
    common::token_with_role(app, "operator")
}

#[tokio::test]
async fn entries_past_their_exp_leave_the_poll_but_stay_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.jsonl");
    let app = common::app(AuthConfig {
        revocation_store_path: path.to_string_lossy().into(),
        ..Default::default()
    });
    let op = operator(&app);
    let h = format!("Bearer {op}");
    use wallet_auth::clock::Clock;
    let exp = app.clock.now_secs() + 10;
    let r = app
        .post_with(
            "/revoke",
            json!({ "jti": "short-lived", "exp": exp }),
            &[("authorization", h.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["revoked"]["exp"], exp);
    app.post_with(
        "/revoke",
        json!({ "jti": "forever" }),
        &[("authorization", h.as_str())],
    )
    .await;
    assert_eq!(
        common::item_jtis(&app.get("/revoked-jtis", Some(&op)).await.body),
        ["forever", "short-lived"]
    );
    app.clock.advance(Duration::from_secs(11));
    let op = operator(&app);
    assert_eq!(
        common::item_jtis(&app.get("/revoked-jtis", Some(&op)).await.body),
        ["forever"]
    );
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(file.contains("short-lived"));
    let r = app
        .post_with(
            "/revoke",
            json!({ "jti": "x", "exp": "soon" }),
            &[("authorization", format!("Bearer {op}").as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

const ENV: [(&str, &str); 3] = [
    ("SERVER_AUTH_AUTO_CREATE_ADMIN", "true"),
    ("SERVER_AUTH_ADMIN_PASSWORD", "durability-test-password"),
    ("SERVER_AUTH_FLEET_MINT_SECRET", "durability-fleet"),
];

/// Revokes many jtis concurrently, SIGKILLs the server at a random moment,
/// restarts it, and finds every revocation that was answered 200. Five rounds
/// on one data directory, so later rounds also re-check earlier ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_revocation_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..5u32 {
        let server = Server::start(dir.path(), &[], &ENV);
        let base = server.base.clone();
        let token = Http::new(&base)
            .login("admin@pico.local", "durability-test-password")
            .await;
        let sent = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for w in 0..16 {
            let (client, base, token, acked, sent) = (
                client.clone(),
                base.clone(),
                token.clone(),
                acknowledged.clone(),
                sent.clone(),
            );
            workers.push(tokio::spawn(async move {
                // Bounded: at most 2,000 requests per worker.
                for i in 0..2000 {
                    let jti = format!("r{round}-w{w}-{i}");
                    sent.fetch_add(1, Ordering::Relaxed);
                    let resp = client
                        .post(format!("{base}/revoke"))
                        .bearer_auth(&token)
                        .json(&json!({ "jti": jti, "reason": "durability" }))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(jti),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return, // the server died
                    }
                }
            }));
        }
        // Kill at a pseudo-random moment between 50 and 550 ms in.
        let mut seed = [0u8; 2];
        getrandom::fill(&mut seed).unwrap();
        let delay = 50 + u64::from(u16::from_le_bytes(seed)) % 500;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for w in workers {
            w.await.unwrap();
        }
        let acked_so_far = acknowledged.lock().unwrap().len();
        eprintln!(
            "round {round}: killed after {} ms; {} sent, {acked_so_far} acknowledged in total",
            started.elapsed().as_millis(),
            sent.load(Ordering::Relaxed)
        );

        let server = Server::start(dir.path(), &[], &ENV);
        let http = Http::new(&server.base);
        let svc = http.fleet_token("durability-fleet", "service").await;
        let (_, list) = http.get("/revoked-jtis", Some(&svc)).await;
        let listed: std::collections::HashSet<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["jti"].as_str())
            .collect();
        let acked = acknowledged.lock().unwrap().clone();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|j| !listed.contains(j.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged revocations lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        server.terminate();
    }
    assert!(
        acknowledged.lock().unwrap().len() > 100,
        "the test revoked too little to mean anything"
    );
}

/// A small tmpfs mounted for one test (needs root), unmounted on drop: a
/// real file system that really fills up.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (said loudly) when this process may not mount.
    fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            common::missing_dependency(test, "cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the file system: writes a filler file until ENOSPC.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![b'f'; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a writer thread may still hold its file open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// ENOSPC on Linux.
fn libc_enospc() -> i32 {
    28
}

/// A full disk fails the appends of that moment with the error (each caller
/// hears it), and the writer recovers by itself once space is freed: no
/// restart, later appends are durable again. A real ENOSPC from a real file
/// system, not a fake.
#[tokio::test]
async fn appends_on_a_full_disk_fail_and_recover_once_space_is_freed() {
    use wallet_auth::{RevocationEntry, RevocationKind, RevocationStore};
    let Some(fs) = Tmpfs::mount(
        "durability::appends_on_a_full_disk_fail_and_recover_once_space_is_freed",
        "256k",
    ) else {
        return;
    };
    let path = fs.path().join("data/revocations.jsonl");
    let store = wallet_auth::JsonlRevocationStore::open(&path).unwrap();
    // Lines of more than two pages, so each append needs new pages.
    let entry = |jti: &str| RevocationEntry {
        jti: jti.into(),
        revoked_at: 1.0,
        reason: "r".repeat(9000),
        revoked_by: "op".into(),
        exp: None,
        kind: RevocationKind::Token,
    };
    store.revoke(entry("before")).await.unwrap();
    let filler = fs.fill();
    for jti in ["full-1", "full-2", "full-3"] {
        let err = store.revoke(entry(jti)).await.unwrap_err();
        assert!(
            matches!(&err, wallet_auth::StoreError::Io(e) if e.raw_os_error() == Some(libc_enospc())),
            "{err:?}"
        );
        assert_eq!(
            store.get(jti).await.unwrap(),
            None,
            "not acknowledged, not served"
        );
    }
    assert_eq!(store.writer().failed_batches(), 3);
    std::fs::remove_file(filler).unwrap();
    store.revoke(entry("after")).await.unwrap();
    store.revoke(entry("after-2")).await.unwrap();
    assert!(store.writer().reopens() >= 1);
    drop(store);
    let reloaded = wallet_auth::JsonlRevocationStore::open(&path).unwrap();
    let mut jtis: Vec<String> = reloaded
        .list()
        .await
        .unwrap()
        .iter()
        .map(|e| e.jti.clone())
        .collect();
    jtis.sort();
    assert_eq!(jtis, ["after", "after-2", "before"]);
}

/// The mint audit on a full disk (fail-open, the default): sign-ins go on,
/// `audit_failures` counts each lost record batch, and once space is freed
/// the audit resumes by itself.
#[tokio::test]
async fn a_full_disk_gaps_the_mint_audit_which_resumes_by_itself() {
    let Some(fs) = Tmpfs::mount(
        "durability::a_full_disk_gaps_the_mint_audit_which_resumes_by_itself",
        "256k",
    ) else {
        return;
    };
    let mints = fs.path().join("mints.jsonl");
    let app = common::app(AuthConfig {
        mint_audit_path: mints.to_string_lossy().into(),
        ..Default::default()
    });
    // ML-DSA-65: each record carries a 3,904-character subject, so each
    // sign-in's batch needs new pages.
    let wallet = Wallet::generate("ML-DSA-65");
    app.sign_in(&wallet).await;
    assert_eq!(app.auth.audit_failures(), 0);
    let filler = fs.fill();
    let during = app.sign_in(&wallet).await;
    assert_eq!(app.auth.audit_failures(), 1);
    std::fs::remove_file(filler).unwrap();
    let after = app.sign_in(&wallet).await;
    assert_eq!(app.auth.audit_failures(), 1, "the audit resumed");
    let on_disk: Vec<wallet_auth::MintRecord> = wallet_auth::jsonl::load(&mints).unwrap();
    let jti = |t: &serde_json::Value| {
        common::claims_of(t["access_token"].as_str().unwrap())["jti"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(!on_disk.iter().any(|m| m.jti == jti(&during)));
    assert!(on_disk.iter().any(|m| m.jti == jti(&after)));
    assert_eq!(on_disk.len(), 4, "two sign-ins of two records each");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A used refresh token as `/refresh` records it, for an ML-DSA-65 wallet
/// (a 3,904-character subject).
fn refresh_used(jti: String, exp: u64) -> wallet_auth::RevocationEntry {
    wallet_auth::RevocationEntry {
        reason: format!("rotated to {}", wallet_auth::token::new_jti()),
        revoked_at: 1_767_225_600.125,
        revoked_by: format!("0x{}", "ab".repeat(1951)),
        exp: Some(exp),
        kind: wallet_auth::RevocationKind::RefreshUsed,
        jti,
    }
}

/// What a used refresh token costs on disk, before (the whole entry, as
/// this crate wrote it up to now) and after (bookkeeping only).
#[tokio::test]
async fn a_used_refresh_token_takes_a_small_line() {
    use wallet_auth::RevocationStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.jsonl");
    let store = wallet_auth::JsonlRevocationStore::open(&path).unwrap();
    let entry = refresh_used(wallet_auth::token::new_jti(), now_secs() + 7 * 86_400);
    assert_eq!(entry.revoked_by.len(), 3904);
    let before = serde_json::to_vec(&entry).unwrap().len() + 1;
    assert!(store.try_insert(entry).await.unwrap());
    let after = std::fs::metadata(&path).unwrap().len() as usize;
    eprintln!("refresh_used line: {before} bytes before, {after} bytes after");
    assert!(before > 3904);
    assert!(after < 128, "{after} bytes");
}

/// Many dead entries (expired bookkeeping) and a few live ones: the purge
/// compacts the file down to the live entries (rewriting an old fat line
/// without its subject), a reload finds the same set, and the leftover of a
/// compaction interrupted by a crash is ignored and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_shrinks_the_denylist_file_to_its_live_entries() {
    use wallet_auth::{JsonlRevocationStore, RevocationStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.jsonl");
    let t = now_secs();
    // A file from before this change: a live used token with its subject.
    let old = refresh_used("old-fat".into(), t + 10_000);
    let mut text = serde_json::to_vec(&old).unwrap();
    text.push(b'\n');
    std::fs::write(&path, &text).unwrap();

    let store = Arc::new(JsonlRevocationStore::open(&path).unwrap());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..3000 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            // Dying soon, except every hundredth.
            let exp = if i % 100 == 0 { t + 10_000 } else { t + 100 };
            store
                .try_insert(refresh_used(format!("used-{i}"), exp))
                .await
        });
    }
    for i in 0..20 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            store
                .revoke(wallet_auth::RevocationEntry {
                    jti: format!("op-{i}"),
                    revoked_at: 1.5,
                    reason: "lost laptop".into(),
                    revoked_by: "operator-1".into(),
                    exp: None,
                    kind: wallet_auth::RevocationKind::Token,
                })
                .await
                .map(|_| true)
        });
    }
    assert!(set.join_all().await.into_iter().all(|r| r.unwrap()));
    let big = std::fs::metadata(&path).unwrap().len();
    assert_eq!(store.list().await.unwrap().len(), 3021);

    // Nothing expired yet: no compaction.
    assert_eq!(store.purge_expired(t).await.unwrap(), 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), big);

    assert_eq!(store.purge_expired(t + 100).await.unwrap(), 2970);
    let live: Vec<wallet_auth::RevocationEntry> = store.list().await.unwrap().to_vec();
    assert_eq!(live.len(), 51);
    let small = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        small.lines().count(),
        51,
        "the file holds the live entries only"
    );
    assert!(!small.contains("abab"), "no subject left in the file");
    eprintln!("compaction: {big} bytes -> {} bytes", small.len());
    // Appends go on, to the new file.
    assert!(store
        .try_insert(refresh_used("after".into(), t + 10_000))
        .await
        .unwrap());
    drop(store);

    let sorted = |mut v: Vec<wallet_auth::RevocationEntry>| {
        v.sort_by(|a, b| a.jti.cmp(&b.jti));
        v
    };
    let reloaded = JsonlRevocationStore::open(&path).unwrap();
    let mut expected = live.clone();
    expected.push(refresh_used("after".into(), t + 10_000).stored());
    assert_eq!(
        sorted(reloaded.list().await.unwrap().to_vec()),
        sorted(expected.clone())
    );
    drop(reloaded);

    // A crash mid-compaction left the new file half written beside the old.
    let tmp = wallet_auth::jsonl::rewrite_temp_path(&path);
    std::fs::write(&tmp, &small.as_bytes()[..small.len() / 2]).unwrap();
    let after_crash = JsonlRevocationStore::open(&path).unwrap();
    assert!(!tmp.exists());
    assert_eq!(
        sorted(after_crash.list().await.unwrap().to_vec()),
        sorted(expected)
    );
}
