//! How the fuzz targets turn raw bytes into inputs. Shared, by `#[path]`,
//! between the fuzz targets and `tests/fuzz_corpus.rs`, so the corpus replay
//! under `cargo test` decodes each file exactly as the fuzzer did.

#![allow(dead_code)]

use wallet_auth::wallet::Algorithm;

/// `router_requests`: the first byte picks the route (and, by its high bit,
/// whether credentials ride along); the rest is the body.
pub struct RouteInput<'a> {
    pub method: &'static str,
    /// Path under the `/api/v1/auth` prefix.
    pub route: String,
    pub with_credentials: bool,
    pub body: &'a [u8],
}

pub fn route_input(data: &[u8]) -> Option<RouteInput<'_>> {
    let (&sel, body) = data.split_first()?;
    let (method, route) = match sel % 10 {
        0 => ("GET", "/jwks".to_string()),
        1 => ("POST", "/challenge".to_string()),
        2 => ("POST", "/sign-in".to_string()),
        3 => ("POST", "/refresh".to_string()),
        4 => ("POST", "/login".to_string()),
        5 => ("POST", "/fleet/sessions".to_string()),
        6 => ("POST", "/revoke".to_string()),
        7 => ("GET", "/revoked-jtis".to_string()),
        8 => ("GET", format!("/mints?{}", String::from_utf8_lossy(body))),
        _ => ("POST", "/jwks".to_string()),
    };
    Some(RouteInput {
        method,
        route,
        with_credentials: sel & 0x80 == 0,
        body,
    })
}

/// `wallet_verify`: the first byte picks the algorithm, the next four the
/// key and signature lengths (or, by the selector's high bits, each
/// algorithm's exact sizes); the rest splits into key, signature, message.
/// Algorithm, public key, signature, message.
pub type WalletInput<'a> = (Algorithm, &'a [u8], &'a [u8], &'a [u8]);

pub fn wallet_input(data: &[u8]) -> Option<WalletInput<'_>> {
    let [sel, k_hi, k_lo, s_hi, s_lo, rest @ ..] = data else {
        return None;
    };
    let alg = Algorithm::ALL[usize::from(*sel) % Algorithm::ALL.len()];
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
    let (key, rest) = rest.split_at(key_len.min(rest.len()));
    let (sig, msg) = rest.split_at(sig_len.min(rest.len()));
    Some((alg, key, sig, msg))
}
