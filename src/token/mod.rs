//! Token minting and validation: access and fleet tokens signed by a
//! [`SigningKey`] (RS256, or ML-DSA-65 per RFC 9964), HS256 refresh tokens
//! under a key JWKS never publishes.

mod claims;
mod keys;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use self::claims::{AccessClaims, RefreshClaims};
pub use self::keys::{Jwk, SigningAlgorithm, SigningKey, VerifyingKey, MIN_RSA_BITS};
use crate::clock::SharedClock;

/// Header `typ` of refresh tokens.
pub const REFRESH_TYP: &str = "refresh+jwt";

/// Why a token was refused. One variant per failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWS compact token, or undecodable parts.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not the one this kind uses.
    #[error("unexpected algorithm")]
    WrongAlgorithm,
    /// Header `typ` does not match the kind.
    #[error("wrong token type")]
    WrongType,
    /// `kid` names no key of ours.
    #[error("unknown key id")]
    UnknownKid,
    /// Signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` in the past.
    #[error("token expired")]
    Expired,
    /// `iss` mismatch.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` mismatch.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing or malformed.
    #[error("missing or malformed claims")]
    MissingClaims,
    /// The jti is on the denylist.
    #[error("token revoked")]
    Revoked,
    /// Signing failed (internal).
    #[error("signing failed")]
    Signing,
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => TokenError::BadSignature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::WrongAlgorithm,
            K::ExpiredSignature => TokenError::Expired,
            K::InvalidIssuer => TokenError::WrongIssuer,
            K::InvalidAudience => TokenError::WrongAudience,
            K::MissingRequiredClaim(_) | K::Json(_) => TokenError::MissingClaims,
            _ => TokenError::Malformed,
        }
    }
}

/// Longest token accepted for validation; longer ones are refused before
/// any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The header of the access and fleet tokens we sign, exactly
/// `{"alg":A,"typ":"JWT","kid":K}` in this order.
#[derive(Serialize)]
struct SignedHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// The members of a JWS header the Bearer checks read. A duplicate member
/// or a non-string `kid` does not parse.
#[derive(Deserialize)]
struct JwsHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// RFC 7515 4.1.11: we understand no extension, so a token that marks
    /// one critical is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// A published key, ready to verify: RS256 through jsonwebtoken,
/// ML-DSA-65 through our [`VerifyingKey`].
enum Verifier {
    Rs256(DecodingKey),
    MlDsa65(VerifyingKey),
}

impl Verifier {
    fn algorithm(&self) -> SigningAlgorithm {
        match self {
            Verifier::Rs256(_) => SigningAlgorithm::Rs256,
            Verifier::MlDsa65(_) => SigningAlgorithm::MlDsa65,
        }
    }

    fn of_key(key: &SigningKey) -> Self {
        match key.public_components() {
            Some((n, e)) => Verifier::Rs256(DecodingKey::from_rsa_raw_components(n, e)),
            None => Verifier::MlDsa65(key.verifying_key().clone()),
        }
    }

    fn of_jwk(jwk: &Jwk) -> Result<Self, crate::ConfigError> {
        // Checks members, encodings and sizes for either algorithm.
        let key = VerifyingKey::from_jwk(jwk)?;
        match (key.algorithm(), jwk.n.as_deref(), jwk.e.as_deref()) {
            (SigningAlgorithm::Rs256, Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e)
                .map(Verifier::Rs256)
                .map_err(|e| crate::ConfigError::SigningKey(e.to_string())),
            (SigningAlgorithm::MlDsa65, _, _) => Ok(Verifier::MlDsa65(key)),
            _ => Err(crate::ConfigError::SigningKey(format!(
                "JWK {:?}: not usable",
                jwk.kid
            ))),
        }
    }
}

/// One key that signs from `signs_from` (epoch seconds) on, with its
/// header ready to prepend.
struct Signer {
    signs_from: u64,
    key: Arc<SigningKey>,
    header_b64: String,
    /// The latest `exp` the key set has on record for this key (see
    /// [`ExpReserver`]); a token that expires later is recorded first.
    reserved: AtomicU64,
}

/// The keys in force: who signs when, and what verifies. Swapped whole on
/// a rotation, so minting and validating read one consistent set without a
/// lock.
struct KeyRing {
    /// Ascending `signs_from`; never empty.
    signers: Vec<Signer>,
    verify_keys: HashMap<String, Verifier>,
    jwks: Arc<[Jwk]>,
    /// `{"keys": [...]}`, serialized once per ring.
    jwks_body: Bytes,
}

