//! Ethereum accounts: EIP-191 `personal_sign` verified by public-key
//! recovery, EIP-55 checksummed addresses, Keccak-256.
//!
//! A signature is 65 bytes, `r ‖ s ‖ v` with `v` 27/28 (or 0/1, as some
//! hardware wallets send it); `s` must be in the lower half of the group
//! order (EIP-2), so the high-S twin of a valid signature is refused. The
//! "public key" this module's [`verify`] takes is the 20-byte address: the
//! signature verifies when the key it recovers hashes to that address.

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use sha3::{Digest, Keccak256};

use super::VerifyError;

/// Bytes of an address.
pub const ADDRESS_LEN: usize = 20;
/// Bytes of an EOA signature: `r ‖ s ‖ v`.
pub const SIGNATURE_LEN: usize = 65;

/// Keccak-256 of `data` (the pre-standard Keccak, as Ethereum uses it).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The EIP-191 version `0x45` hash that `personal_sign` signs:
/// `keccak256("\x19Ethereum Signed Message:\n" ‖ len(message) ‖ message)`,
/// the length in decimal ASCII. A [`ContractWalletVerifier`] passes this
/// hash to the contract's `isValidSignature`.
///
/// [`ContractWalletVerifier`]: crate::wallet::ContractWalletVerifier
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

