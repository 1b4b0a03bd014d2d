//! Every wallet signature decoder and verifier on arbitrary input: the first
//! byte picks the algorithm, the next two the public key's length; the rest
//! splits into key, signature and message. Must never panic; `verify` must
//! never accept what `check_encoding` refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_auth::wallet::{check_encoding, verify, Algorithm};

fuzz_target!(|data: &[u8]| {
    let [sel, k_hi, k_lo, s_hi, s_lo, rest @ ..] = data else {
        return;
    };
    let alg = Algorithm::ALL[usize::from(*sel) % Algorithm::ALL.len()];
    // Lengths near each algorithm's real sizes are the interesting ones, so
    // the selector's high bits also pick "exact size" for key and signature.
    let (key_len, sig_len) = match (alg, sel >> 4) {
        (Algorithm::MlDsa65, 1) => (1952, 3309),
        (Algorithm::Ed25519, 1) => (32, 64),
        (Algorithm::Secp256k1, 1) => (33, usize::from(*s_lo) % 73),
        (Algorithm::Secp256k1, 2) => (65, usize::from(*s_lo) % 73),
        _ => (
            usize::from(u16::from_be_bytes([*k_hi, *k_lo])),
            usize::from(u16::from_be_bytes([*s_hi, *s_lo])),
        ),
    };
    let key_len = key_len.min(rest.len());
    let (key, rest) = rest.split_at(key_len);
    let sig_len = sig_len.min(rest.len());
    let (sig, msg) = rest.split_at(sig_len);
    let encoded = check_encoding(alg, key, sig);
    let verified = verify(alg, key, msg, sig);
    if encoded.is_err() {
        assert!(
            verified.is_err(),
            "{alg}: verify accepted a malformed input"
        );
    }
});
