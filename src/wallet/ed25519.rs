//! Ed25519 (RFC 8032) with strict verification.

use ed25519_dalek::{Signature, VerifyingKey};

use super::VerifyError;

const PUBLIC_KEY_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;

pub(super) fn check_encoding(public_key: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    if public_key.len() != PUBLIC_KEY_LEN {
        return Err(VerifyError::MalformedPublicKey);
    }
    if signature.len() != SIGNATURE_LEN {
        return Err(VerifyError::MalformedSignature);
    }
    Ok(())
}

/// Verifies an Ed25519 signature with `verify_strict`: non-canonical S,
/// small-order keys and small-order R are refused.
///
/// # Errors
/// A [`VerifyError`] naming the failed check.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    check_encoding(public_key, signature)?;
    let pk: &[u8; PUBLIC_KEY_LEN] = public_key
        .try_into()
        .map_err(|_| VerifyError::MalformedPublicKey)?;
    let sig: &[u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| VerifyError::MalformedSignature)?;
    let key = VerifyingKey::from_bytes(pk).map_err(|_| VerifyError::MalformedPublicKey)?;
    if key.is_weak() {
        return Err(VerifyError::WeakPublicKey);
    }
    // Reject keys whose encoding is not canonical (y >= p): re-encoding must
    // give back the same bytes.
    if key.to_bytes() != *pk {
        return Err(VerifyError::WeakPublicKey);
    }
    let sig = Signature::from_bytes(sig);
    key.verify_strict(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}
