//! # wallet-auth
//!
//! An embeddable [axum](https://docs.rs/axum) router for wallet
//! challenge-response login: a client asks for a one-time nonce, signs it
//! with its wallet key (ML-DSA-65, Ed25519 or secp256k1), and receives an
//! RS256 access token that any JWT library can verify against the router's
//! JWKS. Wire-compatible with the Python pico-server-auth 0.2.2.
//!
//! ## Quick start
//! ```no_run
//! use wallet_auth::{AuthConfig, WalletAuth};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = WalletAuth::builder(AuthConfig {
//!     issuer: "https://auth.example.com".into(),
//!     signing_key_path: Some("/var/lib/wallet-auth/signing-key.pem".into()),
//!     revocation_store_path: "/var/lib/wallet-auth/revocations.jsonl".into(),
//!     ..Default::default()
//! })
//! .build()?;
//!
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .merge(auth.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8100").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The crate never binds a socket, reads the environment or installs a
//! tracing subscriber on its own: `examples/standalone.rs` does that.
//!
//! Several instances share challenges, the denylist and the mint audit
//! through Redis with the `redis` feature: see `RedisStores` (module
//! `store_redis`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
mod auth;
pub mod challenge;
pub mod clock;
pub mod config;
mod error;
mod hexcodec;
pub mod http;
pub mod jsonl;
pub mod keyset;
pub mod limit;
mod message;
pub mod ops;
pub mod password;
pub mod revocation;
#[cfg(feature = "redis")]
pub mod store_redis;
mod stores;
pub mod token;
pub mod wallet;
mod work;

pub use audit::{JsonlMintAuditStore, MemoryMintAuditStore, MintAuditStore, MintRecord};
pub use auth::{ChallengeRequest, IssuedChallenge, MAX_MESSAGE_LEN};
pub use auth::{
    FleetRequest, FleetSession, Gate, MintView, RevokedJtis, SignInRequest, SignInResponse,
    TokenPair, WalletAuth, WalletAuthBuilder, MAX_ADDRESS_LEN, MAX_DELTA,
};
pub use challenge::{ChallengeMeta, ChallengeStore, MemoryChallengeStore};
pub use config::AuthConfig;
pub use error::{ConfigError, Error, StoreError};
pub use keyset::{KeyInfo, KeySet, KeyState};
pub use revocation::{
    FeedRead, JsonlRevocationStore, MemoryRevocationStore, RevocationEntry, RevocationKind,
    RevocationStore,
};
#[cfg(feature = "redis")]
pub use store_redis::{
    RedisChallengeStore, RedisMintAuditStore, RedisOptions, RedisRevocationStore, RedisStores,
};
pub use token::{AccessClaims, Jwk, RefreshClaims, SigningKey, TokenError};
pub use wallet::{Algorithm, ContractWalletVerifier, VerifyError};

/// Installs jsonwebtoken's aws-lc crypto provider for this process. Called by
/// [`WalletAuthBuilder::build`]; harmless when a provider is already installed.
pub fn install_crypto_provider() {
    // "Already installed" is fine: a host app may have chosen one.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// The README's Rust blocks, compiled by `cargo test --doc` so the README
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
