//! The key set of SPEC 8: signing keys in a directory, each `next`,
//! `current` or `retired`, rotated by hand (`standalone keys rotate`) or
//! every `key_rotation_days`, shared by every instance that reads the
//! directory.
//!
//! # On disk
//!
//! ```text
//! keys/
//!   keyset.json          the metadata: per key its kid, algorithm, file,
//!                        created, signs_from and reserved_exp (0600)
//!   key-<kid>.pem        one PKCS#8 PEM private key per key (0600)
//!   refresh-secret       the HS256 refresh-token key (0600); stays across rotations
//!   .lock                held (flock) by whoever changes the set
//! ```
//!
//! Every file is written new file -> fsync -> rename -> fsync dir, and every
//! change is made under the lock, after re-reading the metadata, so several
//! processes never create two `next` keys nor lose each other's updates.
//!
//! # States come from the clock
//!
//! The metadata stores times, not states: a key signs from `signs_from`
//! (its creation plus `key_prepublish_seconds`; the first key of a set at
//! once). At any instant the *current* key is the latest whose `signs_from`
//! has come, keys whose `signs_from` is still ahead are *next*, and earlier
//! keys are *retired*. Instances that read the same metadata switch signer at
//! the same instant (up to their clocks' skew), with no write needed for
//! the switch; the reload interval only bounds how late an instance learns
//! of a new key.
//!
//! # Retirement
//!
//! Before a token is released, the `exp` it carries is recorded against its
//! key (`reserved_exp`, written under the lock and fsync'd; in stretches of
//! one access-token lifetime, so a steady stream of tokens writes about once
//! per lifetime). A retired key stays published until both its successor's
//! `signs_from` and its `reserved_exp` (plus [`RETIRE_GRACE_SECS`]) have
//! passed; then it is removed. Since the record is made before the token
//! exists, a crash cannot lose it. Only if the metadata itself is torn (it
//! never is by our writes; by a disk fault or a hand edit) is the set
//! rebuilt from the key files, each key then kept for the safe upper bound
//! `now + max(access lifetime, fleet_max_ttl_seconds)`.

mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::token::{ScheduledKey, SigningAlgorithm, SigningKey, TokenError};
use crate::ConfigError;

use self::store::{Dir, Entry, Meta};

/// Extra time a retired key stays published after the last token it signed
/// has expired (for consumers that allow clock leeway).
pub const RETIRE_GRACE_SECS: u64 = 60;

/// The default `key_reload_seconds`: how often a running server re-reads
/// its key directory.
pub const DEFAULT_RELOAD_SECS: u64 = 30;

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signing (exactly one).
    Current,
    /// Published, no longer signing, until its last token has expired.
    Retired,
}

impl KeyState {
    /// `next`, `current` or `retired`.
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retired => "retired",
        }
    }
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One key of the signing key set, as [`crate::WalletAuth::key_states`]
/// and `standalone keys list` show it. Times are epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key id (RFC 7638 thumbprint).
    pub kid: String,
    /// RS256 or ML-DSA-65.
    pub algorithm: SigningAlgorithm,
    /// Next, current or retired, at the time asked.
    pub state: KeyState,
    /// When the key was made (0 when unknown: a key given by the embedding
    /// app).
    pub created: u64,
    /// When it signs (or signed) from.
    pub signs_from: u64,
    /// For a retired key, the time after which it is removed from the JWKS
    /// (`None` for next and current keys, and for keys the set does not
    /// manage).
    pub retires_after: Option<u64>,
}

/// Why the key set could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A key file holds no usable key, or not the key its name says.
    #[error("{0}")]
    Key(String),
    /// `keys rotate` while a next key is still waiting to sign.
    #[error(
        "a next key is already published: {kid} (signs from {signs_from}); rotate again after that"
    )]
    NextPending {
        /// The waiting key.
        kid: String,
        /// When it starts signing.
        signs_from: u64,
    },
    /// The key set has no key (nothing to sign with).
    #[error("the key set in {0} has no key")]
    Empty(PathBuf),
}

