//! Challenges, wallet sign-in, and minting + auditing token pairs.

use tokio::sync::oneshot;

use super::*;
use crate::audit::AppendThen;
use crate::StoreError;

impl WalletAuth {
    /// Issues a challenge for `address`; returns it and its TTL in seconds.
    ///
    /// # Errors
    /// `AddressRequired`, `FieldTooLong`, `ChallengesFull`, `Unavailable`.
    pub async fn issue_challenge(&self, address: &str) -> Result<(String, u64), Error> {
        if address.is_empty() {
            return Err(Error::AddressRequired);
        }
        check_len("address", address, MAX_ADDRESS_LEN)?;
        let ttl = self.inner.config.challenge_ttl_seconds;
        let nonce = self
            .inner
            .challenges
            .issue(address, Duration::from_secs(ttl))
            .await?;
        Ok((nonce, ttl))
    }

    /// Verifies a wallet's signature over its challenge and mints tokens.
    ///
    /// Malformed requests (fields, hex, algorithm, lengths, an address that
    /// is not the key's wallet id) are refused before the challenge is
    /// consumed; after that, every attempt burns it.
    ///
    /// # Errors
    /// See SPEC 1 `POST /sign-in`.
    pub async fn sign_in(&self, req: SignInRequest) -> Result<SignInResponse, Error> {
        if req.address.is_empty()
            || req.public_key.is_empty()
            || req.signature.is_empty()
            || req.challenge.is_empty()
        {
            return Err(Error::SignInFieldsRequired);
        }
        check_len("address", &req.address, MAX_ADDRESS_LEN)?;
        check_len("public_key", &req.public_key, MAX_HEX_LEN)?;
        check_len("signature", &req.signature, MAX_HEX_LEN)?;
        check_len("challenge", &req.challenge, MAX_CHALLENGE_LEN)?;
        let alg_name = req.algorithm.as_deref().unwrap_or("ML-DSA-65");
        let algorithm = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.inner.algorithms.contains(a))
            .ok_or_else(|| Error::UnsupportedAlgorithm(alg_name.chars().take(64).collect()))?;
        let public_key = decode_hex(&req.public_key)?;
        let signature = decode_hex(&req.signature)?;
        wallet::check_encoding(algorithm, &public_key, &signature).map_err(|e| {
            Error::MalformedWalletInput {
                what: if e == wallet::VerifyError::MalformedSignature {
                    "signature"
                } else {
                    "public_key"
                },
                algorithm: algorithm.as_str(),
            }
        })?;
        // The wallet id is the lower-case hex of the key: the address must
        // be exactly that (checked without encoding the key again).
        if !crate::hexcodec::is_lower_hex_of(&req.address, &public_key) {
            return Err(Error::AddressMismatch);
        }
        let wallet_id = req.address;

        if !self
            .inner
            .challenges
            .consume(&wallet_id, &req.challenge)
            .await?
        {
            return Err(Error::InvalidChallenge);
        }

        let now = self.inner.clock.now_secs();
        let access = AccessClaims {
            algorithm: Some(algorithm.as_str().to_string()),
            wallet_address: Some(wallet_id.clone()),
            ..self.access_claims(&wallet_id, "wallet", now)
        };
        let refresh = self.refresh_claims(&wallet_id, "wallet", None, now);
        let message = req.challenge.into_bytes();
        let pair = self
            .issue_pair(access, refresh, move || {
                wallet::verify(algorithm, &public_key, &message, &signature)
                    .map_err(Error::SignatureFailed)
            })
            .await?;
        Ok(SignInResponse {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            address: wallet_id,
            algorithm: algorithm.as_str(),
        })
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

    pub(super) fn refresh_claims(
        &self,
        sub: &str,
        role: &str,
        family: Option<String>,
        now: u64,
    ) -> RefreshClaims {
        let c = &self.inner.config;
        let jti = new_jti();
        RefreshClaims {
            iss: c.issuer.clone(),
            aud: c.audience.clone(),
            sub: sub.to_string(),
            iat: now,
            exp: now + c.refresh_token_expire_days * 86_400,
            fam: family.unwrap_or_else(|| jti.clone()),
            jti,
            role: Some(role.to_string()),
            token_type: "refresh".into(),
            auth_time: Some(now),
            gen: 0,
            pwv: None,
        }
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
    /// The records are announced before the mint starts, so that a group
    /// commit can wait for them, and queued by the CPU thread as soon as
    /// the mint is done ([`MintAuditStore::append_then`]); the request's
    /// task is woken once, when the audit is durable. A store that cannot
    /// append from the CPU thread gets an `append_announced` task instead.
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
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Internal(format!("no tokio runtime: {e}")))?;
        let announcement = self.inner.audit.announce();
        let audit = Arc::clone(&self.inner.audit);
        let (reply, answer) = oneshot::channel::<Result<(T, Result<(), StoreError>), Error>>();
        self.inner.cpu.submit(move || {
            let value = match mint() {
                Ok(value) => value,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return; // `announcement` ends here
                }
            };
            let append = AppendThen {
                records,
                announcement,
                done: Box::new(move |outcome| {
                    let _ = reply.send(Ok((value, outcome)));
                }),
            };
            if let Some(back) = audit.append_then(append) {
                runtime.spawn(async move {
                    let outcome = audit
                        .append_announced(back.records, back.announcement)
                        .await;
                    (back.done)(outcome);
                });
            }
        })?;
        let (value, audited) = answer
            .await
            .map_err(|_| Error::Internal("CPU-bound task failed".into()))??;
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
