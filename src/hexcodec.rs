//! Hex encoding and decoding, table-driven.
//!
//! A sign-in with ML-DSA-65 decodes about 10,000 hex characters (key and
//! signature) and encodes a 1,952-byte key back into its wallet id; the
//! `hex` crate's iterator-based codec spent about 40 us of each such
//! sign-in on it (perf, ML-DSA-65 sign-in load). These loops do one table
//! look-up per character.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The value of each hex digit (either case); `INVALID` for any other byte.
const VALUE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Not a digit: the high nibble is set, which no digit's value has.
const INVALID: u8 = 0xFF;

/// Lower-case hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    out
}

/// The bytes of `s` (digits of either case, even length); `None` otherwise.
pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
    let mut out = vec![0u8; s.len() / 2];
    decode_to_slice(s, &mut out).then_some(out)
}

/// Decodes `s` into `out`, which must be exactly half its length; `false`
/// (with `out` in an unspecified state) when it is not valid hex of that
/// length.
pub(crate) fn decode_to_slice(s: &str, out: &mut [u8]) -> bool {
    let s = s.as_bytes();
    if s.len() != out.len() * 2 {
        return false;
    }
    let mut seen = 0u8;
    for (pair, o) in s.chunks_exact(2).zip(out.iter_mut()) {
        let (hi, lo) = (VALUE[usize::from(pair[0])], VALUE[usize::from(pair[1])]);
        seen |= hi | lo;
        *o = (hi << 4) | (lo & 0x0F);
    }
    seen & 0xF0 == 0
}

/// Whether `s` is exactly the lower-case hex of `bytes` (no allocation).
pub(crate) fn is_lower_hex_of(s: &str, bytes: &[u8]) -> bool {
    let s = s.as_bytes();
    s.len() == bytes.len() * 2
        && s.chunks_exact(2).zip(bytes).all(|(pair, &b)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 0x0F)]
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
        assert_eq!(decode("009fA0Ff"), Some(vec![0x00, 0x9f, 0xa0, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0", "abc", "0g", "g0", "zz", " 0", "0x00", "é0"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert!(is_lower_hex_of("009fa0ff", &[0x00, 0x9f, 0xa0, 0xff]));
        assert!(!is_lower_hex_of("009FA0FF", &[0x00, 0x9f, 0xa0, 0xff]));
        assert!(!is_lower_hex_of("009fa0f", &[0x00, 0x9f, 0xa0, 0xff]));
        assert!(!is_lower_hex_of("009fa0fe", &[0x00, 0x9f, 0xa0, 0xff]));
        let mut out = [0u8; 2];
        assert!(!decode_to_slice("abc", &mut out));
        assert!(decode_to_slice("abcd", &mut out));
        assert_eq!(out, [0xab, 0xcd]);
    }

    proptest! {
        #[test]
        fn agrees_with_the_hex_crate(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = encode(&bytes);
            prop_assert_eq!(&s, &hex::encode(&bytes));
            prop_assert_eq!(decode(&s), Some(bytes.clone()));
            prop_assert_eq!(decode(&s.to_uppercase()), Some(bytes.clone()));
            prop_assert!(is_lower_hex_of(&s, &bytes));
        }

        #[test]
        fn decodes_exactly_what_the_hex_crate_decodes(s in "[0-9a-fA-Fg-z ]{0,16}") {
            prop_assert_eq!(decode(&s), hex::decode(&s).ok());
        }
    }
}
