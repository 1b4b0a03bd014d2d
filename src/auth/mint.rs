//! Minting and auditing: the claims builders, [`TokenPair`], and the two
//! functions every mint goes through, `issue_pair` and `mint_audited`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::oneshot;

use super::{Inner, WalletAuth};
use crate::audit::MintRecord;
use crate::token::{new_jti, AccessClaims, FamilyToken, RefreshClaims, TokenError};
use crate::{Error, StoreError};

/// Where a token pair stands in its login session: who, the refresh
/// family, the generation within it, when the session began, and (for a
/// password login) the password version.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) sub: String,
    pub(super) role: String,
    pub(super) fam: String,
    pub(super) gen: u64,
    pub(super) auth_time: u64,
    pub(super) pwv: Option<String>,
    /// The `aud` of the session's tokens (SPEC 2).
    pub(super) aud: String,
}

impl Session {
    /// A new session (a sign-in or a login) beginning `now`: a fresh family,
    /// generation 0.
    pub(super) fn begin(sub: &str, role: &str, now: u64, pwv: Option<String>, aud: String) -> Self {
        Self {
            sub: sub.to_string(),
            role: role.to_string(),
            fam: new_jti(),
            gen: 0,
            auth_time: now,
            pwv,
            aud,
        }
    }

    /// The next generation of the session `claims` belongs to.
    pub(super) fn after(claims: &RefreshClaims, role: String) -> Self {
        Self {
            sub: claims.sub.clone(),
            role,
            fam: claims.fam.clone(),
            gen: claims.gen.saturating_add(1),
            auth_time: claims.session_start(),
            pwv: claims.pwv.clone(),
            aud: claims.aud.clone(),
        }
    }

    /// When the session ends, epoch seconds.
    pub(super) fn end(&self, session_max_days: u64) -> u64 {
        session_end(self.auth_time, session_max_days)
    }
}

/// When a session that began at `auth_time` ends.
pub(super) fn session_end(auth_time: u64, session_max_days: u64) -> u64 {
    auth_time.saturating_add(session_max_days.saturating_mul(86_400))
}

/// An access and refresh token pair.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// RS256 access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
}

impl WalletAuth {
    /// The `aud` a client asked for (SPEC 2): the default `audience` when
    /// it asked for none, else one of `audiences`.
    ///
    /// # Errors
    /// `BadRequest` (`audience not allowed: <name>`) for any other.
    pub(super) fn audience_for(&self, requested: Option<&str>) -> Result<String, Error> {
        let Some(aud) = requested else {
            return Ok(self.inner.config.audience.clone());
        };
        super::check_len("audience", aud, super::MAX_TEXT_LEN)?;
        if self.inner.tokens.audiences().iter().any(|a| a == aud) {
            Ok(aud.to_string())
        } else {
            Err(Error::BadRequest(format!("audience not allowed: {aud}")))
        }
    }

    pub(super) fn access_claims(&self, sub: &str, role: &str, now: u64) -> AccessClaims {
        let c = &self.inner.config;
        AccessClaims::new(
            &c.issuer,
            &c.audience,
            sub,
            role,
            now,
            now + c.access_token_expire_minutes * 60,
        )
    }

    /// The access and refresh claims of generation `session.gen` of a
    /// refresh family. Their jtis are the family's ([`TokenService::family_jti`]),
    /// so the family's access tokens can be named again if it is revoked;
    /// neither token lives past the session's end (`session_max_days` after
    /// `auth_time`).
    ///
    /// [`TokenService::family_jti`]: crate::token::TokenService::family_jti
    pub(super) fn session_pair(
        &self,
        session: &Session,
        now: u64,
    ) -> (AccessClaims, RefreshClaims) {
        let c = &self.inner.config;
        let tokens = &self.inner.tokens;
        let end = session.end(c.session_max_days);
        let access = AccessClaims {
            jti: tokens.family_jti(&session.fam, session.gen, FamilyToken::Access),
            auth_time: Some(session.auth_time),
            exp: (now + c.access_token_expire_minutes * 60).min(end),
            aud: session.aud.clone(),
            ..self.access_claims(&session.sub, &session.role, now)
        };
        let refresh = RefreshClaims {
            iss: c.issuer.clone(),
            aud: session.aud.clone(),
            sub: session.sub.clone(),
            iat: now,
            exp: (now + c.refresh_token_expire_days * 86_400).min(end),
            jti: tokens.family_jti(&session.fam, session.gen, FamilyToken::Refresh),
            fam: session.fam.clone(),
            role: Some(session.role.clone()),
            token_type: "refresh".into(),
            auth_time: Some(session.auth_time),
            gen: session.gen,
            pwv: session.pwv.clone(),
        };
        (access, refresh)
    }

