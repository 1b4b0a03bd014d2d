//! One-time refresh rotation (SPEC 1 `POST /refresh`, SPEC 10) and, on
//! reuse, revocation of the token's whole family with the access tokens it
//! minted.
//!
//! A rotation mints the new pair first and marks the presented token used
//! only after that, in one atomic insert: a refresh that fails server-side
//! (CPU queue full, a fail-closed audit, a store error) leaves the token
//! usable, and its retry is not taken for reuse. Of two exchanges of one
//! token exactly one wins the insert; the other is reuse.

use tokio::task::JoinSet;

use super::mint::{session_end, Session, TokenPair};
use super::WalletAuth;
use crate::revocation::{RevocationEntry, RevocationKind};
use crate::token::{FamilyToken, RefreshClaims, TokenError};
use crate::Error;

/// The denylist key under which a revoked refresh family is kept.
fn family_key(fam: &str) -> String {
    format!("family:{fam}")
}

/// Most generations a family revocation walks to find the access tokens
/// that may still be live (a family refreshed at the per-family limit for a
/// whole access lifetime has fewer).
const MAX_FAMILY_WALK: u64 = 100_000;

impl WalletAuth {
    /// Exchanges a refresh token for a new pair (one-time rotation).
    ///
    /// # Errors
    /// See SPEC 1 `POST /refresh`; `TooManyRequests` past the family's
    /// rate limit. A server-side failure (`Overloaded`, `Unavailable`,
    /// `Internal`) leaves the presented token unused.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, Error> {
        let outcome = self.refresh_unmetered(token).await;
        if let Some(m) = &self.inner.metrics {
            m.refresh(crate::ops::metrics::RefreshResult::of(&outcome));
        }
        outcome
    }

    async fn refresh_unmetered(&self, token: &str) -> Result<TokenPair, Error> {
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
        let c = &self.inner.config;
        let now = self.inner.clock.now_secs();
        if now >= session_end(claims.session_start(), c.session_max_days) {
            return Err(Error::RefreshExpired);
        }
        let role = claims
            .role
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "user".into());
        // A password login's family dies with the password it was made with.
        let password_family = claims.pwv.is_some() || role == c.admin_role;
        if password_family && claims.pwv != self.inner.password_version {
            return Err(Error::RefreshInvalid(
                "the admin password has changed; log in again".into(),
            ));
        }
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
        self.inner
            .limits
            .check_family(&claims.fam)
            .map_err(|r| Error::TooManyRequests {
                retry_after_secs: r.0,
            })?;

        // Mint first: a failure here has not touched the presented token.
        let (access, next) = self.session_pair(&Session::after(&claims, role), now);
        let pair = self.issue_pair(access, next, || Ok(())).await?;
        // Then mark it used, atomically, once the new pair exists.
        let used = RevocationEntry {
            jti: claims.jti.clone(),
            revoked_at: self.inner.clock.now_f64(),
            reason: String::new(),
            revoked_by: String::new(),
            exp: Some(claims.exp),
            kind: RevocationKind::RefreshUsed,
        };
        if !store.try_insert(used).await? {
            // Another exchange of this token won: that is reuse.
            return Err(self.revoke_family(&claims).await?);
        }
        Ok(pair)
    }

    /// Reuse of a spent refresh token: revoke its whole family, and the
    /// family's access tokens that may still be live (operator-style
    /// entries with their `exp`, so consumers see them in `/revoked-jtis`).
    async fn revoke_family(&self, claims: &RefreshClaims) -> Result<Error, Error> {
        tracing::warn!(jti = %claims.jti, family = %claims.fam, "refresh token reuse detected; revoking its family");
        let c = &self.inner.config;
        let now = self.inner.clock.now_secs();
        let end = session_end(claims.session_start(), c.session_max_days)
            .min(now + c.refresh_token_expire_days * 86_400);
        let store = &self.inner.revocations;
        store
            .revoke(RevocationEntry {
                jti: family_key(&claims.fam),
                revoked_at: self.inner.clock.now_f64(),
                reason: String::new(),
                revoked_by: String::new(),
                exp: Some(end.max(now + 1)),
                kind: RevocationKind::RefreshFamily,
            })
            .await?;
        let mut revokes = JoinSet::new();
        for (jti, exp) in self.live_family_access_tokens(claims, now).await? {
            let store = std::sync::Arc::clone(store);
            let entry = RevocationEntry {
                jti,
                revoked_at: self.inner.clock.now_f64(),
                reason: "refresh token reuse detected".into(),
                revoked_by: "wallet-auth".into(),
                exp: Some(exp),
                kind: RevocationKind::Token,
            };
            revokes.spawn(async move { store.revoke(entry).await });
        }
        while let Some(done) = revokes.join_next().await {
            done.map_err(|e| Error::Internal(format!("revoking a family: {e}")))??;
        }
        Ok(Error::RefreshInvalid(super::REUSE_DETECTED.into()))
    }

    /// The (jti, exp) of the access tokens of `claims`'s family that may
    /// still be live at `now`. Generation g's access token was minted with
    /// generation g's refresh token: at the session's start for g = 0, else
    /// just before generation g-1's token was marked used (its entry's
    /// `revoked_at`). The walk goes forward from the reused token to the
    /// family's newest generation, then back while the tokens may live.
    async fn live_family_access_tokens(
        &self,
        claims: &RefreshClaims,
        now: u64,
    ) -> Result<Vec<(String, u64)>, Error> {
        let tokens = &self.inner.tokens;
        let store = &self.inner.revocations;
        let life = self.inner.config.access_token_expire_minutes * 60;
        let fam = &claims.fam;
        // used_at[g] = when generation g's refresh token was used, i.e. when
        // generation g+1 was minted.
        let used_at = |entry: Option<RevocationEntry>| {
            entry
                .filter(|e| e.kind == RevocationKind::RefreshUsed)
                .map(|e| e.revoked_at.max(0.0).ceil() as u64)
        };
        let mut newest = claims.gen;
        let mut minted_at: Vec<(u64, u64)> = Vec::new(); // (generation, mint time)
        while newest - claims.gen < MAX_FAMILY_WALK {
            let jti = tokens.family_jti(fam, newest, FamilyToken::Refresh);
            match used_at(store.get(&jti).await?) {
                Some(at) => {
                    newest += 1;
                    minted_at.push((newest, at));
                }
                None => break,
            }
        }
        let mut gen = claims.gen;
        loop {
            let at = if gen == 0 {
                Some(claims.session_start())
            } else {
                let jti = tokens.family_jti(fam, gen - 1, FamilyToken::Refresh);
                used_at(store.get(&jti).await?)
            };
            let Some(at) = at else { break };
            if at.saturating_add(life) <= now {
                break;
            }
            minted_at.push((gen, at));
            if gen == 0 || claims.gen - gen >= MAX_FAMILY_WALK {
                break;
            }
            gen -= 1;
        }
        let end = session_end(claims.session_start(), self.inner.config.session_max_days);
        Ok(minted_at
            .into_iter()
            .filter(|(_, at)| at.saturating_add(life) > now)
            .map(|(g, at)| {
                (
                    tokens.family_jti(fam, g, FamilyToken::Access),
                    at.saturating_add(life).min(end),
                )
            })
            .collect())
    }
}
