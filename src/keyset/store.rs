//! The key directory's files: metadata, key files, the refresh key, the
//! lock. Every write is new file -> fsync -> rename -> fsync dir, 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::KeySetError;
use crate::token::{SigningAlgorithm, SigningKey};

const META_FILE: &str = "keyset.json";
const REFRESH_FILE: &str = "refresh-secret";
const LOCK_FILE: &str = ".lock";
const KEY_PREFIX: &str = "key-";
const KEY_SUFFIX: &str = ".pem";
/// Marks a temporary file of an unfinished write.
const TMP_MARK: &str = ".tmp.";
const META_VERSION: u32 = 1;

pub(super) fn meta_path(dir: &Path) -> PathBuf {
    dir.join(META_FILE)
}

/// One key's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) kid: String,
    #[serde(with = "alg_name")]
    pub(super) algorithm: SigningAlgorithm,
    pub(super) created: u64,
    pub(super) signs_from: u64,
    /// The latest `exp` of a token this key may have signed.
    #[serde(default)]
    pub(super) reserved_exp: u64,
}

impl Entry {
    pub(super) fn new(key: &SigningKey, created: u64, signs_from: u64, reserved_exp: u64) -> Self {
        Self {
            kid: key.kid().to_string(),
            algorithm: key.algorithm(),
            created,
            signs_from,
            reserved_exp,
        }
    }

    pub(super) fn order_key(&self) -> (u64, u64, &str) {
        (self.signs_from, self.created, self.kid.as_str())
    }
}

mod alg_name {
    use crate::token::SigningAlgorithm;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(a: &SigningAlgorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<SigningAlgorithm, D::Error> {
        let name = String::deserialize(d)?;
        SigningAlgorithm::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown algorithm {name:?}")))
    }
}

/// The metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Meta {
    pub(super) version: u32,
    pub(super) keys: Vec<Entry>,
}

impl Default for Meta {
    fn default() -> Self {
        Self {
            version: META_VERSION,
            keys: Vec::new(),
        }
    }
}

pub(super) enum ReadError {
    /// The file exists but is not a key set's metadata.
    Torn(String),
    Io(KeySetError),
}

