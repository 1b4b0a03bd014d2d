//! One-time refresh rotation and, on reuse, revocation of the token's whole
//! family (SPEC 1 `POST /refresh`).

use super::mint::TokenPair;
use super::WalletAuth;
use crate::revocation::{RevocationEntry, RevocationKind};
use crate::token::{RefreshClaims, TokenError};
use crate::Error;

/// The denylist key under which a revoked refresh family is kept.
fn family_key(fam: &str) -> String {
    format!("family:{fam}")
}

impl WalletAuth {
    /// Exchanges a refresh token for a new pair (one-time rotation).
    ///
    /// # Errors
    /// See SPEC 1 `POST /refresh`.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, Error> {
        if token.is_empty() {
            return Err(Error::RefreshRequired);
        }
        let claims = self
            .inner
            .tokens
            .validate_refresh(token)
            .map_err(|e| match e {
                TokenError::Expired => Error::RefreshExpired,
                other => Error::RefreshInvalid(other.to_string()),
            })?;
        let store = &self.inner.revocations;
        if store.get(&family_key(&claims.fam)).await?.is_some() {
            return Err(Error::RefreshInvalid("token family revoked".into()));
        }
        if let Some(entry) = store.get(&claims.jti).await? {
            return Err(match entry.kind {
                RevocationKind::RefreshUsed => self.revoke_family(&claims).await?,
                _ => Error::RefreshInvalid("token revoked".into()),
            });
        }
        let now = self.inner.clock.now_secs();
        let role = claims
            .role
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "user".into());
        let next = self.refresh_claims(&claims.sub, &role, Some(claims.fam.clone()), now);
        // Mark this token used. The reason names the successor, so of two
        // concurrent exchanges exactly one sees its own entry come back.
        let mine = RevocationEntry {
            jti: claims.jti.clone(),
            revoked_at: self.inner.clock.now_f64(),
            reason: format!("rotated to {}", next.jti),
            revoked_by: claims.sub.clone(),
            exp: Some(claims.exp),
            kind: RevocationKind::RefreshUsed,
        };
        let stored = store.revoke(mine.clone()).await?;
        if stored.reason != mine.reason || stored.kind != RevocationKind::RefreshUsed {
            return Err(self.revoke_family(&claims).await?);
        }
        let access = self.access_claims(&claims.sub, &role, now);
        self.issue_pair(access, next, || Ok(())).await
    }

    /// Reuse of a spent refresh token: revoke its whole family.
    async fn revoke_family(&self, claims: &RefreshClaims) -> Result<Error, Error> {
        tracing::warn!(jti = %claims.jti, family = %claims.fam, "refresh token reuse detected; revoking its family");
        self.inner
            .revocations
            .revoke(RevocationEntry {
                jti: family_key(&claims.fam),
                revoked_at: self.inner.clock.now_f64(),
                reason: "refresh token reuse detected".into(),
                revoked_by: claims.sub.clone(),
                exp: Some(
                    self.inner.clock.now_secs()
                        + self.inner.config.refresh_token_expire_days * 86_400,
                ),
                kind: RevocationKind::RefreshFamily,
            })
            .await?;
        Ok(Error::RefreshInvalid(
            "refresh token already used; its session is revoked".into(),
        ))
    }
}