/// The EIP-55 spelling of an address: `0x` and 40 hex digits, a letter
/// upper-cased where the matching nibble of `keccak256(lowercase hex)` is 8
/// or more.
pub fn checksum_address(address: &[u8; ADDRESS_LEN]) -> String {
    let lower = crate::hexcodec::encode(address);
    let hash = keccak256(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not `0x` followed by 40 hex digits.
    #[error("an Ethereum address is 0x and 40 hex digits")]
    Malformed,
    /// Mixed case that is not the EIP-55 checksum.
    #[error("mixed-case address with a wrong EIP-55 checksum")]
    BadChecksum,
}

/// Parses an address spelled in lower case or with its EIP-55 checksum
/// (any mixed case must be the checksum, as viem's strict `isAddress`
/// requires). Returns the 20 bytes.
///
/// # Errors
/// [`AddressError`] naming what is wrong.
pub fn parse_address(s: &str) -> Result<[u8; ADDRESS_LEN], AddressError> {
    let hex = s.strip_prefix("0x").ok_or(AddressError::Malformed)?;
    let mut out = [0u8; ADDRESS_LEN];
    // Either case decodes; the case is checked below.
    if !crate::hexcodec::decode_to_slice(hex, &mut out) {
        return Err(AddressError::Malformed);
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) && checksum_address(&out) != s {
        return Err(AddressError::BadChecksum);
    }
    Ok(out)
}

/// The address of a public key: the last 20 bytes of the Keccak-256 of its
/// uncompressed point (without the `04` prefix).
pub fn address_of(key: &VerifyingKey) -> [u8; ADDRESS_LEN] {
    let point = key.to_sec1_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut out = [0u8; ADDRESS_LEN];
    out.copy_from_slice(&hash[12..]);
    out
}

/// The recovery id of `v`: 27/28 (or 0/1) name the parity of R's `y`; any
/// other value (EIP-155's `chain_id * 2 + 35`, an x-reduced 2/3, junk) is
/// refused, as `personal_sign` never makes it.
pub(crate) fn recovery_id(v: u8) -> Option<RecoveryId> {
    match v {
        27 | 0 => Some(RecoveryId::new(false, false)),
        28 | 1 => Some(RecoveryId::new(true, false)),
        _ => None,
    }
}

pub(super) fn check_encoding(address: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    if address.len() != ADDRESS_LEN {
        return Err(VerifyError::MalformedPublicKey);
    }
    if signature.len() != SIGNATURE_LEN {
        return Err(VerifyError::MalformedSignature);
    }
    if recovery_id(signature[64]).is_none() {
        return Err(VerifyError::BadRecoveryId);
    }
    Ok(())
}

/// Verifies an EIP-191 `personal_sign` signature over `message` by the
/// account `address` (20 bytes): recovers the key from `r ‖ s ‖ v` and
/// compares its address. High-S signatures are refused.
///
/// # Errors
/// A [`VerifyError`] naming the failed check; [`VerifyError::BadSignature`]
/// when the signature is valid for another account (or none).
pub fn verify(address: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    check_encoding(address, signature)?;
    let recovered = recover(&personal_message_hash(message), signature)?;
    // The address is public: no need for a constant-time comparison.
    if recovered[..] == address[..] {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The address that signed `prehash` with the 65-byte `signature`.
fn recover(prehash: &[u8; 32], signature: &[u8]) -> Result<[u8; ADDRESS_LEN], VerifyError> {
    let (rs, v) = signature.split_at(64);
    let id = recovery_id(v[0]).ok_or(VerifyError::BadRecoveryId)?;
    let sig = Signature::from_slice(rs).map_err(|_| VerifyError::MalformedSignature)?;
    if bool::from(sig.s().is_high()) {
        return Err(VerifyError::HighS);
    }
    let key = VerifyingKey::recover_from_prehash(prehash, &sig, id)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(address_of(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EIP-55's own examples (all caps, all lower, and mixed).
    const EIP55: [&str; 8] = [
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn eip55_examples_round_trip() {
        for want in EIP55 {
            let lower = want.to_ascii_lowercase();
            let bytes = parse_address(&lower).unwrap();
            assert_eq!(checksum_address(&bytes), want);
            assert_eq!(parse_address(want).unwrap(), bytes, "{want}");
        }
    }

    #[test]
    fn a_wrong_checksum_or_shape_is_refused() {
        // One letter's case flipped.
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert_eq!(parse_address(bad), Err(AddressError::BadChecksum));
        // All upper case of a mixed-case address is not its checksum either.
        let upper = format!("0x{}", &EIP55[4][2..].to_ascii_uppercase());
        assert_eq!(parse_address(&upper), Err(AddressError::BadChecksum));
        for malformed in [
            "",
            "0x",
            "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaedd",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg",
            "0X5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        ] {
            assert_eq!(parse_address(malformed), Err(AddressError::Malformed));
        }
    }

    #[test]
    fn keccak_and_the_personal_hash_known_answers() {
        // keccak256("") and the EIP-191 hash of "hello world" (as ethers'
        // hashMessage and viem's hashMessage compute it).
        assert_eq!(
            crate::hexcodec::encode(&keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            crate::hexcodec::encode(&personal_message_hash(b"hello world")),
            "d9eba16ed0ecae432b71fe008c98cc872bb4cc214d3220a36f365326cf807d68"
        );
    }

    fn sign(key: &k256::ecdsa::SigningKey, message: &[u8]) -> [u8; 65] {
        let (sig, id) = key.sign_prehash_recoverable(&personal_message_hash(message));
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + id.to_byte();
        out
    }

    #[test]
    fn recovers_the_signer_and_refuses_twins_and_bad_v() {
        use k256::elliptic_curve::ops::Neg;
        let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let address = address_of(key.verifying_key());
        let sig = sign(&key, b"sign in");
        verify(&address, b"sign in", &sig).unwrap();
        // v as 0/1.
        let mut zero_one = sig;
        zero_one[64] -= 27;
        verify(&address, b"sign in", &zero_one).unwrap();
        // Another message, another address.
        assert_eq!(
            verify(&address, b"sign in!", &sig),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&[0u8; 20], b"sign in", &sig),
            Err(VerifyError::BadSignature)
        );
        // The high-S twin (n - s, flipped parity) recovers the same key, but is refused.
        let parsed = Signature::from_slice(&sig[..64]).unwrap();
        let (r, s) = parsed.split_scalars();
        let twin = Signature::from_scalars(r.to_bytes(), s.as_ref().neg().to_bytes()).unwrap();
        let mut high = [0u8; 65];
        high[..64].copy_from_slice(&twin.to_bytes());
        high[64] = if sig[64] == 27 { 28 } else { 27 };
        assert_eq!(verify(&address, b"sign in", &high), Err(VerifyError::HighS));
        for v in [2u8, 3, 26, 29, 37, 38, 255] {
            let mut bad = sig;
            bad[64] = v;
            assert_eq!(
                verify(&address, b"sign in", &bad),
                Err(VerifyError::BadRecoveryId),
                "{v}"
            );
        }
        assert_eq!(
            verify(&address, b"sign in", &sig[..64]),
            Err(VerifyError::MalformedSignature)
        );
        assert_eq!(
            verify(&address[..19], b"sign in", &sig),
            Err(VerifyError::MalformedPublicKey)
        );
        // r = 0 or s = 0 never parses.
        let mut zero = sig;
        zero[..32].fill(0);
        assert!(verify(&address, b"sign in", &zero).is_err());
    }
}