/// The key directory.
pub(super) struct Dir {
    path: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeySetError + '_ {
    move |source| KeySetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_kid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Dir {
    pub(super) fn create(path: &Path) -> Result<Self, KeySetError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(path).map_err(io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Takes the lock file (blocking until no other process holds it);
    /// released when the returned file is dropped.
    pub(super) fn lock(&self) -> Result<std::fs::File, KeySetError> {
        let path = self.path.join(LOCK_FILE);
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&path).map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    fn key_path(&self, kid: &str) -> Result<PathBuf, KeySetError> {
        if !is_kid(kid) {
            return Err(KeySetError::Key(format!("{kid:?} is not a key id")));
        }
        Ok(self.path.join(format!("{KEY_PREFIX}{kid}{KEY_SUFFIX}")))
    }

    /// Writes `contents` durably to `name` (0600), replacing it.
    fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), KeySetError> {
        let path = self.path.join(name);
        let tmp = self
            .path
            .join(format!("{name}{TMP_MARK}{}", std::process::id()));
        let written = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.path)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io(&path))
    }

    pub(super) fn read_meta(&self) -> Result<Option<Meta>, ReadError> {
        let path = meta_path(&self.path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ReadError::Io(io(&path)(e))),
        };
        let meta: Meta =
            serde_json::from_slice(&bytes).map_err(|e| ReadError::Torn(e.to_string()))?;
        if meta.version != META_VERSION {
            return Err(ReadError::Torn(format!(
                "metadata version {} (this build reads {META_VERSION})",
                meta.version
            )));
        }
        if meta.keys.iter().any(|e| !is_kid(&e.kid)) {
            return Err(ReadError::Torn("a key id is not base64url".into()));
        }
        Ok(Some(meta))
    }

    pub(super) fn write_meta(&self, meta: &Meta) -> Result<(), KeySetError> {
        let mut body = serde_json::to_vec_pretty(meta)
            .map_err(|e| KeySetError::Key(format!("cannot serialize the key set: {e}")))?;
        body.push(b'\n');
        self.write_file(META_FILE, &body)
    }

    pub(super) fn write_key(&self, key: &SigningKey) -> Result<(), KeySetError> {
        let path = self.key_path(key.kid())?;
        let pem = key
            .to_pkcs8_pem()
            .map_err(|e| KeySetError::Key(e.to_string()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| KeySetError::Key("bad key file name".into()))?
            .to_string();
        self.write_file(&name, pem.as_bytes())
    }

    pub(super) fn read_key(&self, kid: &str) -> Result<SigningKey, KeySetError> {
        let path = self.key_path(kid)?;
        let key = SigningKey::load(&path).map_err(|e| KeySetError::Key(e.to_string()))?;
        if key.kid() != kid {
            return Err(KeySetError::Key(format!(
                "{} holds key {}, not {kid}",
                path.display(),
                key.kid()
            )));
        }
        Ok(key)
    }

    pub(super) fn remove_key(&self, kid: &str) -> Result<(), KeySetError> {
        let path = self.key_path(kid)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        std::fs::File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))
    }

    pub(super) fn write_refresh_secret(&self, secret: &[u8]) -> Result<(), KeySetError> {
        if self.path.join(REFRESH_FILE).exists() {
            // Kept from an earlier, unfinished creation: a set's refresh key
            // never changes once written.
            return Ok(());
        }
        self.write_file(REFRESH_FILE, crate::hexcodec::encode(secret).as_bytes())
    }

    pub(super) fn read_refresh_secret(&self) -> Result<Zeroizing<Vec<u8>>, KeySetError> {
        let path = self.path.join(REFRESH_FILE);
        let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(io(&path))?);
        let bytes = crate::hexcodec::decode(text.trim())
            .filter(|b| b.len() >= 32)
            .ok_or_else(|| {
                KeySetError::Key(format!("{}: not a hex refresh key", path.display()))
            })?;
        Ok(Zeroizing::new(bytes))
    }

    /// Whether any key file is in the directory.
    pub(super) fn has_key_files(&self) -> Result<bool, KeySetError> {
        Ok(!self.key_files()?.is_empty())
    }

    /// The kids of the key files in the directory.
    fn key_files(&self) -> Result<Vec<String>, KeySetError> {
        let mut kids = Vec::new();
        for item in std::fs::read_dir(&self.path).map_err(io(&self.path))? {
            let item = item.map_err(io(&self.path))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(kid) = name
                .strip_prefix(KEY_PREFIX)
                .and_then(|n| n.strip_suffix(KEY_SUFFIX))
            {
                if is_kid(kid) {
                    kids.push(kid.to_string());
                }
            }
        }
        kids.sort();
        Ok(kids)
    }

    /// Under the lock: removes temporary files of unfinished writes and key
    /// files the metadata does not name (a rotation that crashed before its
    /// metadata was written: never published, so never used).
    pub(super) fn clean_leftovers(&self, meta: &Meta) -> Result<(), KeySetError> {
        for item in std::fs::read_dir(&self.path).map_err(io(&self.path))? {
            let item = item.map_err(io(&self.path))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.contains(TMP_MARK) {
                tracing::warn!(file = name, "removing the leftover of an unfinished write");
                let _ = std::fs::remove_file(item.path());
            }
        }
        for kid in self.key_files()? {
            if !meta.keys.iter().any(|e| e.kid == kid) {
                tracing::warn!(
                    kid,
                    "removing a key file the key set does not name (an unfinished rotation)"
                );
                self.remove_key(&kid)?;
            }
        }
        Ok(())
    }

    /// A metadata made from the key files alone (the metadata was torn):
    /// every key usable as of its file's modification time, each kept
    /// published until `bound`; the newest key signs.
    pub(super) fn rebuild_from_key_files(&self, bound: u64) -> Result<Meta, KeySetError> {
        let mut meta = Meta::default();
        for kid in self.key_files()? {
            let key = match self.read_key(&kid) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(kid, error = %e, "unusable key file left out of the rebuilt key set");
                    continue;
                }
            };
            let path = self.key_path(&kid)?;
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            meta.keys.push(Entry::new(&key, mtime, mtime, bound));
        }
        Ok(meta)
    }

    /// Moves a torn metadata file aside (kept for a post-mortem).
    pub(super) fn set_aside_torn_meta(&self, now: u64) -> Result<(), KeySetError> {
        let from = meta_path(&self.path);
        let to = self.path.join(format!("{META_FILE}.torn-{now}"));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&from)(e)),
        }
    }
}
