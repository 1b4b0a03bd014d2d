//! Challenges and wallet sign-in (SPEC 1 `POST /challenge`, `POST /sign-in`,
//! and the domain-bound messages of SPEC 9).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::mint::Session;
use super::{check_len, WalletAuth, MAX_ADDRESS_LEN, MAX_CHALLENGE_LEN, MAX_HEX_LEN};
use crate::challenge::ChallengeMeta;
use crate::message::Layout;
use crate::token::AccessClaims;
use crate::wallet::{self, eip191, solana, Algorithm, ContractWalletVerifier, VerifyError};
use crate::Error;

/// Longest accepted `message`: the longest address and the configured
/// parts of the text fit well inside it.
pub const MAX_MESSAGE_LEN: usize = MAX_ADDRESS_LEN + 4096;

/// A challenge request (SPEC 1 `POST /challenge`, SPEC 9).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChallengeRequest<'a> {
    /// The wallet's address: its wallet id for the pico algorithms, `0x…`
    /// (lower case or EIP-55) for `eip191`, base58 for `solana`.
    pub address: &'a str,
    /// The algorithm the wallet will sign with; it picks the message's
    /// text. `None`: the pico layout naming "your wallet key".
    pub algorithm: Option<&'a str>,
    /// The EIP-155 chain id of an `eip191` message; `None` is the first of
    /// `chain_ids`.
    pub chain_id: Option<u64>,
}

/// An issued challenge: `/challenge`'s reply.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedChallenge {
    /// The nonce (64 lowercase hex characters).
    pub challenge: String,
    /// Seconds it stays valid.
    pub ttl: u64,
    /// The domain-bound text a wallet signs instead of the bare nonce.
    pub message: String,
}

/// A sign-in request (SPEC 1, `POST /sign-in`).
#[derive(Debug, Clone, Default)]
pub struct SignInRequest {
    /// Address the challenge was issued for.
    pub address: String,
    /// Hex public key (pico algorithms; `eip191` and `solana` have none).
    pub public_key: String,
    /// Hex signature over the challenge (or the message); for `solana`
    /// also base58.
    pub signature: String,
    /// The challenge as issued.
    pub challenge: String,
    /// Algorithm name; `None` means `ML-DSA-65`.
    pub algorithm: Option<String>,
    /// The message issued with the challenge, signed instead of the nonce
    /// (SPEC 9); required for `eip191` and `solana`.
    pub message: Option<String>,
    /// The audience the tokens are for (SPEC 2); `None` means `audience`.
    pub audience: Option<String>,
}

/// A successful sign-in.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// What a sign-in verifies once its request has been checked: the wallet
/// id, the key (or address) to verify against, and the signature.
struct Wallet<'a> {
    id: Cow<'a, str>,
    key: Vec<u8>,
    signature: Vec<u8>,
}

const EIP191_LENGTH: &str = "expected 65 bytes (r, s, v) as 130 hex digits; \
                             contract-wallet (EIP-1271) signatures are not verified by this server";

impl WalletAuth {
    /// Issues a challenge for `address` (no algorithm named); returns it
    /// and its TTL in seconds. See [`challenge`](Self::challenge) for the
    /// message too.
    ///
    /// The first challenge issued inside a tokio runtime starts the sweep of
    /// expired challenges, if [`build`](crate::WalletAuthBuilder::build) ran
    /// outside one.
    ///
    /// # Errors
    /// `AddressRequired`, `FieldTooLong`, `ChallengesFull`, `Unavailable`.
    pub async fn issue_challenge(&self, address: &str) -> Result<(String, u64), Error> {
        let issued = self
            .challenge(ChallengeRequest {
                address,
                ..ChallengeRequest::default()
            })
            .await?;
        Ok((issued.challenge, issued.ttl))
    }

    /// Issues a challenge and its domain-bound message (SPEC 1, 9).
    ///
    /// # Errors
    /// `AddressRequired`, `FieldTooLong`, `UnsupportedAlgorithm`,
    /// `MalformedAddress` (an `eip191` or `solana` address that does not
    /// parse), `ChainIdNotAllowed`, `BadRequest` (a `chain_id` for another
    /// algorithm), `ChallengesFull`, `Unavailable`.
    pub async fn challenge(&self, req: ChallengeRequest<'_>) -> Result<IssuedChallenge, Error> {
        if req.address.is_empty() {
            return Err(Error::AddressRequired);
        }
        check_len("address", req.address, MAX_ADDRESS_LEN)?;
        let algorithm = match req.algorithm {
            None => None,
            Some(name) => Some(self.enabled_algorithm(name)?),
        };
        let chain_ids = &self.inner.config.chain_ids;
        let (address, chain_id) = match algorithm {
            Some(Algorithm::Eip191) => {
                let bytes = parse_eth_address(req.address)?;
                let chain_id = req
                    .chain_id
                    .unwrap_or_else(|| chain_ids.first().copied().unwrap_or(1));
                if !chain_ids.contains(&chain_id) {
                    return Err(Error::ChainIdNotAllowed(chain_id));
                }
                (Cow::Owned(eip191::checksum_address(&bytes)), chain_id)
            }
            _ if req.chain_id.is_some() => {
                return Err(Error::BadRequest(
                    "chain_id applies only to algorithm eip191".into(),
                ))
            }
            Some(Algorithm::Solana) => {
                parse_solana_address(req.address)?;
                (Cow::Borrowed(req.address), 0)
            }
            _ => (Cow::Borrowed(req.address), 0),
        };
        self.inner.sweeper.ensure_started(&self.inner);
        let ttl = self.inner.config.challenge_ttl_seconds;
        let meta = ChallengeMeta::new(
            Layout::for_algorithm(algorithm),
            self.inner.clock.now_secs(),
            ttl,
            chain_id,
        );
        let nonce = self
            .inner
            .challenges
            .issue_with(&address, Duration::from_secs(ttl), meta)
            .await?;
        if let Some(m) = &self.inner.metrics {
            m.challenge_issued();
        }
        let message = self.inner.messages.render(&meta, &address, &nonce);
        Ok(IssuedChallenge {
            challenge: nonce,
            ttl,
            message,
        })
    }

