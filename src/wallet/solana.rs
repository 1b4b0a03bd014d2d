//! Solana accounts: the address is the base58 of an Ed25519 public key, and
//! a Sign-In With Solana signature is Ed25519 over the message, verified
//! with the same strictness as the `Ed25519` algorithm (canonical key
//! encoding, no small-order key, `verify_strict`).

use super::VerifyError;

/// Bytes of a Solana public key (its address decoded).
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Longest base58 spelling of 32 bytes (44 characters); anything longer is
/// refused before decoding.
const MAX_ADDRESS_CHARS: usize = 44;
/// Longest base58 spelling of 64 bytes.
const MAX_SIGNATURE_CHARS: usize = 88;

/// Decodes a base58 address into its 32-byte public key; `None` when it is
/// not base58 of exactly 32 bytes.
pub fn parse_address(s: &str) -> Option<[u8; PUBLIC_KEY_LEN]> {
    decode_exact::<PUBLIC_KEY_LEN>(s, MAX_ADDRESS_CHARS)
}

/// The base58 address of a public key.
pub fn address_of(public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    bs58::encode(public_key).into_string()
}

/// Decodes a signature sent as 128 hex digits (optionally `0x`-prefixed)
/// or as base58 (what wallet adapters' `signMessage` bytes become with
/// `bs58.encode`). `None` when it is neither, or not 64 bytes.
pub fn parse_signature(s: &str) -> Option<[u8; SIGNATURE_LEN]> {
    let hex = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; SIGNATURE_LEN];
    if hex.len() == 2 * SIGNATURE_LEN && crate::hexcodec::decode_to_slice(hex, &mut out) {
        return Some(out);
    }
    decode_exact::<SIGNATURE_LEN>(s, MAX_SIGNATURE_CHARS)
}

fn decode_exact<const N: usize>(s: &str, max_chars: usize) -> Option<[u8; N]> {
    if s.is_empty() || s.len() > max_chars {
        return None;
    }
    // One spare byte, so that a value longer than N bytes is seen as such.
    let mut buf = [0u8; 96];
    let len = bs58::decode(s).onto(&mut buf[..]).ok()?;
    let bytes: [u8; N] = buf.get(..len)?.try_into().ok()?;
    Some(bytes)
}

/// Whether `key` is a canonical encoding of a curve point's `y` (as the
/// `Ed25519` algorithm requires); a key that is not can never sign.
pub fn is_canonical_key(key: &[u8; PUBLIC_KEY_LEN]) -> bool {
    super::ed25519::check_encoding(key, &[0u8; SIGNATURE_LEN]).is_ok()
}

pub(super) fn check_encoding(public_key: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    super::ed25519::check_encoding(public_key, signature)
}

/// Verifies an Ed25519 signature over `message` by the key `public_key`
/// (the decoded address), strictly.
///
/// # Errors
/// A [`VerifyError`] naming the failed check.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    super::ed25519::verify(public_key, message, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_refuse_other_lengths() {
        // The system program (32 zero bytes) and a random key.
        assert_eq!(
            parse_address("11111111111111111111111111111111"),
            Some([0u8; 32])
        );
        let key = [0x5au8; 32];
        let address = address_of(&key);
        assert_eq!(parse_address(&address), Some(key));
        for bad in [
            "",
            "0OIl",
            "1111111111111111111111111111111",   // 31 bytes
            "111111111111111111111111111111111", // 33 bytes
            &"z".repeat(45),
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn signatures_are_hex_or_base58_of_64_bytes() {
        let sig = [0xa5u8; 64];
        let hex = crate::hexcodec::encode(&sig);
        assert_eq!(parse_signature(&hex), Some(sig));
        assert_eq!(parse_signature(&format!("0x{hex}")), Some(sig));
        assert_eq!(parse_signature(&hex.to_ascii_uppercase()), Some(sig));
        assert_eq!(
            parse_signature(&bs58::encode(&sig).into_string()),
            Some(sig)
        );
        assert_eq!(parse_signature(&hex[..126]), None);
        assert_eq!(
            parse_signature(&bs58::encode(&sig[..63]).into_string()),
            None
        );
        assert_eq!(parse_signature(""), None);
    }

    #[test]
    fn verifies_like_ed25519() {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let public = key.verifying_key().to_bytes();
        let sig = key.sign(b"siws").to_bytes();
        verify(&public, b"siws", &sig).unwrap();
        assert_eq!(
            verify(&public, b"siwz", &sig),
            Err(VerifyError::BadSignature)
        );
        // A small-order key (the identity) is refused as weak.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            verify(&identity, b"siws", &sig),
            Err(VerifyError::WeakPublicKey)
        );
    }
}