impl KeyRing {
    /// The signer at `now`: the latest whose `signs_from` has come, or the
    /// earliest if none has (a clock behind the one that made the key).
    fn signer_at(&self, now: u64) -> &Signer {
        let mut chosen = &self.signers[0];
        for s in &self.signers[1..] {
            if s.signs_from <= now {
                chosen = s;
            }
        }
        chosen
    }
}

/// A key that signs from a point in time on, for [`TokenService::install`].
#[derive(Clone)]
pub struct ScheduledKey {
    /// When it starts signing (epoch seconds).
    pub signs_from: u64,
    /// The key.
    pub key: Arc<SigningKey>,
    /// The latest `exp` already on record for it.
    pub reserved_exp: u64,
}

impl std::fmt::Debug for ScheduledKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledKey")
            .field("kid", &self.key.kid())
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

/// Records, durably and before a token is released, the latest `exp`
/// signed by a key, so a retired key is never dropped from the JWKS while
/// a token it signed lives. Implemented by the key set.
pub(crate) trait ExpReserver: Send + Sync {
    /// Records that `kid` signs a token expiring at `exp`; returns the
    /// `exp` now on record (at least `exp`; more, so the next tokens need
    /// no write).
    fn reserve(&self, kid: &str, exp: u64) -> Result<u64, TokenError>;
}

/// Mints and validates the crate's tokens.
pub struct TokenService {
    ring: ArcSwap<KeyRing>,
    reserver: Option<Arc<dyn ExpReserver>>,
    /// HMAC key of derived token ids and tags: domain-separated from the
    /// refresh signing key it is derived from.
    tag_key: aws_lc_rs::hmac::Key,
    refresh_enc: EncodingKey,
    refresh_dec: DecodingKey,
    issuer: String,
    audience: String,
    /// Every audience this service mints for (`audience` first).
    audiences: Vec<String>,
    clock: SharedClock,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid())
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn header_b64_of(key: &SigningKey) -> String {
    let header = SignedHeader {
        alg: key.algorithm().name(),
        typ: "JWT",
        kid: key.kid(),
    };
    B64.encode(serde_json::to_vec(&header).unwrap_or_default())
}

/// The ring of `signers` (at least one), also publishing `published` keys
/// and the `extra` JWKs (e.g. [`with_retired_key`](crate::WalletAuthBuilder::with_retired_key)).
/// The JWKS lists the signer at `now` first.
fn build_ring(
    mut signers: Vec<ScheduledKey>,
    published: &[Arc<SigningKey>],
    extra: &[Jwk],
    now: u64,
) -> KeyRing {
    signers.sort_by_key(|s| s.signs_from);
    let signers: Vec<Signer> = signers
        .into_iter()
        .map(|s| Signer {
            signs_from: s.signs_from,
            header_b64: header_b64_of(&s.key),
            key: s.key,
            reserved: AtomicU64::new(s.reserved_exp),
        })
        .collect();
    let mut ring = KeyRing {
        signers,
        verify_keys: HashMap::new(),
        jwks: Arc::from(Vec::new()),
        jwks_body: Bytes::new(),
    };
    let mut jwks = Vec::new();
    let first = Arc::clone(&ring.signer_at(now).key);
    let all_keys = std::iter::once(&first)
        .chain(ring.signers.iter().map(|s| &s.key))
        .chain(published.iter());
    for key in all_keys {
        if ring.verify_keys.contains_key(key.kid()) {
            continue;
        }
        ring.verify_keys
            .insert(key.kid().to_string(), Verifier::of_key(key));
        jwks.push(key.jwk().clone());
    }
    for jwk in extra {
        if ring.verify_keys.contains_key(&jwk.kid) {
            continue;
        }
        match Verifier::of_jwk(jwk) {
            Ok(k) => {
                ring.verify_keys.insert(jwk.kid.clone(), k);
                jwks.push(jwk.clone());
            }
            Err(e) => tracing::warn!(kid = %jwk.kid, "retired key left out: {e}"),
        }
    }
    ring.jwks_body = match serde_json::to_vec(&serde_json::json!({ "keys": jwks })) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the JWKS");
            Bytes::new()
        }
    };
    ring.jwks = Arc::from(jwks);
    ring
}

/// A fresh token id: 16 random bytes as 32 lowercase hex.
///
/// # Panics
/// Only if the OS random source fails.
#[allow(clippy::expect_used)]
pub fn new_jti() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random source failed");
    crate::hexcodec::encode(&b)
}

