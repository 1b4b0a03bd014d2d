//! ECDSA over secp256k1 with SHA-256, DER signatures, low-S only.

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;

use super::VerifyError;

/// Largest DER ECDSA signature over a 256-bit curve.
const MAX_DER_LEN: usize = 72;

pub(super) fn check_encoding(public_key: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    match (public_key.len(), public_key.first()) {
        (33, Some(0x02 | 0x03)) | (65, Some(0x04)) => {}
        _ => return Err(VerifyError::MalformedPublicKey),
    }
    if signature.len() < 8 || signature.len() > MAX_DER_LEN || signature[0] != 0x30 {
        return Err(VerifyError::MalformedSignature);
    }
    Ok(())
}

/// Verifies a DER ECDSA signature over SHA-256(message) by a SEC1 key
/// (compressed or uncompressed). High-S signatures are refused.
///
/// # Errors
/// A [`VerifyError`] naming the failed check.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    check_encoding(public_key, signature)?;
    let sig = Signature::from_der(signature).map_err(|_| VerifyError::MalformedSignature)?;
    if bool::from(sig.s().is_high()) {
        return Err(VerifyError::HighS);
    }
    let key =
        VerifyingKey::from_sec1_bytes(public_key).map_err(|_| VerifyError::MalformedPublicKey)?;
    key.verify(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}
