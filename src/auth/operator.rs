//! The operator surface: fleet sessions, Bearer gates, revocation, the denylist poll, the mint audit.

use super::*;

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
        if req.session_id.is_empty() {
            return Err(Error::FieldRequired("session_id"));
        }
        if req.agent_id.is_empty() {
            return Err(Error::FieldRequired("agent_id"));
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
        let c = &self.inner.config;
        let ttl = match req.ttl {
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

    /// Validates a Bearer token for a gated route: an access token of ours,
    /// not revoked, with a role the gate admits.
    ///
    /// # Errors
    /// `Unauthorized` (401) for a missing, invalid or revoked token;
    /// `Forbidden` (403) for a valid token with the wrong role.
    pub async fn authorize(&self, token: Option<&str>, gate: Gate) -> Result<AccessClaims, Error> {
        let claims = self.authenticate(token).await?;
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

    /// Validates a Bearer token of ours (any role): signature, `iss`, `aud`,
    /// `exp`, not a refresh token, not revoked.
    ///
    /// # Errors
    /// `Unauthorized` with the reason.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<AccessClaims, Error> {
        let token = token.ok_or_else(|| Error::Unauthorized("missing bearer token".into()))?;
        let claims = self
            .inner
            .tokens
            .validate_access(token)
            .map_err(|e| Error::Unauthorized(format!("invalid token: {e}")))?;
        if self.inner.revocations.get(&claims.jti).await?.is_some() {
            return Err(Error::Unauthorized("invalid token: token revoked".into()));
        }
        Ok(claims)
    }

    /// Adds a jti to the denylist on behalf of `caller` (idempotent). `exp`,
    /// when the caller knows the token's expiry, lets the entry drop out of
    /// `/revoked-jtis` once the token is dead anyway (the file keeps it).
    ///
    /// # Errors
    /// `JtiRequired`, `FieldTooLong`, `Unavailable` when it cannot be made durable.
    pub async fn revoke(
        &self,
        caller: &AccessClaims,
        jti: &str,
        reason: &str,
        exp: Option<u64>,
    ) -> Result<RevocationEntry, Error> {
        if jti.is_empty() {
            return Err(Error::JtiRequired);
        }
        check_len("jti", jti, MAX_TEXT_LEN)?;
        check_len("reason", reason, MAX_TEXT_LEN)?;
        let entry = RevocationEntry {
            jti: jti.to_string(),
            revoked_at: self.inner.clock.now_f64(),
            reason: reason.to_string(),
            revoked_by: caller.sub.clone(),
            exp,
            kind: RevocationKind::Token,
        };
        let stored = self.inner.revocations.revoke(entry).await?;
        tracing::info!(jti = %stored.jti, by = %caller.sub, "revoked");
        Ok(stored)
    }

    /// The body of `/revoked-jtis`: operator revocations whose token has not
    /// expired, newest first. Cached until the denylist changes or an entry
    /// expires.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revoked_jtis_json(&self) -> Result<bytes::Bytes, Error> {
        Ok(self.poll_cache().await?.body.clone())
    }

    /// The body of [`revoked_jtis_json`](Self::revoked_jtis_json),
    /// gzip-compressed (`Content-Encoding: gzip`), cached alike. The route
    /// serves it to clients that send `Accept-Encoding: gzip`, as
    /// pico-client-auth's httpx does.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revoked_jtis_gzip(&self) -> Result<bytes::Bytes, Error> {
        let cache = self.poll_cache().await?;
        if let Some(z) = cache.gzip.get() {
            return Ok(z.clone());
        }
        // Compressing a large denylist takes milliseconds: off the async threads.
        let body = cache.body.clone();
        let z = self.inner.cpu.run(move || gzip(&body)).await??;
        Ok(cache.gzip.get_or_init(|| z).clone())
    }

    async fn poll_cache(&self) -> Result<Arc<PollCache>, Error> {
        let now = self.inner.clock.now_secs();
        let version = self.inner.revocations.version();
        if let Some(c) = self
            .inner
            .poll_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if c.version == version && now < c.valid_until {
                return Ok(Arc::clone(c));
            }
        }
        let all = self.inner.revocations.list().await?;
        let mut valid_until = u64::MAX;
        let items: Vec<&RevocationEntry> = all
            .iter()
            .filter(|e| e.kind == RevocationKind::Token)
            .filter(|e| match e.exp {
                Some(exp) if exp <= now => false,
                Some(exp) => {
                    valid_until = valid_until.min(exp);
                    true
                }
                None => true,
            })
            .collect();
        #[derive(Serialize)]
        struct Items<'a> {
            items: Vec<&'a RevocationEntry>,
        }
        let body = bytes::Bytes::from(
            serde_json::to_vec(&Items { items })
                .map_err(|e| Error::Internal(format!("serialize denylist: {e}")))?,
        );
        let cache = Arc::new(PollCache {
            version,
            valid_until,
            body,
            gzip: std::sync::OnceLock::new(),
        });
        *self
            .inner
            .poll_cache
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&cache));
        Ok(cache)
    }

    /// The newest `limit` audited mints with their revocation status.
    ///
    /// # Errors
    /// `Unavailable` when a store cannot answer.
    pub async fn mints(&self, limit: Option<i64>) -> Result<Vec<MintView>, Error> {
        let max = self.inner.config.mint_audit_max_in_memory;
        let limit = limit
            .unwrap_or(200)
            .clamp(1, max.min(i64::MAX as usize) as i64) as usize;
        let records = self.inner.audit.recent(limit).await?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let revoked =
                !record.jti.is_empty() && self.inner.revocations.get(&record.jti).await?.is_some();
            out.push(MintView { record, revoked });
        }
        Ok(out)
    }
}