/// Which token of a refresh family's generation [`TokenService::family_jti`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyToken {
    /// The access token minted with the generation's refresh token.
    Access,
    /// The generation's refresh token (generation 0's jti is the family id).
    Refresh,
}

impl TokenService {
    /// The jti of a family's token of generation `gen`: 32 lowercase hex of
    /// an HMAC-SHA256 under the unpublished refresh key, so the jtis a
    /// family minted can be named again when the family is revoked, and
    /// nobody without the key can predict them. Generation 0's refresh jti
    /// is the family id itself.
    pub fn family_jti(&self, fam: &str, gen: u64, which: FamilyToken) -> String {
        if gen == 0 && which == FamilyToken::Refresh {
            return fam.to_string();
        }
        let label: &[u8] = match which {
            FamilyToken::Access => b"access",
            FamilyToken::Refresh => b"refresh",
        };
        let tag = self.keyed_digest(&[b"family-jti", label, fam.as_bytes(), &gen.to_be_bytes()]);
        crate::hexcodec::encode(&tag[..16])
    }

    /// A short keyed digest of `value` under the refresh key, for a claim
    /// that must change when `value` does without revealing it (the
    /// admin's password version).
    pub fn keyed_tag(&self, label: &str, value: &[u8]) -> String {
        let tag = self.keyed_digest(&[b"tag", label.as_bytes(), value]);
        crate::hexcodec::encode(&tag[..8])
    }

