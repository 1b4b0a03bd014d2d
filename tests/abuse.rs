//! One anonymous client cannot grow the server without bound: a wallet that
//! refreshes its chain in a loop from one IP against the real standalone
//! server, and the bookkeeping of used refresh tokens leaving memory and,
//! by compaction, the denylist file once the tokens have expired.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{Http, Server};
use common::{app, Wallet};
use serde_json::json;
use wallet_auth::AuthConfig;

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_loop_from_one_ip_does_not_grow_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let http = Http::new(&server.base);
    let pid = server.child.id();
    let s = http.sign_in(&Wallet::generate("ML-DSA-65")).await;
    let mut token = s["refresh_token"].clone();
    // Warm up (first allocations of the pools, the poll cache, the files).
    for _ in 0..3 {
        let (status, body) = http
            .post("/refresh", json!({ "refresh_token": token }), &[])
            .await;
        assert_eq!(status, 200, "{body}");
        token = body["refresh_token"].clone();
    }
    let (rss0, disk0) = (vm_rss_kib(pid), dir_bytes(dir.path()));

    let (mut ok, mut limited, mut other) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by time and count.
    for _ in 0..1_000_000 {
        if Instant::now() >= deadline {
            break;
        }
        let (status, body) = http
            .post("/refresh", json!({ "refresh_token": token }), &[])
            .await;
        match status {
            200 => {
                ok += 1;
                token = body["refresh_token"].clone();
            }
            429 => limited += 1,
            _ => {
                other += 1;
                eprintln!("{status} {body}");
            }
        }
    }
    let (rss1, disk1) = (vm_rss_kib(pid), dir_bytes(dir.path()));
    eprintln!(
        "30 s of refreshes: {ok} rotated, {limited} refused 429, {other} other; \
         VmRSS {rss0} -> {rss1} KiB, data dir {disk0} -> {disk1} bytes"
    );
    assert_eq!(other, 0, "every answer is a rotation or a 429");
    assert!(limited > 0, "the loop never met the family's rate limit");
    assert!(ok >= 1, "the chain went on");
    assert!(
        rss1.saturating_sub(rss0) < 8 * 1024,
        "VmRSS grew {rss0} -> {rss1} KiB"
    );
    assert!(
        disk1.saturating_sub(disk0) < 8 << 20,
        "data dir grew {disk0} -> {disk1}"
    );
    server.kill();
}

#[tokio::test]
async fn used_refresh_tokens_leave_memory_and_the_file_once_expired() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revocations.jsonl");
    let app = app(AuthConfig {
        revocation_store_path: file.display().to_string(),
        refresh_per_family_per_minute: 0,
        ..Default::default()
    });
    let s = app.sign_in(&Wallet::generate("ML-DSA-65")).await;
    let mut token = s["refresh_token"].clone();
    // Past the compaction's minimum of 1,000 dead lines.
    let rotations = 1_100;
    for _ in 0..rotations {
        let r = app
            .post("/refresh", json!({ "refresh_token": token }))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        token = r.body["refresh_token"].clone();
    }
    let store = app.auth.revocations();
    assert_eq!(store.list().await.unwrap().len(), rotations);
    let grown = std::fs::metadata(&file).unwrap().len();
    let per_line = grown / rotations as u64;
    eprintln!("{rotations} rotations: {grown} bytes of denylist, {per_line} per used token");
    // No subject in the bookkeeping: far less than the 3,904-character id.
    assert!(per_line < 200, "{per_line} bytes per used refresh token");

    // Past the refresh tokens' expiry: the sweep's purge empties memory
    // and compacts the file.
    use wallet_auth::clock::Clock;
    app.clock.advance(Duration::from_secs(8 * 86_400));
    let now = app.clock.now_secs();
    let purged = store.purge_expired(now).await.unwrap();
    assert_eq!(purged, rotations);
    assert!(store.list().await.unwrap().is_empty());
    let after = std::fs::metadata(&file).unwrap().len();
    eprintln!("after purge and compaction: {after} bytes");
    assert!(after < 200, "the file kept {after} bytes");
}