impl From<KeySetError> for ConfigError {
    fn from(e: KeySetError) -> Self {
        ConfigError::SigningKey(format!("signing_keys_dir: {e}"))
    }
}

/// How a key set behaves; see [`KeySetOptions::from_config`].
#[derive(Debug, Clone)]
pub struct KeySetOptions {
    /// The key directory.
    pub dir: PathBuf,
    /// Algorithm of new keys (the first key, automatic rotation).
    pub algorithm: SigningAlgorithm,
    /// How long a new key is published before it signs.
    pub prepublish_secs: u64,
    /// Automatic rotation period; 0 = off.
    pub rotation_secs: u64,
    /// The longest lifetime of a token these keys sign (access or fleet):
    /// the safe upper bound when a key's record is lost.
    pub max_token_lifetime_secs: u64,
    /// How far past a token's `exp` a record reaches, so the next tokens
    /// need no write (one access-token lifetime).
    pub reserve_slack_secs: u64,
}

impl KeySetOptions {
    /// The options `config` gives for the key directory `dir`.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad `algorithm`.
    pub fn from_config(config: &crate::AuthConfig, dir: &Path) -> Result<Self, ConfigError> {
        let access = config.access_token_expire_minutes.saturating_mul(60);
        Ok(Self {
            dir: dir.to_path_buf(),
            algorithm: config.signing_algorithm()?,
            prepublish_secs: config.key_prepublish_seconds,
            rotation_secs: config.key_rotation_days.saturating_mul(86_400),
            max_token_lifetime_secs: access.max(config.fleet_max_ttl_seconds),
            reserve_slack_secs: access,
        })
    }
}

/// What to put in a key set that does not exist yet.
#[derive(Debug, Default)]
pub struct Initial {
    /// The first key (signs at once). `None`: a new key of the options'
    /// algorithm.
    pub current: Option<SigningKey>,
    /// Keys published beside it, retired at once, kept for the safe upper
    /// bound (e.g. an older data directory's key of the other algorithm).
    pub retired: Vec<SigningKey>,
}

/// The label the refresh-token key is derived with from a key set's first
/// key (the same derivation as a single `signing_key_path` key, so an
/// imported key keeps its refresh tokens valid).
pub(crate) const REFRESH_LABEL: &[u8] = b"wallet-auth refresh-token HS256 key v1";

/// A key set on disk and the keys loaded from it.
pub struct KeySet {
    opts: KeySetOptions,
    clock: SharedClock,
    dir: Dir,
    /// The last metadata read.
    meta: ArcSwap<Meta>,
    /// Keys loaded so far, by kid (a reload parses only new files).
    loaded: Mutex<HashMap<String, Arc<SigningKey>>>,
    /// Serializes this process's writers (the lock file serializes processes).
    writer: Mutex<()>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("dir", &self.opts.dir)
            .finish_non_exhaustive()
    }
}

/// The state of each entry of `entries` at `now`, with the time each
/// retired one may be removed after. Entries are ordered by `signs_from`
/// (then `created`, then kid): the current key is the latest whose
/// `signs_from` has come (or the earliest, if none has).
fn states_at(entries: &[Entry], now: u64) -> Vec<(KeyState, Option<u64>)> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].order_key().cmp(&entries[b].order_key()));
    let current_pos = order
        .iter()
        .rposition(|&i| entries[i].signs_from <= now)
        .unwrap_or(0);
    let mut out = vec![(KeyState::Current, None); entries.len()];
    for (pos, &i) in order.iter().enumerate() {
        out[i] = if pos == current_pos {
            (KeyState::Current, None)
        } else if pos > current_pos {
            (KeyState::Next, None)
        } else {
            let successor = entries[order[pos + 1]].signs_from;
            let until = successor.max(entries[i].reserved_exp);
            (
                KeyState::Retired,
                Some(until.saturating_add(RETIRE_GRACE_SECS)),
            )
        };
    }
    out
}

