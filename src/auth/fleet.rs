//! Fleet sessions: the `X-Fleet-Secret` check and the session mint (SPEC 1
//! `POST /fleet/sessions`).

use std::sync::Arc;

use serde::Serialize;

use super::mint::token_internal;
use super::{check_len, WalletAuth, FLEET_MIN_TTL, MAX_TEXT_LEN};
use crate::token::AccessClaims;
use crate::Error;

/// A fleet session request (SPEC 1, `POST /fleet/sessions`).
#[derive(Debug, Clone, Default)]
pub struct FleetRequest {
    /// Becomes `sub` and `session_id`.
    pub session_id: String,
    /// Becomes `agent_id`.
    pub agent_id: String,
    /// Role; `None` means `agent`.
    pub role: Option<String>,
    /// Requested lifetime in seconds (clamped); `None` or `Some(0)` means
    /// `fleet_session_ttl_seconds`.
    pub ttl: Option<i64>,
    /// Optional scope.
    pub scope: Option<String>,
    /// The audience the token is for (SPEC 2); `None` means `audience`.
    pub audience: Option<String>,
}

/// A minted fleet session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FleetSession {
    /// The RS256 session token.
    pub session_token: String,
    /// Its expiry, epoch seconds.
    pub exp: u64,
}

/// Constant-time equality of two secrets of any lengths (their SHA-256
/// digests are compared, so the length does not leak either).
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

impl WalletAuth {
    /// Checks an `X-Fleet-Secret` value in constant time.
    ///
    /// # Errors
    /// `FleetDisabled` (404) when no secret is configured,
    /// `FleetSecretInvalid` (401) when it is missing or wrong.
    pub fn check_fleet_secret(&self, secret: Option<&[u8]>) -> Result<(), Error> {
        let configured = self.inner.config.fleet_mint_secret.as_bytes();
        if configured.is_empty() {
            return Err(Error::FleetDisabled);
        }
        if secret.is_some_and(|s| secret_eq(s, configured)) {
            Ok(())
        } else {
            Err(Error::FleetSecretInvalid)
        }
    }

    /// Mints a fleet session token. `secret` is the `X-Fleet-Secret` header.
    ///
    /// # Errors
    /// See SPEC 1 `POST /fleet/sessions`.
    pub async fn mint_fleet_session(
        &self,
        secret: Option<&[u8]>,
        req: FleetRequest,
    ) -> Result<FleetSession, Error> {
        self.check_fleet_secret(secret)?;
        if req.session_id.is_empty() || req.agent_id.is_empty() {
            return Err(Error::FieldRequired("session_id and agent_id"));
        }
        check_len("session_id", &req.session_id, MAX_TEXT_LEN)?;
        check_len("agent_id", &req.agent_id, MAX_TEXT_LEN)?;
        let role = req.role.unwrap_or_else(|| "agent".into());
        check_len("role", &role, MAX_TEXT_LEN)?;
        if !self.inner.fleet_roles.contains(&role) {
            return Err(Error::RoleNotAllowed(role));
        }
        if let Some(scope) = &req.scope {
            check_len("scope", scope, MAX_TEXT_LEN)?;
        }
        let aud = self.audience_for(req.audience.as_deref())?;
        let c = &self.inner.config;
        // Absent, null or 0: the configured default (as in pico).
        let ttl = match req.ttl.filter(|&t| t != 0) {
            Some(t) => t.clamp(
                FLEET_MIN_TTL as i64,
                c.fleet_max_ttl_seconds.min(i64::MAX as u64) as i64,
            ) as u64,
            None => c
                .fleet_session_ttl_seconds
                .clamp(FLEET_MIN_TTL, c.fleet_max_ttl_seconds),
        };
        let now = self.inner.clock.now_secs();
        let claims = AccessClaims {
            exp: now.saturating_add(ttl),
            session_id: Some(req.session_id.clone()),
            agent_id: Some(req.agent_id),
            scope: req.scope.filter(|s| !s.is_empty()),
            aud,
            ..self.access_claims(&req.session_id, &role, now)
        };
        let records = self.audit_records(&[(&claims, "sign")]);
        let exp = claims.exp;
        let inner = Arc::clone(&self.inner);
        let token = self
            .mint_audited(records, move || {
                inner.tokens.sign_access(&claims).map_err(token_internal)
            })
            .await?;
        Ok(FleetSession {
            session_token: token,
            exp,
        })
    }
}
