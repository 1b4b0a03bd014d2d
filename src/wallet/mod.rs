//! Wallet signature verification: one verifier per algorithm.
//!
//! Verifiers are plain synchronous functions of (public key, message,
//! signature). Lengths and encodings are checked by [`check_encoding`] before
//! any curve or lattice arithmetic, so a malformed request can be refused
//! before its challenge is consumed.
//!
//! `eip191` and `solana` are the wallets people hold (SPEC 9): an Ethereum
//! account's "public key" here is its 20-byte address (the key is
//! recovered from the signature), a Solana account's is the 32-byte
//! Ed25519 key its base58 address spells.

mod contract;
mod ed25519;
pub mod eip191;
mod mldsa;
mod secp256k1;
pub mod solana;

use std::fmt;
use std::str::FromStr;

pub use self::contract::ContractWalletVerifier;
pub use self::ed25519::verify as verify_ed25519;
pub use self::mldsa::verify as verify_ml_dsa_65;
pub use self::secp256k1::verify as verify_secp256k1;

/// A wallet signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ML-DSA-65 (FIPS 204), pure, empty context.
    MlDsa65,
    /// Ed25519 (RFC 8032), strict verification.
    Ed25519,
    /// ECDSA over secp256k1 with SHA-256, DER signatures, low-S only.
    Secp256k1,
    /// Ethereum accounts: EIP-191 `personal_sign` over an EIP-4361
    /// (Sign-In with Ethereum) message, by key recovery, low-S only.
    Eip191,
    /// Solana accounts: Ed25519 over a Sign-In With Solana message.
    Solana,
}

impl Algorithm {
    /// Every algorithm the crate can verify.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::MlDsa65,
        Algorithm::Ed25519,
        Algorithm::Secp256k1,
        Algorithm::Eip191,
        Algorithm::Solana,
    ];

    /// The wire name (`"ML-DSA-65"`, `"Ed25519"`, `"secp256k1"`, `"eip191"`,
    /// `"solana"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::MlDsa65 => "ML-DSA-65",
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::Secp256k1 => "secp256k1",
            Algorithm::Eip191 => "eip191",
            Algorithm::Solana => "solana",
        }
    }

    /// Whether this is one of pico's algorithms (a hex public key, the
    /// wallet id its lower-case hex), not a wallet account (`eip191`,
    /// `solana`) whose address is its id.
    pub fn is_pico(self) -> bool {
        matches!(
            self,
            Algorithm::MlDsa65 | Algorithm::Ed25519 | Algorithm::Secp256k1
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(VerifyError::UnknownAlgorithm)
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown wallet algorithm: {s}")))
    }
}

/// Why a wallet signature was refused. One variant per failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The algorithm name is not one the crate knows.
    #[error("unknown wallet algorithm")]
    UnknownAlgorithm,
    /// The public key has the wrong length or encoding for the algorithm.
    #[error("malformed public key")]
    MalformedPublicKey,
    /// The signature has the wrong length or encoding for the algorithm.
    #[error("malformed signature")]
    MalformedSignature,
    /// A secp256k1 signature with S > n/2.
    #[error("high-S signature")]
    HighS,
    /// An Ed25519 key of small order or in non-canonical encoding.
    #[error("weak public key")]
    WeakPublicKey,
    /// An EIP-191 signature whose `v` is not 27, 28, 0 or 1.
    #[error("bad recovery id")]
    BadRecoveryId,
    /// The signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
}

/// Checks lengths and encodings only (no arithmetic). Cheap enough to run
/// before a challenge is consumed.
///
/// # Errors
/// [`VerifyError::MalformedPublicKey`] or [`VerifyError::MalformedSignature`].
pub fn check_encoding(
    alg: Algorithm,
    public_key: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    match alg {
        Algorithm::MlDsa65 => mldsa::check_encoding(public_key, signature),
        Algorithm::Ed25519 => ed25519::check_encoding(public_key, signature),
        Algorithm::Secp256k1 => secp256k1::check_encoding(public_key, signature),
        Algorithm::Eip191 => eip191::check_encoding(public_key, signature),
        Algorithm::Solana => solana::check_encoding(public_key, signature),
    }
}

/// Verifies `signature` by `public_key` over `message` with `alg`. For
/// `eip191`, `public_key` is the 20-byte address; for `solana`, the 32-byte
/// key of the address.
///
/// # Errors
/// A [`VerifyError`] naming the first check that failed.
pub fn verify(
    alg: Algorithm,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    match alg {
        Algorithm::MlDsa65 => mldsa::verify(public_key, message, signature),
        Algorithm::Ed25519 => ed25519::verify(public_key, message, signature),
        Algorithm::Secp256k1 => secp256k1::verify(public_key, message, signature),
        Algorithm::Eip191 => eip191::verify(public_key, message, signature),
        Algorithm::Solana => solana::verify(public_key, message, signature),
    }
}
