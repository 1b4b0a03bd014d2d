//! Challenges and wallet sign-in (SPEC 1 `POST /challenge`, `POST /sign-in`).

use std::time::Duration;

use serde::Serialize;

use super::mint::Session;
use super::{check_len, WalletAuth, MAX_ADDRESS_LEN, MAX_CHALLENGE_LEN, MAX_HEX_LEN};
use crate::token::AccessClaims;
use crate::wallet::{self, Algorithm};
use crate::Error;

/// A sign-in request (SPEC 1, `POST /sign-in`).
#[derive(Debug, Clone, Default)]
pub struct SignInRequest {
    /// Address the challenge was issued for.
    pub address: String,
    /// Hex public key.
    pub public_key: String,
    /// Hex signature over the challenge.
    pub signature: String,
    /// The challenge as issued.
    pub challenge: String,
    /// Algorithm name; `None` means `ML-DSA-65`.
    pub algorithm: Option<String>,
    /// The audience the tokens are for (SPEC 2); `None` means `audience`.
    pub audience: Option<String>,
}

/// A successful sign-in.
#[derive(Debug, Clone, Serialize)]
pub struct SignInResponse {
    /// RS256 access token.
    pub access_token: String,
    /// Refresh token (opaque to clients).
    pub refresh_token: String,
    /// The wallet id.
    pub address: String,
    /// The algorithm used.
    pub algorithm: &'static str,
}

fn decode_hex(s: &str) -> Result<Vec<u8>, Error> {
    crate::hexcodec::decode(s).ok_or(Error::InvalidHex)
}

impl WalletAuth {
    /// Issues a challenge for `address`; returns it and its TTL in seconds.
    ///
    /// The first challenge issued inside a tokio runtime starts the sweep of
    /// expired challenges, if [`build`](crate::WalletAuthBuilder::build) ran
    /// outside one.
    ///
    /// # Errors
    /// `AddressRequired`, `FieldTooLong`, `ChallengesFull`, `Unavailable`.
    pub async fn issue_challenge(&self, address: &str) -> Result<(String, u64), Error> {
        if address.is_empty() {
            return Err(Error::AddressRequired);
        }
        check_len("address", address, MAX_ADDRESS_LEN)?;
        self.inner.sweeper.ensure_started(&self.inner);
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
            .ok_or_else(|| Error::unsupported_algorithm(alg_name))?;
        let aud = self.audience_for(req.audience.as_deref())?;
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
        let (access, refresh) =
            self.session_pair(&Session::begin(&wallet_id, "wallet", now, None, aud), now);
        let access = AccessClaims {
            algorithm: Some(algorithm.as_str().to_string()),
            wallet_address: Some(wallet_id.clone()),
            ..access
        };
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
}
