//! Claims of each token kind.

use serde::{Deserialize, Serialize};

/// Claims of an access token (wallet, password or fleet session). The
/// optional members appear only in the kinds that carry them (SPEC 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: wallet id, email or fleet session id.
    pub sub: String,
    /// Issued at (epoch seconds).
    pub iat: u64,
    /// Expiry (epoch seconds).
    pub exp: u64,
    /// Unique token id (32 lowercase hex).
    pub jti: String,
    /// Role.
    pub role: String,
    /// Wallet algorithm (wallet tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Wallet id (wallet tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_address: Option<String>,
    /// EIP-155 chain id an `eip191` wallet signed in on (SPEC 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Fleet session id (fleet tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Fleet agent id (fleet tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Fleet scope (fleet tokens, only when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the session began (epoch seconds): the sign-in or login that
    /// started the refresh family (wallet and password tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// Never present in an access token; a token carrying it (a pico-style
    /// refresh token) is refused where an access token is expected.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// Claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject.
    pub sub: String,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
    /// Role carried forward to the next access token.
    #[serde(default)]
    pub role: Option<String>,
    /// Always `refresh`.
    #[serde(rename = "type")]
    pub token_type: String,
    /// Family: jti of the first refresh token of this login.
    pub fam: String,
    /// When the session began (epoch seconds); absent in tokens minted
    /// before sessions were capped, which count from their `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// Generation within the family: 0 for the login's token, one more at
    /// each rotation. With `fam` it names the pair's token ids.
    #[serde(default)]
    pub gen: u64,
    /// Password version of a password login's family: it dies when the
    /// admin password changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwv: Option<String>,
}

impl RefreshClaims {
    /// When the session began: `auth_time`, or `iat` for a token minted
    /// before `auth_time` was carried.
    pub fn session_start(&self) -> u64 {
        self.auth_time.unwrap_or(self.iat)
    }
}

impl AccessClaims {
    /// Claims with the common members, a fresh `jti`, and none of the
    /// kind-specific ones (set those with struct update syntax).
    pub fn new(iss: &str, aud: &str, sub: &str, role: &str, iat: u64, exp: u64) -> Self {
        Self {
            iss: iss.to_string(),
            aud: aud.to_string(),
            sub: sub.to_string(),
            iat,
            exp,
            jti: super::new_jti(),
            role: role.to_string(),
            algorithm: None,
            wallet_address: None,
            chain_id: None,
            session_id: None,
            agent_id: None,
            scope: None,
            auth_time: None,
            token_type: None,
        }
    }
}