impl KeySet {
    /// Opens the key set in `opts.dir`, creating the directory (0700) and,
    /// if it holds no key set, a new one from `initial` (its first key signs
    /// at once). A crash's leftovers (temporary files, a key file the
    /// metadata does not name) are cleaned up; a torn metadata file is
    /// rebuilt from the key files (see the module docs).
    ///
    /// # Errors
    /// [`KeySetError`] when the directory cannot be used or a key file
    /// named by the metadata does not load.
    pub fn open(
        opts: KeySetOptions,
        clock: SharedClock,
        initial: Initial,
    ) -> Result<Self, KeySetError> {
        let dir = Dir::create(&opts.dir)?;
        let set = Self {
            dir,
            clock,
            meta: ArcSwap::from_pointee(Meta::default()),
            loaded: Mutex::new(HashMap::new()),
            writer: Mutex::new(()),
            opts,
        };
        {
            let _guard = set.write_lock()?;
            let mut meta = set.read_or_repair_locked()?;
            if meta.keys.is_empty() {
                meta = set.create_locked(initial)?;
            }
            set.dir.clean_leftovers(&meta)?;
            set.meta.store(Arc::new(meta));
        }
        set.load_keys()?;
        Ok(set)
    }

    /// Whether `dir` already holds a key set (its metadata file).
    pub fn exists(dir: &Path) -> bool {
        store::meta_path(dir).exists()
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// The HS256 refresh-token key of this set.
    ///
    /// # Errors
    /// [`KeySetError`] when the file cannot be read.
    pub fn refresh_secret(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeySetError> {
        self.dir.read_refresh_secret()
    }

    fn write_lock(&self) -> Result<WriteGuard<'_>, KeySetError> {
        let inner = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let file = self.dir.lock()?;
        Ok(WriteGuard {
            _inner: inner,
            _file: file,
        })
    }

    /// Reads the metadata; under the lock, so a torn file may be rebuilt.
    fn read_or_repair_locked(&self) -> Result<Meta, KeySetError> {
        let torn = match self.dir.read_meta() {
            Ok(Some(meta)) => return Ok(meta),
            // No metadata and no key file: a new set.
            Ok(None) if !self.dir.has_key_files()? => return Ok(Meta::default()),
            // Key files without metadata: a first creation that crashed, or
            // a metadata file removed by hand. Rebuilt, never discarded.
            Ok(None) => "the metadata file is missing".to_string(),
            Err(store::ReadError::Torn(reason)) => reason,
            Err(store::ReadError::Io(e)) => return Err(e),
        };
        let now = self.clock.now_secs();
        let bound = now.saturating_add(self.opts.max_token_lifetime_secs);
        tracing::error!(
            dir = %self.opts.dir.display(),
            reason = %torn,
            "key set metadata is unreadable: rebuilding it from the key files, \
             every key kept published until the safe upper bound"
        );
        let meta = self.dir.rebuild_from_key_files(bound)?;
        self.dir.set_aside_torn_meta(now)?;
        if !meta.keys.is_empty() {
            self.dir.write_meta(&meta)?;
        }
        Ok(meta)
    }

    fn create_locked(&self, initial: Initial) -> Result<Meta, KeySetError> {
        let now = self.clock.now_secs();
        let current = match initial.current {
            Some(k) => k,
            None => SigningKey::generate_for(self.opts.algorithm)
                .map_err(|e| KeySetError::Key(e.to_string()))?,
        };
        // The refresh key first: a set whose metadata exists always has one.
        self.dir
            .write_refresh_secret(&current.derive_secret(REFRESH_LABEL))?;
        let mut meta = Meta::default();
        let bound = now.saturating_add(self.opts.max_token_lifetime_secs);
        for key in &initial.retired {
            self.dir.write_key(key)?;
            meta.keys.push(Entry::new(key, 0, 0, bound));
        }
        self.dir.write_key(&current)?;
        meta.keys.push(Entry::new(&current, now, now, 0));
        self.dir.write_meta(&meta)?;
        tracing::info!(
            dir = %self.opts.dir.display(),
            kid = current.kid(),
            algorithm = %current.algorithm(),
            "created a new key set; its first key signs at once"
        );
        Ok(meta)
    }

    /// Loads the key files the metadata names and not yet loaded.
    fn load_keys(&self) -> Result<(), KeySetError> {
        let meta = self.meta.load_full();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        for entry in &meta.keys {
            if loaded.contains_key(&entry.kid) {
                continue;
            }
            let key = self.dir.read_key(&entry.kid)?;
            loaded.insert(entry.kid.clone(), Arc::new(key));
        }
        loaded.retain(|kid, _| meta.keys.iter().any(|e| &e.kid == kid));
        Ok(())
    }

    /// The keys for [`crate::token::TokenService::install`]: each with its
    /// `signs_from` and record.
    pub fn scheduled(&self) -> Vec<ScheduledKey> {
        let meta = self.meta.load_full();
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        meta.keys
            .iter()
            .filter_map(|e| {
                loaded.get(&e.kid).map(|key| ScheduledKey {
                    signs_from: e.signs_from,
                    key: Arc::clone(key),
                    reserved_exp: e.reserved_exp,
                })
            })
            .collect()
    }

    /// Every key and its state now, ordered by `signs_from`.
    pub fn key_states(&self) -> Vec<KeyInfo> {
        let meta = self.meta.load_full();
        Self::infos(&meta, self.clock.now_secs())
    }

    fn infos(meta: &Meta, now: u64) -> Vec<KeyInfo> {
        let states = states_at(&meta.keys, now);
        let mut out: Vec<(_, KeyInfo)> = meta
            .keys
            .iter()
            .zip(states)
            .map(|(e, (state, retires_after))| {
                (
                    e.order_key(),
                    KeyInfo {
                        kid: e.kid.clone(),
                        algorithm: e.algorithm,
                        state,
                        created: e.created,
                        signs_from: e.signs_from,
                        retires_after,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, i)| i).collect()
    }

    /// Re-reads the directory (a rotation by another process), removes the
    /// retired keys whose last token has expired, and rotates when
    /// `key_rotation_days` says so. Returns whether the set changed.
    /// Blocking file IO: call it off the async threads.
    ///
    /// # Errors
    /// [`KeySetError`] when the directory cannot be read or changed; the
    /// keys in force stay as they were.
    pub fn reload(&self) -> Result<bool, KeySetError> {
        let before = self.meta.load_full();
        let meta = match self.dir.read_meta() {
            Ok(Some(meta)) => meta,
            // Gone or torn: repair under the lock.
            _ => {
                let _guard = self.write_lock()?;
                let meta = self.read_or_repair_locked()?;
                if meta.keys.is_empty() {
                    return Err(KeySetError::Empty(self.opts.dir.clone()));
                }
                meta
            }
        };
        self.meta.store(Arc::new(meta));
        self.load_keys()?;
        self.prune()?;
        if self.rotation_due() {
            match self.rotate(self.opts.algorithm) {
                Ok(info) => tracing::info!(
                    kid = %info.kid,
                    signs_from = info.signs_from,
                    "automatic key rotation: published a next key"
                ),
                Err(KeySetError::NextPending { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(*self.meta.load_full() != *before)
    }

    fn rotation_due(&self) -> bool {
        if self.opts.rotation_secs == 0 {
            return false;
        }
        let meta = self.meta.load_full();
        let now = self.clock.now_secs();
        let states = states_at(&meta.keys, now);
        if states.iter().any(|(s, _)| *s == KeyState::Next) {
            return false;
        }
        meta.keys
            .iter()
            .zip(&states)
            .find(|(_, (s, _))| *s == KeyState::Current)
            .is_some_and(|(e, _)| e.created.saturating_add(self.opts.rotation_secs) <= now)
    }

    /// Removes retired keys past their `retires_after`.
    fn prune(&self) -> Result<(), KeySetError> {
        let now = self.clock.now_secs();
        let due = |meta: &Meta| {
            states_at(&meta.keys, now)
                .iter()
                .any(|(s, until)| *s == KeyState::Retired && until.is_some_and(|u| now > u))
        };
        if !due(&self.meta.load_full()) {
            return Ok(());
        }
        let _guard = self.write_lock()?;
        let mut meta = self.read_or_repair_locked()?;
        let states = states_at(&meta.keys, now);
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for (entry, (state, until)) in meta.keys.drain(..).zip(states) {
            if state == KeyState::Retired && until.is_some_and(|u| now > u) {
                gone.push(entry);
            } else {
                kept.push(entry);
            }
        }
        meta.keys = kept;
        if gone.is_empty() {
            self.meta.store(Arc::new(meta));
            return Ok(());
        }
        // Metadata first: a key file left by a crash here is an orphan,
        // removed by the next writer.
        self.dir.write_meta(&meta)?;
        for entry in &gone {
            tracing::info!(kid = %entry.kid, "retired key removed: its last token has expired");
            self.dir.remove_key(&entry.kid)?;
        }
        self.meta.store(Arc::new(meta));
        self.load_keys()
    }

    /// Adds a `next` key of `algorithm`: published now, signing
    /// `key_prepublish_seconds` from now. Refused while another next key
    /// waits ([`KeySetError::NextPending`]), so several instances never
    /// make two. The first key of an empty set signs at once.
    ///
    /// # Errors
    /// [`KeySetError`] when the key cannot be made or written.
    pub fn rotate(&self, algorithm: SigningAlgorithm) -> Result<KeyInfo, KeySetError> {
        // RSA generation takes a while: outside the lock.
        let key =
            SigningKey::generate_for(algorithm).map_err(|e| KeySetError::Key(e.to_string()))?;
        let _guard = self.write_lock()?;
        let mut meta = self.read_or_repair_locked()?;
        let now = self.clock.now_secs();
        let states = states_at(&meta.keys, now);
        if let Some((e, _)) = meta
            .keys
            .iter()
            .zip(&states)
            .find(|(_, (s, _))| *s == KeyState::Next)
        {
            self.meta.store(Arc::new(meta.clone()));
            return Err(KeySetError::NextPending {
                kid: e.kid.clone(),
                signs_from: e.signs_from,
            });
        }
        // The first key of a new set signs at once; every later one waits.
        let signs_from = if meta.keys.is_empty() {
            now
        } else {
            now.saturating_add(self.opts.prepublish_secs)
        };
        self.dir.write_key(&key)?;
        meta.keys.push(Entry::new(&key, now, signs_from, 0));
        self.dir.write_meta(&meta)?;
        self.meta.store(Arc::new(meta));
        self.load_keys()?;
        Ok(KeyInfo {
            kid: key.kid().to_string(),
            algorithm: key.algorithm(),
            state: if signs_from <= now {
                KeyState::Current
            } else {
                KeyState::Next
            },
            created: now,
            signs_from,
            retires_after: None,
        })
    }

    /// Records `exp` against `kid`, reaching `reserve_slack_secs` further;
    /// returns the `exp` now on record.
    fn reserve_exp(&self, kid: &str, exp: u64) -> Result<u64, KeySetError> {
        let _guard = self.write_lock()?;
        let mut meta = self.read_or_repair_locked()?;
        let Some(entry) = meta.keys.iter_mut().find(|e| e.kid == kid) else {
            return Err(KeySetError::Key(format!(
                "key {kid} is no longer in the key set"
            )));
        };
        if entry.reserved_exp >= exp {
            let on_record = entry.reserved_exp;
            self.meta.store(Arc::new(meta));
            return Ok(on_record);
        }
        entry.reserved_exp = exp.saturating_add(self.opts.reserve_slack_secs);
        let on_record = entry.reserved_exp;
        self.dir.write_meta(&meta)?;
        self.meta.store(Arc::new(meta));
        Ok(on_record)
    }
}

impl crate::token::ExpReserver for KeySet {
    fn reserve(&self, kid: &str, exp: u64) -> Result<u64, TokenError> {
        self.reserve_exp(kid, exp).map_err(|e| {
            tracing::error!(error = %e, kid, "cannot record a token's expiry in the key set");
            TokenError::Signing
        })
    }
}

struct WriteGuard<'a> {
    _inner: std::sync::MutexGuard<'a, ()>,
    _file: std::fs::File,
}

#[cfg(test)]
mod tests;
