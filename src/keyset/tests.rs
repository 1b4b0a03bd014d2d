use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};

const PRE: u64 = 600;

fn opts(dir: &Path) -> KeySetOptions {
    KeySetOptions {
        dir: dir.to_path_buf(),
        // ML-DSA keys generate fast; RSA is covered by the integration tests.
        algorithm: SigningAlgorithm::MlDsa65,
        prepublish_secs: PRE,
        rotation_secs: 0,
        max_token_lifetime_secs: 86_400,
        reserve_slack_secs: 3600,
    }
}

fn open(dir: &Path, clock: &ManualClock) -> KeySet {
    KeySet::open(opts(dir), Arc::new(clock.clone()), Initial::default()).unwrap()
}

fn state_of(set: &KeySet, kid: &str) -> Option<KeyState> {
    set.key_states()
        .into_iter()
        .find(|k| k.kid == kid)
        .map(|k| k.state)
}

fn current(set: &KeySet) -> String {
    let states = set.key_states();
    let cur: Vec<_> = states
        .iter()
        .filter(|k| k.state == KeyState::Current)
        .collect();
    assert_eq!(cur.len(), 1, "exactly one current key: {states:?}");
    cur[0].kid.clone()
}

fn entry(kid: &str, signs_from: u64, reserved_exp: u64) -> Entry {
    Entry {
        kid: kid.into(),
        algorithm: SigningAlgorithm::Rs256,
        created: signs_from,
        signs_from,
        reserved_exp,
    }
}

#[test]
fn states_follow_the_clock() {
    let entries = [entry("a", 100, 0), entry("b", 1000, 0), entry("c", 2000, 0)];
    let at = |now| states_at(&entries, now);
    assert_eq!(at(500)[0].0, KeyState::Current);
    assert_eq!(at(500)[1].0, KeyState::Next);
    assert_eq!(
        at(1000)[0],
        (KeyState::Retired, Some(1000 + RETIRE_GRACE_SECS))
    );
    assert_eq!(at(1000)[1].0, KeyState::Current);
    // Before any key is due (a clock behind), the earliest signs.
    assert_eq!(at(50)[0].0, KeyState::Current);
    // A recorded exp keeps a retired key longer.
    let entries = [entry("a", 100, 5000), entry("b", 1000, 0)];
    assert_eq!(
        states_at(&entries, 1200)[0],
        (KeyState::Retired, Some(5000 + RETIRE_GRACE_SECS))
    );
}

#[test]
fn a_new_set_signs_at_once_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let set = open(dir.path(), &clock);
    let states = set.key_states();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].state, KeyState::Current);
    assert_eq!(states[0].signs_from, states[0].created);
    #[cfg(unix)]
    for item in std::fs::read_dir(dir.path()).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let item = item.unwrap();
        let mode = item.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", item.file_name());
    }
    // Reopening reads the same set.
    let again = open(dir.path(), &clock);
    assert_eq!(again.key_states(), states);
    assert_eq!(
        *again.refresh_secret().unwrap(),
        *set.refresh_secret().unwrap()
    );
}

#[test]
fn rotation_prepublishes_then_retires_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let set = open(dir.path(), &clock);
    let old = current(&set);
    let new = set.rotate(SigningAlgorithm::MlDsa65).unwrap();
    assert_eq!(new.state, KeyState::Next);
    assert_eq!(new.signs_from, new.created + PRE);
    // One next key at a time.
    assert!(matches!(
        set.rotate(SigningAlgorithm::Rs256),
        Err(KeySetError::NextPending { .. })
    ));
    // The old key signed a token living until +2000 s.
    let exp = clock.now_secs() + 2000;
    let on_record = set.reserve_exp(&old, exp).unwrap();
    assert!(on_record >= exp);
    clock.advance(Duration::from_secs(PRE));
    assert_eq!(current(&set), new.kid);
    assert_eq!(state_of(&set, &old), Some(KeyState::Retired));
    set.reload().unwrap();
    assert_eq!(
        state_of(&set, &old),
        Some(KeyState::Retired),
        "token still lives"
    );
    clock.advance(Duration::from_secs(
        on_record - clock.now_secs() + RETIRE_GRACE_SECS + 1,
    ));
    set.reload().unwrap();
    assert_eq!(state_of(&set, &old), None, "dropped after its last token");
    assert!(!dir.path().join(format!("key-{old}.pem")).exists());
    assert_eq!(set.scheduled().len(), 1);
}

#[test]
fn automatic_rotation_makes_one_next_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let mut o = opts(dir.path());
    o.rotation_secs = 86_400;
    let a = KeySet::open(o.clone(), Arc::new(clock.clone()), Initial::default()).unwrap();
    let b = KeySet::open(o, Arc::new(clock.clone()), Initial::default()).unwrap();
    a.reload().unwrap();
    assert_eq!(a.key_states().len(), 1, "not due yet");
    clock.advance(Duration::from_secs(86_400));
    a.reload().unwrap();
    b.reload().unwrap();
    a.reload().unwrap();
    let states = b.key_states();
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(
        states.iter().filter(|k| k.state == KeyState::Next).count(),
        1
    );
    assert_eq!(a.key_states(), states);
}

#[test]
fn crash_leftovers_leave_a_usable_set() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let set = open(dir.path(), &clock);
    let kid = current(&set);
    drop(set);
    // A rotation that crashed: a temporary file and a key file the metadata
    // does not name.
    std::fs::write(dir.path().join("keyset.json.tmp.999"), b"{\"vers").unwrap();
    let orphan = SigningKey::generate_ml_dsa_65().unwrap();
    let orphan_path = dir.path().join(format!("key-{}.pem", orphan.kid()));
    orphan.store(&orphan_path).unwrap();
    let set = open(dir.path(), &clock);
    assert_eq!(current(&set), kid);
    assert_eq!(set.key_states().len(), 1);
    assert!(!orphan_path.exists());
    assert!(!dir.path().join("keyset.json.tmp.999").exists());
    drop(set);

    // A torn metadata file: rebuilt from the key files, the newest signs,
    // every key kept for the safe bound.
    let set = open(dir.path(), &clock);
    set.rotate(SigningAlgorithm::MlDsa65).unwrap();
    drop(set);
    std::fs::write(dir.path().join("keyset.json"), b"{\"version\":1,\"ke").unwrap();
    let set = open(dir.path(), &clock);
    let states = set.key_states();
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(
        states
            .iter()
            .filter(|k| k.state == KeyState::Current)
            .count(),
        1
    );
    assert_eq!(set.scheduled().len(), 2);
    // Reloading keeps it usable.
    set.reload().unwrap();
    assert_eq!(set.key_states().len(), 2);
}

#[test]
fn reserve_on_a_removed_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000_000);
    let set = open(dir.path(), &clock);
    assert!(set.reserve_exp("nope", 5).is_err());
}
