//! Every wallet signature decoder and verifier on arbitrary input: the first
//! byte picks the algorithm, the next two the public key's length; the rest
//! splits into key, signature and message. Must never panic; `verify` must
//! never accept what `check_encoding` refuses.
#![no_main]

#[path = "../decode.rs"]
mod decode;

use libfuzzer_sys::fuzz_target;
use wallet_auth::wallet::{check_encoding, verify};

fuzz_target!(|data: &[u8]| {
    let Some((alg, key, sig, msg)) = decode::wallet_input(data) else {
        return;
    };
    let encoded = check_encoding(alg, key, sig);
    let verified = verify(alg, key, msg, sig);
    if encoded.is_err() {
        assert!(
            verified.is_err(),
            "{alg}: verify accepted a malformed input"
        );
    }
});
