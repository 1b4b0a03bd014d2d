//! argon2 PHC helpers: hashing a password, recognising a usable hash, making
//! a first-start password, and the dummy hash a wrong email is verified
//! against.

use argon2::password_hash::{CustomizedPasswordHasher, PasswordHasher};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use base64::Engine as _;

use super::FIELD;
use crate::ConfigError;

/// Hashes a password as an argon2id PHC string (`$argon2id$v=19$...`) with the
/// argon2 crate's default parameters and a random salt. Used at start-up and by
/// the standalone server to turn a plain `admin_password` into a hash.
///
/// This is slow on purpose (tens of milliseconds): call it at start-up or from a
/// blocking context, not on an async worker thread.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `admin_password` when `plain` is empty or
/// the hashing fails (for example, no OS randomness for the salt).
pub fn hash_password(plain: &str) -> Result<String, ConfigError> {
    if plain.is_empty() {
        return Err(ConfigError::invalid(FIELD, "must not be empty"));
    }
    Argon2::default()
        .hash_password(plain.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ConfigError::invalid(FIELD, format!("argon2 hashing failed: {e}")))
}

/// Whether `s` is a PHC argon2 string (`$argon2id$...`, `$argon2i$...` or
/// `$argon2d$...`) that parses, with a salt, an output and parameters argon2
/// accepts, i.e. one that [`super::AdminLogin`] can verify against.
pub fn is_phc_hash(s: &str) -> bool {
    parse_argon2_phc(s).is_ok()
}

/// Generates a random admin password for a first start: 256 bits from the OS
/// RNG as unpadded URL-safe base64 (43 characters).
///
/// # Panics
/// If the operating system's random number generator fails, which leaves no
/// safe way to make a password.
#[allow(clippy::expect_used)]
pub fn generate_password() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).expect("OS random number generator unavailable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
}

/// Parses `s` as an argon2 PHC string that can be verified against.
pub(super) fn parse_argon2_phc(s: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(s).map_err(|e| format!("not a PHC string: {e}"))?;
    Algorithm::new(hash.algorithm.as_str())
        .map_err(|_| "not an argon2 hash (want $argon2id$, $argon2i$ or $argon2d$)".to_string())?;
    if let Some(v) = hash.version {
        Version::try_from(v).map_err(|e| format!("unsupported argon2 version: {e}"))?;
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("PHC string has no salt or no hash output".to_string());
    }
    Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    Ok(hash)
}

/// A hash of a random, discarded password with the same algorithm, version and
/// parameters as `like`, so verifying against it costs the same.
pub(super) fn dummy_like(like: &PasswordHash) -> Result<PasswordHash, ConfigError> {
    let params = Params::try_from(like)
        .map_err(|e| ConfigError::invalid(FIELD, format!("invalid argon2 parameters: {e}")))?;
    let password = generate_password();
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| ConfigError::invalid(FIELD, format!("no randomness for a salt: {e}")))?;
    Argon2::default()
        .hash_password_customized(
            password.as_bytes(),
            &salt,
            Some(like.algorithm.as_str()),
            like.version,
            params,
        )
        .map_err(|e| ConfigError::invalid(FIELD, format!("argon2 hashing failed: {e}")))
}

/// A PHC argon2id hash with minimal cost, so tests stay fast.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) fn cheap_hash(plain: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(plain.as_bytes(), b"testsalt12345678")
        .unwrap()
        .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn field_of(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn password_is_phc_hash_cases() {
        assert!(is_phc_hash(&cheap_hash("x")));
        let i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"x", b"testsalt12345678")
        .unwrap()
        .to_string();
        assert!(i.starts_with("$argon2i$"));
        assert!(is_phc_hash(&i));
        assert!(!is_phc_hash(""));
        assert!(!is_phc_hash("admin"));
        assert!(!is_phc_hash("$argon2id$"));
        assert!(!is_phc_hash("$argon2id$v=19$m=19456,t=2,p=1"));
        assert!(!is_phc_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ"));
        assert!(!is_phc_hash(
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E"
        ));
        let mut broken = cheap_hash("x");
        broken.insert(broken.len() - 3, '!');
        assert!(!is_phc_hash(&broken));
    }

    #[test]
    fn password_generate_password_length_and_entropy() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .unwrap();
        assert!(decoded.len() * 8 >= 128);
    }

    #[test]
    fn password_hash_password_makes_argon2id_phc() {
        let h = hash_password("hunter42").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(is_phc_hash(&h));
        assert_eq!(field_of(hash_password("").unwrap_err()), "admin_password");
    }

    #[test]
    fn dummy_like_copies_the_parameters_not_the_hash() {
        let phc = cheap_hash("x");
        let like = parse_argon2_phc(&phc).unwrap();
        let dummy = dummy_like(&like).unwrap();
        assert_eq!(dummy.algorithm, like.algorithm);
        assert_eq!(dummy.version, like.version);
        assert_eq!(dummy.params, like.params);
        assert_ne!(dummy.hash, like.hash);
        assert_ne!(dummy.salt, like.salt);
    }
}
