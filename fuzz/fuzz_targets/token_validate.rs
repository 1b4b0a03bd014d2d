//! `TokenService::validate_access` and `validate_refresh` on arbitrary
//! strings. Must never panic, and must never accept a token it did not mint
//! (a random input that validates would be a forgery).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use wallet_auth::clock::ManualClock;
use wallet_auth::token::TokenService;
use wallet_auth::SigningKey;

const KEY: &str = include_str!("../../fixtures/keys/test-rsa-2048.pem");

fn service() -> &'static TokenService {
    static S: OnceLock<TokenService> = OnceLock::new();
    S.get_or_init(|| {
        wallet_auth::install_crypto_provider();
        let key = Arc::new(SigningKey::from_pem(KEY).expect("test key"));
        TokenService::new(
            key,
            &[],
            b"fuzz refresh secret",
            "http://localhost:8100".into(),
            "pico".into(),
            Arc::new(ManualClock::new(1_700_000_000_000)),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let s = service();
    let token = String::from_utf8_lossy(data);
    assert!(s.validate_access(&token).is_err(), "forged access token");
    assert!(s.validate_refresh(&token).is_err(), "forged refresh token");
});
