//! # wallet-auth
//!
//! An embeddable axum router for wallet challenge-response login.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod audit;
pub mod challenge;
pub mod clock;
pub mod config;
mod error;
pub mod password;
pub mod revocation;
pub mod token;
pub mod wallet;

pub use audit::{MemoryMintAuditStore, MintAuditStore, MintRecord};
pub use challenge::{ChallengeStore, MemoryChallengeStore};
pub use config::AuthConfig;
pub use error::{ConfigError, Error, StoreError};
pub use revocation::{MemoryRevocationStore, RevocationEntry, RevocationKind, RevocationStore};
pub use token::{AccessClaims, Jwk, RefreshClaims, SigningKey, TokenError};
pub use wallet::{Algorithm, VerifyError};
