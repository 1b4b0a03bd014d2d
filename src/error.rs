//! The crate's error types.

/// A configuration or start-up failure; names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value the crate refuses.
    #[error("invalid config `{field}`: {reason}")]
    Invalid {
        /// The field name, as in SPEC section 5.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The signing key could not be loaded or is too weak.
    #[error("signing key: {0}")]
    SigningKey(String),
    /// A store could not be opened.
    #[error("store `{field}`: {source}")]
    Store {
        /// The config field naming the store.
        field: &'static str,
        /// The underlying failure.
        #[source]
        source: crate::StoreError,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A failure of a store backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is at capacity; try again later.
    #[error("store full")]
    Full {
        /// Suggested wait before retrying, in seconds.
        retry_after_secs: u64,
    },
    /// The backend cannot be reached or cannot promise durability now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An I/O failure.
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Any other backend failure.
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Every way a request can fail; [`crate::http`] maps each to one status and
/// `detail` (SPEC section 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request body is not a JSON object, or a field has the wrong type.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is over [`MAX_BODY_BYTES`](crate::http::MAX_BODY_BYTES).
    #[error("request body too large (max {} bytes)", crate::http::MAX_BODY_BYTES)]
    BodyTooLarge,
    /// A JSON body sent without a JSON `Content-Type` (SPEC 1).
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// The request body did not arrive within the server's body deadline
    /// ([`ServeOptions::body_read_timeout`](crate::http::ServeOptions::body_read_timeout)).
    #[error("request body not received in time")]
    BodyTimedOut,
    /// `/challenge` without a usable address.
    #[error("address required")]
    AddressRequired,
    /// A field longer than its limit.
    #[error("{field} too long (max {max} characters)")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// `/sign-in` missing one of its four required fields.
    #[error("address, public_key, signature, and challenge required")]
    SignInFieldsRequired,
    /// `public_key` or `signature` is not hex.
    #[error("invalid hex encoding")]
    InvalidHex,
    /// The algorithm is unknown or not enabled.
    #[error("unsupported wallet algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// Public key or signature has the wrong length or encoding.
    #[error("invalid {what} for {algorithm}")]
    MalformedWalletInput {
        /// `public_key` or `signature`.
        what: &'static str,
        /// The algorithm.
        algorithm: &'static str,
    },
    /// An `eip191` or `solana` address that does not parse (SPEC 9).
    #[error("invalid address for {algorithm}: {reason}")]
    MalformedAddress {
        /// The algorithm.
        algorithm: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `eip191` challenge naming a chain id outside `chain_ids`.
    #[error("chain id not allowed: {0}")]
    ChainIdNotAllowed(u64),
    /// An `eip191` or `solana` signature of the wrong length or encoding,
    /// or an `eip191` `v` that is not 27, 28, 0 or 1.
    #[error("invalid signature for {algorithm}: {reason}")]
    MalformedSignature {
        /// The algorithm.
        algorithm: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A sign-in without the `message` its algorithm (or
    /// `require_signed_message`) requires.
    #[error("message required: {0}")]
    MessageRequired(&'static str),
    /// The presented `message` is not, byte for byte, the one issued with
    /// the challenge (or it has expired).
    #[error("message does not match the issued challenge")]
    MessageMismatch,
    /// An `eip191` signature not made by the address's key, with no
    /// [`ContractWalletVerifier`](crate::ContractWalletVerifier) to ask.
    #[error(
        "signature verification failed: not signed by the key of this address, \
         and contract-wallet (EIP-1271) signatures are not verified by this server"
    )]
    ContractWalletUnsupported,
    /// Challenge unknown, expired, used, or for another address.
    #[error("invalid or expired challenge")]
    InvalidChallenge,
    /// The signature does not verify.
    #[error("signature verification failed")]
    SignatureFailed(#[source] crate::wallet::VerifyError),
    /// `address` is not the wallet id of the verified key.
    #[error("address does not match verified public key")]
    AddressMismatch,
    /// `/refresh` without a token.
    #[error("refresh_token required")]
    RefreshRequired,
    /// The refresh token has expired.
    #[error("refresh expired")]
    RefreshExpired,
    /// The refresh token is refused.
    #[error("refresh invalid: {0}")]
    RefreshInvalid(String),
    /// `/login` while admin bootstrap is off.
    #[error("password login disabled")]
    LoginDisabled,
    /// Wrong email or password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failed attempts.
    #[error("too many failed attempts; retry later")]
    TooManyAttempts {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// A rate limit (per client IP, or per refresh family) is spent.
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds until the bucket admits a request again.
        retry_after_secs: u64,
    },
    /// `/fleet/sessions` with no secret configured.
    #[error("not found")]
    FleetDisabled,
    /// Missing or wrong `X-Fleet-Secret`.
    #[error("invalid X-Fleet-Secret")]
    FleetSecretInvalid,
    /// A required fleet field is missing or empty.
    #[error("{0} required")]
    FieldRequired(&'static str),
    /// Fleet role outside `fleet_allowed_roles`.
    #[error("role not allowed: {0}")]
    RoleNotAllowed(String),
    /// No or invalid Bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid token, wrong role.
    #[error("insufficient role")]
    Forbidden,
    /// `/revoke` without a jti.
    #[error("jti required")]
    JtiRequired,
    /// `/revoke` with an `exp` at or before now: the entry would never
    /// reach consumers.
    #[error("exp is in the past")]
    ExpInPast,
    /// The challenge store is full.
    #[error("too many outstanding challenges; retry later")]
    ChallengesFull {
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// Too much expensive work is queued.
    #[error("server busy; retry later")]
    Overloaded,
    /// A store cannot be reached or cannot promise durability.
    #[error("service unavailable")]
    Unavailable(#[source] StoreError),
    /// A bug or an unexpected failure; the cause is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// `UnsupportedAlgorithm` showing at most 64 characters of what the
    /// client sent, so a huge value is not echoed back.
    pub(crate) fn unsupported_algorithm(shown: &str) -> Self {
        Self::UnsupportedAlgorithm(shown.chars().take(64).collect())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full { retry_after_secs } => Error::ChallengesFull { retry_after_secs },
            other => Error::Unavailable(other),
        }
    }
}
