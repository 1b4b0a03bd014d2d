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
    if !is_canonical_y(public_key) {
        return Err(VerifyError::MalformedPublicKey);
    }
    Ok(())
}

/// Whether the 255-bit little-endian `y` of an encoded point (the sign bit
/// of `x` masked off) is below p = 2^255 - 19. The values p..2^255-1 are
/// the only non-canonical encodings of `y`: all of bytes 1..=30 are 0xff,
/// byte 31 is 0x7f once the sign bit is masked, and byte 0 is 0xed or more.
/// Checked on the bytes, because decompressing and re-encoding such a key
/// gives the input back unchanged.
fn is_canonical_y(key: &[u8]) -> bool {
    let [first, middle @ .., last] = key else {
        return false;
    };
    !(*first >= 0xed && middle.iter().all(|b| *b == 0xff) && last & 0x7f == 0x7f)
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
    let sig = Signature::from_bytes(sig);
    key.verify_strict(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_with(first: u8, last: u8) -> [u8; 32] {
        let mut k = [0xff; 32];
        k[0] = first;
        k[31] = last;
        k
    }

    #[test]
    fn y_of_p_or_more_is_not_canonical() {
        // The example: f0, thirty ff, 7f (y = p + 3).
        assert!(!is_canonical_y(&key_with(0xf0, 0x7f)));
        // y = p exactly, with and without the sign bit of x.
        assert!(!is_canonical_y(&key_with(0xed, 0x7f)));
        assert!(!is_canonical_y(&key_with(0xed, 0xff)));
        assert!(!is_canonical_y(&key_with(0xff, 0xff)));
        let sig = [0u8; SIGNATURE_LEN];
        assert_eq!(
            check_encoding(&key_with(0xf0, 0x7f), &sig),
            Err(VerifyError::MalformedPublicKey)
        );
    }

    #[test]
    fn y_below_p_is_canonical() {
        // y = p - 1 and y = 2^255 - 1 with a middle byte lowered.
        assert!(is_canonical_y(&key_with(0xec, 0x7f)));
        let mut k = key_with(0xf0, 0x7f);
        k[7] = 0xfe;
        assert!(is_canonical_y(&k));
        assert!(is_canonical_y(&[0u8; 32]));
        assert!(!is_canonical_y(&[]));
    }
}