    /// `name` as an algorithm this router accepts.
    fn enabled_algorithm(&self, name: &str) -> Result<Algorithm, Error> {
        name.parse::<Algorithm>()
            .ok()
            .filter(|a| self.inner.algorithms.contains(a))
            .ok_or_else(|| Error::unsupported_algorithm(name))
    }

    /// Verifies a wallet's signature over its challenge (or the message
    /// issued with it) and mints tokens.
    ///
    /// Malformed requests (fields, hex, algorithm, lengths, an address that
    /// is not the key's wallet id, a signature of the wrong length) are
    /// refused before the challenge is consumed; after that, every attempt
    /// burns it, a `message` that is not the issued one included.
    ///
    /// # Errors
    /// See SPEC 1 `POST /sign-in` and SPEC 9.
    pub async fn sign_in(&self, req: SignInRequest) -> Result<SignInResponse, Error> {
        let Some(metrics) = self.inner.metrics.clone() else {
            return self.sign_in_unmetered(req).await;
        };
        let algorithm = req
            .algorithm
            .as_deref()
            .unwrap_or("ML-DSA-65")
            .parse::<Algorithm>()
            .ok();
        let outcome = self.sign_in_unmetered(req).await;
        metrics.sign_in(algorithm, crate::ops::metrics::SignInResult::of(&outcome));
        outcome
    }

    async fn sign_in_unmetered(&self, req: SignInRequest) -> Result<SignInResponse, Error> {
        let alg_name = req.algorithm.as_deref().unwrap_or("ML-DSA-65");
        let account = alg_name.parse::<Algorithm>().is_ok_and(|a| !a.is_pico());
        if account {
            if req.address.is_empty()
                || req.signature.is_empty()
                || req.challenge.is_empty()
                || req.message.as_deref().is_none_or(str::is_empty)
            {
                return Err(Error::FieldRequired(
                    "address, signature, challenge, and message",
                ));
            }
        } else if req.address.is_empty()
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
        let aud = self.audience_for(req.audience.as_deref())?;
        if let Some(message) = &req.message {
            check_len("message", message, MAX_MESSAGE_LEN)?;
        }
        let algorithm = self.enabled_algorithm(alg_name)?;
        if req.message.is_none() && self.inner.config.require_signed_message {
            return Err(Error::MessageRequired(
                "this server signs in only with the message issued with the challenge",
            ));
        }
        let contracts = self.inner.contract_wallets.clone();
        let wallet = match algorithm {
            Algorithm::Eip191 => eip191_wallet(&req, contracts.is_some())?,
            Algorithm::Solana => solana_wallet(&req)?,
            _ => pico_wallet(&req, algorithm)?,
        };

        let Wallet { id, key, signature } = wallet;
        let Some(meta) = self.inner.challenges.take(&id, &req.challenge).await? else {
            return Err(Error::InvalidChallenge);
        };
        let now = self.inner.clock.now_secs();
        if let Some(message) = &req.message {
            if now >= meta.expires_at() {
                return Err(Error::InvalidChallenge);
            }
            let matches = meta.layout().is_some_and(|l| l.admits(algorithm))
                && self
                    .inner
                    .messages
                    .matches(message, &meta, &id, &req.challenge);
            if !matches {
                return Err(Error::MessageMismatch);
            }
        }

        let wallet_id = id.into_owned();
        let (access, refresh) =
            self.session_pair(&Session::begin(&wallet_id, "wallet", now, None, aud), now);
        let access = AccessClaims {
            algorithm: Some(algorithm.as_str().to_string()),
            wallet_address: Some(wallet_id.clone()),
            chain_id: (algorithm == Algorithm::Eip191).then_some(meta.chain_id()),
            ..access
        };
        let signed = req.message.unwrap_or(req.challenge).into_bytes();
        let pair = match (algorithm, contracts) {
            (Algorithm::Eip191, Some(contracts)) => {
                self.verify_eip191_or_contract(contracts, meta.chain_id(), key, signed, signature)
                    .await?;
                self.issue_pair(access, refresh, || Ok(())).await?
            }
            _ => {
                self.issue_pair(access, refresh, move || {
                    wallet::verify(algorithm, &key, &signed, &signature)
                        .map_err(|e| signature_error(algorithm, e))
                })
                .await?
            }
        };
        Ok(SignInResponse {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            address: wallet_id,
            algorithm: algorithm.as_str(),
        })
    }