    fn keyed_digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.tag_key);
        for part in parts {
            // Length-prefixed, so no two part lists give one input.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// A service signing with `active`, also accepting (and publishing) the
    /// `retired` public keys, e.g. after a rotation, or during a migration
    /// from RS256 to ML-DSA-65 (the keys may be of either algorithm). A
    /// retired JWK that names no usable key is left out, with a warning.
    pub fn new(
        active: Arc<SigningKey>,
        retired: &[Jwk],
        refresh_secret: &[u8],
        issuer: String,
        audience: String,
        clock: SharedClock,
    ) -> Self {
        let ring = build_ring(
            vec![ScheduledKey {
                signs_from: 0,
                key: active,
                reserved_exp: 0,
            }],
            &[],
            retired,
            clock.now_secs(),
        );
        Self {
            ring: ArcSwap::from_pointee(ring),
            reserver: None,
            tag_key: {
                use aws_lc_rs::hmac;
                let parent = hmac::Key::new(hmac::HMAC_SHA256, refresh_secret);
                let derived = hmac::sign(&parent, b"wallet-auth token-id and tag key v1");
                hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
            },
            refresh_enc: EncodingKey::from_secret(refresh_secret),
            refresh_dec: DecodingKey::from_secret(refresh_secret),
            issuer,
            audiences: vec![audience.clone()],
            audience,
            clock,
        }
    }

    /// Records every signed `exp` with `reserver` before the token is
    /// released (the key set).
    #[must_use]
    pub(crate) fn with_reserver(mut self, reserver: Arc<dyn ExpReserver>) -> Self {
        self.reserver = Some(reserver);
        self
    }

    /// Replaces the keys in force: `signers` (at least one; each signs from
    /// its `signs_from` on, the latest one due wins) and the further
    /// `published` keys that verify but no longer sign (retired). Minting
    /// and validating switch at once, without a lock; a call with no
    /// signer changes nothing.
    pub fn install(&self, signers: Vec<ScheduledKey>, published: &[Arc<SigningKey>]) {
        if signers.is_empty() {
            return;
        }
        let ring = build_ring(signers, published, &[], self.now());
        self.ring.store(Arc::new(ring));
    }

    /// Also mints for, and accepts where noted, these further audiences
    /// (SPEC 2: `audiences`); `audience` stays the default.
    #[must_use]
    pub fn with_audiences(mut self, audiences: &[String]) -> Self {
        for a in audiences {
            if !self.audiences.contains(a) {
                self.audiences.push(a.clone());
            }
        }
        self
    }

    /// Every audience this service mints for, the default first.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The keys served at `/jwks`: the signing key first, then the keys
    /// published beside it (next and retired).
    pub fn jwks(&self) -> Vec<Jwk> {
        self.ring.load().jwks.to_vec()
    }

    /// The `/jwks` body, `{"keys": [...]}` (empty if it did not serialize).
    pub(crate) fn jwks_body(&self) -> Bytes {
        self.ring.load().jwks_body.clone()
    }

    /// The key that signs now.
    pub fn active_key(&self) -> Arc<SigningKey> {
        Arc::clone(&self.ring.load().signer_at(self.now()).key)
    }

    /// The `kid` of the key that signs now.
    pub fn kid(&self) -> String {
        self.ring.load().signer_at(self.now()).key.kid().to_string()
    }

    /// The algorithm of the key that signs now: the `alg` of every access
    /// and fleet token minted.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.ring.load().signer_at(self.now()).key.algorithm()
    }

    /// The algorithms of the published keys: exactly those the Bearer
    /// checks accept.
    pub fn published_algorithms(&self) -> Vec<SigningAlgorithm> {
        let mut algs: Vec<SigningAlgorithm> = Vec::new();
        for v in self.ring.load().verify_keys.values() {
            if !algs.contains(&v.algorithm()) {
                algs.push(v.algorithm());
            }
        }
        algs
    }

    /// Issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Now, in epoch seconds, from the service's clock.
    pub fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    /// Signs access claims as a JWS of the active key's algorithm (RS256 or
    /// ML-DSA-65). CPU-heavy (~1 ms): call it off the async worker threads.
    ///
    /// # Errors
    /// [`TokenError::Signing`] if the signature cannot be made.
    pub fn sign_access(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
        let ring = self.ring.load();
        let signer = ring.signer_at(self.now());
        if let Some(reserver) = &self.reserver {
            // The key set records this exp before the token exists, so the
            // key stays published while the token lives (one write per
            // stretch of tokens, not per token).
            if claims.exp > signer.reserved.load(Ordering::Acquire) {
                let on_record = reserver.reserve(signer.key.kid(), claims.exp)?;
                signer.reserved.fetch_max(on_record, Ordering::AcqRel);
            }
        }
        let mut out = String::with_capacity(
            signer.header_b64.len() + (payload.len() + signer.key.signature_len()) * 4 / 3 + 8,
        );
        out.push_str(&signer.header_b64);
        out.push('.');
        B64.encode_string(&payload, &mut out);
        let sig = signer.key.sign(out.as_bytes())?;
        out.push('.');
        B64.encode_string(&sig, &mut out);
        Ok(out)
    }

    /// Signs refresh claims (HS256, header `typ` = `refresh+jwt`).
    ///
    /// # Errors
    /// [`TokenError::Signing`] if the signature cannot be made.
    pub fn sign_refresh(&self, claims: &RefreshClaims) -> Result<String, TokenError> {
        let mut header = Header::new(JwtAlg::HS256);
        header.typ = Some(REFRESH_TYP.into());
        jsonwebtoken::encode(&header, claims, &self.refresh_enc).map_err(|_| TokenError::Signing)
    }

    fn validation(&self, alg: JwtAlg, any_audience: bool) -> Validation {
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        if any_audience {
            v.set_audience(&self.audiences);
        } else {
            v.set_audience(&[&self.audience]);
        }
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against our own clock below.
        v.validate_exp = false;
        v.leeway = 0;
        v
    }

    fn check_exp(&self, exp: u64) -> Result<(), TokenError> {
        if exp <= self.now() {
            Err(TokenError::Expired)
        } else {
            Ok(())
        }
    }

    /// Validates an access token: an `alg` of the keys we publish (RS256,
    /// ML-DSA-65; never `none` nor an HMAC), one of our `kid`s whose key is
    /// of exactly that `alg`, signature, `iss`, `aud`, `exp`, header `typ`
    /// not a refresh type and no `type` claim. The denylist is the
    /// caller's check.
    ///
    /// # Errors
    /// The [`TokenError`] of the first failed check.
    pub fn validate_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.validate_access_for(token, false)
    }

    /// As [`validate_access`](Self::validate_access), accepting a token
    /// minted for any of this service's [`audiences`](Self::audiences) (the
    /// router's own gated routes accept every audience it mints for).
    ///
    /// # Errors
    /// The [`TokenError`] of the first failed check.
    pub fn validate_access_any_audience(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.validate_access_for(token, true)
    }

    fn validate_access_for(
        &self,
        token: &str,
        any_audience: bool,
    ) -> Result<AccessClaims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (header_b64, _) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let header_json = B64.decode(header_b64).map_err(|_| TokenError::Malformed)?;
        let header: JwsHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        let alg = SigningAlgorithm::from_name(&header.alg).ok_or(TokenError::WrongAlgorithm)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::WrongType);
        }
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKid)?;
        let ring = self.ring.load();
        let key = ring.verify_keys.get(kid).ok_or(TokenError::UnknownKid)?;
        // The header's alg must be the key's: no RS256 under an ML-DSA kid.
        if key.algorithm() != alg {
            return Err(TokenError::WrongAlgorithm);
        }
        let claims = match key {
            Verifier::Rs256(key) => {
                jsonwebtoken::decode::<AccessClaims>(
                    token,
                    key,
                    &self.validation(JwtAlg::RS256, any_audience),
                )?
                .claims
            }
            Verifier::MlDsa65(key) => self.decode_ml_dsa_65(token, key, any_audience)?,
        };
        if claims.token_type.is_some() {
            return Err(TokenError::WrongType);
        }
        if claims.jti.is_empty() {
            return Err(TokenError::MissingClaims);
        }
        self.check_exp(claims.exp)?;
        Ok(claims)
    }

    /// Verifies an ML-DSA-65 JWS (pure, empty context, over the ASCII
    /// signing input), then decodes its claims and checks `iss` and `aud`,
    /// as the RS256 path's validation does.
    fn decode_ml_dsa_65(
        &self,
        token: &str,
        key: &VerifyingKey,
        any_audience: bool,
    ) -> Result<AccessClaims, TokenError> {
        let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (_, payload_b64) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        if payload_b64.contains('.') {
            return Err(TokenError::Malformed);
        }
        let sig = B64.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
        key.verify(signing_input.as_bytes(), &sig)?;
        let payload = B64.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let claims: AccessClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::MissingClaims)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let aud_ok = if any_audience {
            self.audiences.contains(&claims.aud)
        } else {
            claims.aud == self.audience
        };
        if !aud_ok {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }

    /// Validates a refresh token: HS256 under the refresh key, header `typ`
    /// `refresh+jwt`, `type` = `refresh`, `iss`, `aud` (any of
    /// [`audiences`](Self::audiences): a refresh token carries its session's
    /// audience), `exp`. The denylist and one-time use are the caller's
    /// checks.
    ///
    /// # Errors
    /// The [`TokenError`] of the first failed check.
    pub fn validate_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != JwtAlg::HS256 {
            return Err(TokenError::WrongAlgorithm);
        }
        if header.typ.as_deref() != Some(REFRESH_TYP) {
            return Err(TokenError::WrongType);
        }
        let data = jsonwebtoken::decode::<RefreshClaims>(
            token,
            &self.refresh_dec,
            &self.validation(JwtAlg::HS256, true),
        )?;
        let claims = data.claims;
        if claims.token_type != "refresh" {
            return Err(TokenError::WrongType);
        }
        if claims.jti.is_empty() || claims.fam.is_empty() {
            return Err(TokenError::MissingClaims);
        }
        self.check_exp(claims.exp)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn service(secret: &[u8]) -> TokenService {
        let key = Arc::new(SigningKey::generate(2048).unwrap());
        TokenService::new(
            key,
            &[],
            secret,
            "iss".into(),
            "aud".into(),
            Arc::new(SystemClock),
        )
    }

    #[test]
    fn family_jtis_are_stable_distinct_and_keyed() {
        let a = service(b"secret one");
        let fam = new_jti();
        assert_eq!(a.family_jti(&fam, 0, FamilyToken::Refresh), fam);
        let access0 = a.family_jti(&fam, 0, FamilyToken::Access);
        let refresh1 = a.family_jti(&fam, 1, FamilyToken::Refresh);
        let access1 = a.family_jti(&fam, 1, FamilyToken::Access);
        for jti in [&access0, &refresh1, &access1] {
            assert_eq!(jti.len(), 32);
            assert!(jti
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        let all = [&fam, &access0, &refresh1, &access1];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // Same inputs, same id; another key, another id.
        assert_eq!(a.family_jti(&fam, 1, FamilyToken::Access), access1);
        let b = service(b"secret two");
        assert_ne!(b.family_jti(&fam, 1, FamilyToken::Access), access1);
        assert_ne!(a.keyed_tag("pwv", b"one"), a.keyed_tag("pwv", b"two"));
        assert_eq!(a.keyed_tag("pwv", b"one"), a.keyed_tag("pwv", b"one"));
        assert_ne!(a.keyed_tag("pwv", b"one"), b.keyed_tag("pwv", b"one"));
    }
}
