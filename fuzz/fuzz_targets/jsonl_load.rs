//! The JSONL loader (`load`, `load_last`) on arbitrary file contents, as the
//! revocation and mint-audit records and as bare JSON values. Must never
//! panic, and `load_last(n)` must be the last `n` records of `load`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_auth::jsonl::{load, load_last};
use wallet_auth::{MintRecord, RevocationEntry};

fuzz_target!(|data: &[u8]| {
    let Some((&n, contents)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.jsonl");
    std::fs::write(&path, contents).expect("write");
    let n = usize::from(n % 8);

    let all: Vec<serde_json::Value> = load(&path).expect("load");
    let last: Vec<serde_json::Value> = load_last(&path, n).expect("load_last");
    let want = &all[all.len().saturating_sub(n)..];
    assert_eq!(last.as_slice(), want, "load_last disagrees with load");

    let _ = load::<RevocationEntry>(&path).expect("load revocations");
    let _ = load_last::<RevocationEntry>(&path, n).expect("load_last revocations");
    let _ = load::<MintRecord>(&path).expect("load mints");
    let _ = load_last::<MintRecord>(&path, n).expect("load_last mints");
});
