//! ML-DSA-65 (FIPS 204), pure mode with the empty context string.

use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa65, Signature, VerifyingKey};

use super::VerifyError;

/// FIPS 204 public key size for ML-DSA-65.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// FIPS 204 signature size for ML-DSA-65.
pub const SIGNATURE_LEN: usize = 3309;

pub(super) fn check_encoding(public_key: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    if public_key.len() != PUBLIC_KEY_LEN {
        return Err(VerifyError::MalformedPublicKey);
    }
    if signature.len() != SIGNATURE_LEN {
        return Err(VerifyError::MalformedSignature);
    }
    Ok(())
}

/// Verifies a pure ML-DSA-65 signature with an empty context.
///
/// # Errors
/// A [`VerifyError`] naming the failed check.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    check_encoding(public_key, signature)?;
    let enc_pk = EncodedVerifyingKey::<MlDsa65>::try_from(public_key)
        .map_err(|_| VerifyError::MalformedPublicKey)?;
    let enc_sig = EncodedSignature::<MlDsa65>::try_from(signature)
        .map_err(|_| VerifyError::MalformedSignature)?;
    let sig = Signature::<MlDsa65>::decode(&enc_sig).ok_or(VerifyError::MalformedSignature)?;
    let key = VerifyingKey::<MlDsa65>::decode(&enc_pk);
    if key.verify_with_context(message, &[], &sig) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}
