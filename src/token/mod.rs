//! Token minting and validation: RS256 access tokens signed by a
//! [`SigningKey`], HS256 refresh tokens under a key JWKS never publishes.

mod claims;
mod keys;

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;

pub use self::claims::{AccessClaims, RefreshClaims};
pub use self::keys::{Jwk, SigningKey, MIN_RSA_BITS};
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

#[derive(Serialize)]
struct RsHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Mints and validates the crate's tokens.
pub struct TokenService {
    active: Arc<SigningKey>,
    verify_keys: HashMap<String, DecodingKey>,
    jwks: Vec<Jwk>,
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
    header_b64: String,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("kid", &self.active.kid())
            .field("issuer", &self.issuer)
            .finish()
    }
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
    /// `retired` public keys, e.g. after a rotation.
    pub fn new(
        active: Arc<SigningKey>,
        retired: &[Jwk],
        refresh_secret: &[u8],
        issuer: String,
        audience: String,
        clock: SharedClock,
    ) -> Self {
        let mut verify_keys = HashMap::new();
        let mut jwks = vec![active.jwk().clone()];
        let (n, e) = active.public_components();
        verify_keys.insert(
            active.kid().to_string(),
            DecodingKey::from_rsa_raw_components(n, e),
        );
        for jwk in retired {
            if verify_keys.contains_key(&jwk.kid) {
                continue;
            }
            if let Ok(k) = DecodingKey::from_rsa_components(&jwk.n, &jwk.e) {
                verify_keys.insert(jwk.kid.clone(), k);
                jwks.push(jwk.clone());
            }
        }
        let header = RsHeader {
            alg: "RS256",
            typ: "JWT",
            kid: active.kid(),
        };
        let header_b64 = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        Self {
            active,
            verify_keys,
            jwks,
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
            header_b64,
        }
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

    /// The keys served at `/jwks`.
    pub fn jwks(&self) -> &[Jwk] {
        &self.jwks
    }

    /// The `kid` of the active key.
    pub fn kid(&self) -> &str {
        self.active.kid()
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

    /// Signs access claims as an RS256 JWS. CPU-heavy (~1 ms): call it off
    /// the async worker threads.
    ///
    /// # Errors
    /// [`TokenError::Signing`] if the signature cannot be made.
    pub fn sign_access(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 360);
        out.push_str(&self.header_b64);
        out.push('.');
        B64.encode_string(&payload, &mut out);
        let sig = self
            .active
            .sign_rs256(out.as_bytes())
            .map_err(|_| TokenError::Signing)?;
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

    /// Validates an access token: RS256 only, one of our `kid`s, signature,
    /// `iss`, `aud`, `exp`, header `typ` not a refresh type and no `type`
    /// claim. The denylist is the caller's check.
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
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != JwtAlg::RS256 {
            return Err(TokenError::WrongAlgorithm);
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKid)?;
        let key = self.verify_keys.get(kid).ok_or(TokenError::UnknownKid)?;
        let data = jsonwebtoken::decode::<AccessClaims>(
            token,
            key,
            &self.validation(JwtAlg::RS256, any_audience),
        )?;
        let claims = data.claims;
        if claims.token_type.is_some() {
            return Err(TokenError::WrongType);
        }
        if claims.jti.is_empty() {
            return Err(TokenError::MissingClaims);
        }
        self.check_exp(claims.exp)?;
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
