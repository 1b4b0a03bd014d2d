//! The Bearer gates of the operator routes: [`WalletAuth::authenticate`]
//! (any valid access token of ours) and [`WalletAuth::authorize`] (one whose
//! role a [`Gate`] admits). A token that verified is remembered for a
//! while (`super::verified`); the denylist is checked on every request.
//! A token not seen before is verified on the CPU pool.

use std::sync::Arc;

use super::WalletAuth;
use crate::token::AccessClaims;
use crate::Error;

/// Which role a gated route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `operator` or the configured `admin_role`.
    Operator,
    /// `service`, or an operator role.
    Service,
}

impl WalletAuth {
    /// Validates a Bearer token for a gated route: an access token of ours,
    /// not revoked, with a role the gate admits.
    ///
    /// # Errors
    /// `Unauthorized` (401) for a missing, invalid or revoked token;
    /// `Forbidden` (403) for a valid token with the wrong role.
    ///
    /// A token minted for any of the router's audiences (`audience` and
    /// `audiences`) is accepted here: they are all the router's own.
    pub async fn authorize(&self, token: Option<&str>, gate: Gate) -> Result<AccessClaims, Error> {
        self.authorize_shared(token, gate)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`authorize`](Self::authorize), its claims shared with the gates'
    /// memory of verified tokens rather than copied.
    pub(crate) async fn authorize_shared(
        &self,
        token: Option<&str>,
        gate: Gate,
    ) -> Result<Arc<AccessClaims>, Error> {
        let claims = self.authenticate_for(token, true).await?;
        let role = claims.role.as_str();
        let ok = match gate {
            Gate::Operator => self.inner.operator_roles.contains(role),
            Gate::Service => role == "service" || self.inner.operator_roles.contains(role),
        };
        if ok {
            Ok(claims)
        } else {
            Err(Error::Forbidden)
        }
    }

    /// Validates a Bearer token of ours (any role): signature, `iss`, `aud`
    /// (the default `audience` only: a token minted for another of the
    /// `audiences` belongs to another service), `exp`, not a refresh token,
    /// not revoked.
    ///
    /// # Errors
    /// `Unauthorized` with the reason.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<AccessClaims, Error> {
        self.authenticate_for(token, false)
            .await
            .map(Arc::unwrap_or_clone)
    }

    async fn authenticate_for(
        &self,
        token: Option<&str>,
        any_audience: bool,
    ) -> Result<Arc<AccessClaims>, Error> {
        let token = token.ok_or_else(|| Error::Unauthorized("missing bearer token".into()))?;
        let now = self.inner.clock.now_secs();
        let verified = &self.inner.verified;
        let claims = match verified.get(token, any_audience, now) {
            Some(claims) => claims,
            None => {
                // A signature check (RS256 tens of µs, ML-DSA-65 more) runs
                // on the CPU pool, off the async threads; a full pool
                // answers 503, never a 401 that would log the caller out.
                let auth = self.clone();
                let owned = token.to_owned();
                let claims = self
                    .run_cpu(move || {
                        let tokens = &auth.inner.tokens;
                        if any_audience {
                            tokens.validate_access_any_audience(&owned)
                        } else {
                            tokens.validate_access(&owned)
                        }
                    })
                    .await?
                    .map_err(|e| Error::Unauthorized(format!("invalid token: {e}")))?;
                let claims = Arc::new(claims);
                verified.insert(token, &claims, any_audience, now);
                claims
            }
        };
        if self.inner.revocations.get(&claims.jti).await?.is_some() {
            return Err(Error::Unauthorized("invalid token: token revoked".into()));
        }
        Ok(claims)
    }
}