    /// An `eip191` signature with a [`ContractWalletVerifier`]: an EOA
    /// signature by the address's key passes; anything else is the
    /// contract's to accept.
    async fn verify_eip191_or_contract(
        &self,
        contracts: Arc<dyn ContractWalletVerifier>,
        chain_id: u64,
        address: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<(), Error> {
        // The EOA check first, on the CPU pool; what it refuses goes to the contract.
        let refused = self
            .run_cpu(
                move || match eip191::verify(&address, &message, &signature) {
                    Ok(()) => None,
                    Err(_) => Some((address, message, signature)),
                },
            )
            .await?;
        let Some((address, message, signature)) = refused else {
            return Ok(());
        };
        let address: [u8; eip191::ADDRESS_LEN] = address
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("eip191 address is not 20 bytes".into()))?;
        let hash = eip191::personal_message_hash(&message);
        if contracts
            .is_valid_signature(chain_id, &address, &hash, &signature)
            .await?
        {
            Ok(())
        } else {
            Err(Error::SignatureFailed(VerifyError::BadSignature))
        }
    }
}

/// The error of a signature that did not verify.
fn signature_error(algorithm: Algorithm, e: VerifyError) -> Error {
    if algorithm == Algorithm::Eip191 && e == VerifyError::BadSignature {
        Error::ContractWalletUnsupported
    } else {
        Error::SignatureFailed(e)
    }
}

fn parse_eth_address(address: &str) -> Result<[u8; eip191::ADDRESS_LEN], Error> {
    eip191::parse_address(address).map_err(|e| Error::MalformedAddress {
        algorithm: "eip191",
        reason: match e {
            eip191::AddressError::BadChecksum => {
                "mixed case that is not its EIP-55 checksum (send it in lower case or EIP-55)"
            }
            _ => "expected 0x and 40 hex digits",
        },
    })
}

fn parse_solana_address(address: &str) -> Result<[u8; solana::PUBLIC_KEY_LEN], Error> {
    let malformed = || Error::MalformedAddress {
        algorithm: "solana",
        reason: "expected the base58 of a 32-byte Ed25519 public key",
    };
    solana::parse_address(address)
        .filter(solana::is_canonical_key)
        .ok_or_else(malformed)
}

/// The pico algorithms: hex key and signature, the wallet id the key's hex.
fn pico_wallet(req: &SignInRequest, algorithm: Algorithm) -> Result<Wallet<'_>, Error> {
    let public_key = decode_hex(&req.public_key)?;
    let signature = decode_hex(&req.signature)?;
    wallet::check_encoding(algorithm, &public_key, &signature).map_err(|e| {
        Error::MalformedWalletInput {
            what: if e == VerifyError::MalformedSignature {
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
    Ok(Wallet {
        id: Cow::Borrowed(req.address.as_str()),
        key: public_key,
        signature,
    })
}

/// `eip191`: the address (lower case or EIP-55), a `0x`-hex signature of 65
/// bytes with `v` 27/28/0/1 (any length when contract wallets are verified).
fn eip191_wallet(req: &SignInRequest, contracts: bool) -> Result<Wallet<'static>, Error> {
    let address = parse_eth_address(&req.address)?;
    let signature = decode_hex(req.signature.strip_prefix("0x").unwrap_or(&req.signature))?;
    if !contracts {
        if signature.len() != eip191::SIGNATURE_LEN {
            return Err(Error::MalformedSignature {
                algorithm: "eip191",
                reason: format!("{EIP191_LENGTH}; got {} bytes", signature.len()),
            });
        }
        let v = signature[eip191::SIGNATURE_LEN - 1];
        if eip191::recovery_id(v).is_none() {
            return Err(Error::MalformedSignature {
                algorithm: "eip191",
                reason: format!("v must be 27, 28, 0 or 1, got {v}"),
            });
        }
    }
    Ok(Wallet {
        id: Cow::Owned(eip191::checksum_address(&address)),
        key: address.to_vec(),
        signature,
    })
}

/// `solana`: the base58 address is the key; the signature is hex or base58.
fn solana_wallet(req: &SignInRequest) -> Result<Wallet<'_>, Error> {
    let key = parse_solana_address(&req.address)?;
    let signature =
        solana::parse_signature(&req.signature).ok_or_else(|| Error::MalformedSignature {
            algorithm: "solana",
            reason: "expected 64 bytes as 128 hex digits or base58".into(),
        })?;
    Ok(Wallet {
        id: Cow::Borrowed(req.address.as_str()),
        key: key.to_vec(),
        signature: signature.to_vec(),
    })
}