    /// Whether a mint of these claims is audited (its lifetime reaches
    /// `mint_audit_min_ttl_seconds`).
    fn audited(&self, claims: &AccessClaims) -> bool {
        claims.exp.saturating_sub(claims.iat) >= self.inner.config.mint_audit_min_ttl_seconds
    }

    /// The audit records of those of `mints` that are audited.
    pub(super) fn audit_records(&self, mints: &[(&AccessClaims, &str)]) -> Vec<MintRecord> {
        mints
            .iter()
            .filter(|(c, _)| self.audited(c))
            .map(|(c, kind)| MintRecord {
                jti: c.jti.clone(),
                sub: c.sub.clone(),
                role: c.role.clone(),
                iat: c.iat,
                exp: c.exp,
                kind: (*kind).to_string(),
                scope: c.scope.clone().unwrap_or_default(),
                agent_id: c.agent_id.clone().unwrap_or_default(),
                session_id: c.session_id.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// Runs `mint` on the CPU pool and records `records` in the mint audit;
    /// returns what `mint` made once the records are durable (or, failing
    /// open, once their write failed).
    ///
    /// With a store that has group commit
    /// ([`MintAuditStore::group_commit`]), the records are announced before
    /// the mint starts, so that a batch can wait for them, and queued by the
    /// CPU thread as soon as the mint is done; the request's task is woken
    /// once, when the audit is durable. Any other store's `append` is
    /// awaited here after the mint.
    pub(super) async fn mint_audited<T, F>(
        &self,
        records: Vec<MintRecord>,
        mint: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, Error> + Send + 'static,
    {
        if records.is_empty() {
            return self.inner.cpu.run(mint).await?;
        }
        let (value, audited) = match Arc::clone(&self.inner.audit).group_commit() {
            Some(group) => {
                let announcement = group.announce();
                let (reply, answer) =
                    oneshot::channel::<Result<(T, Result<(), StoreError>), Error>>();
                self.inner.cpu.submit(move || {
                    let value = match mint() {
                        Ok(value) => value,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            return; // `announcement` ends here
                        }
                    };
                    group.append_then(
                        records,
                        announcement,
                        Box::new(move |outcome| {
                            let _ = reply.send(Ok((value, outcome)));
                        }),
                    );
                })?;
                answer
                    .await
                    .map_err(|_| Error::Internal("CPU-bound task failed".into()))??
            }
            None => {
                let value = self.inner.cpu.run(mint).await??;
                (value, self.inner.audit.append(records).await)
            }
        };
        if let Err(e) = audited {
            self.inner.audit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "mint audit write failed");
            if self.inner.config.mint_audit_fail_closed {
                return Err(Error::Unavailable(e));
            }
        }
        Ok(value)
    }

    /// Runs `check` (a wallet verification, or nothing) and signs the pair on
    /// the CPU pool, auditing both mints.
    pub(super) async fn issue_pair<F>(
        &self,
        access: AccessClaims,
        refresh: RefreshClaims,
        check: F,
    ) -> Result<TokenPair, Error>
    where
        F: FnOnce() -> Result<(), Error> + Send + 'static,
    {
        let records = self.audit_records(&[(&access, "access"), (&refresh.as_audit(), "refresh")]);
        let inner = Arc::clone(&self.inner);
        let (access_token, refresh_token) = self
            .mint_audited(records, move || {
                check()?;
                inner.mint_pair(&access, &refresh)
            })
            .await?;
        Ok(TokenPair {
            access_token,
            refresh_token,
        })
    }
}

impl Inner {
    fn mint_pair(
        &self,
        access: &AccessClaims,
        refresh: &RefreshClaims,
    ) -> Result<(String, String), Error> {
        let a = self.tokens.sign_access(access).map_err(token_internal)?;
        let r = self.tokens.sign_refresh(refresh).map_err(token_internal)?;
        Ok((a, r))
    }
}

pub(super) fn token_internal(e: TokenError) -> Error {
    Error::Internal(format!("token signing failed: {e}"))
}

impl RefreshClaims {
    /// The audit view of a refresh token (same fields as an access token's).
    fn as_audit(&self) -> AccessClaims {
        AccessClaims {
            jti: self.jti.clone(),
            token_type: Some("refresh".into()),
            ..AccessClaims::new(
                &self.iss,
                &self.aud,
                &self.sub,
                self.role.as_deref().unwrap_or(""),
                self.iat,
                self.exp,
            )
        }
    }
}
