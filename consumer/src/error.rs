//! Why a token was refused, and what the service is told about each
//! decision.

use std::fmt;

use crate::Claims;

/// The typed reason of a refusal.
///
/// ```
/// use wallet_auth_consumer::Reason;
/// assert_eq!(Reason::Revoked.as_str(), "revoked");
/// assert_eq!(Reason::Stale.status(), 503);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Past its `exp` (plus the leeway).
    Expired,
    /// Missing, malformed, badly signed, wrong `iss`/`aud`/algorithm, not
    /// yet valid, or signed by an unknown key.
    Invalid,
    /// Its `jti` is on the denylist.
    Revoked,
    /// Not an access token (a refresh token).
    WrongType,
    /// Valid, but its role is not allowed here.
    Forbidden,
    /// The consumer cannot decide: its keys or its denylist are older than
    /// their bounds (the issuer is unreachable).
    Stale,
    /// The service is misconfigured (the extractor used without the layer
    /// or a [`crate::Consumer`] extension).
    Internal,
}

impl Reason {
    /// The reason's name, as sent in the error body.
    ///
    /// ```
    /// assert_eq!(wallet_auth_consumer::Reason::WrongType.as_str(), "wrong_type");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::Invalid => "invalid",
            Reason::Revoked => "revoked",
            Reason::WrongType => "wrong_type",
            Reason::Forbidden => "forbidden",
            Reason::Stale => "stale",
            Reason::Internal => "internal",
        }
    }

    /// The HTTP status of a refusal for this reason: 401, 403, 503 or 500.
    ///
    /// ```
    /// assert_eq!(wallet_auth_consumer::Reason::Forbidden.status(), 403);
    /// ```
    pub fn status(self) -> u16 {
        match self {
            Reason::Expired | Reason::Invalid | Reason::Revoked | Reason::WrongType => 401,
            Reason::Forbidden => 403,
            Reason::Stale => 503,
            Reason::Internal => 500,
        }
    }
}

/// A refused token: the reason and a short human-readable detail (never
/// the token itself).
///
/// ```
/// use wallet_auth_consumer::{Reason, Rejection};
/// let r = Rejection::new(Reason::Expired, "token expired");
/// assert_eq!(r.reason(), Reason::Expired);
/// assert_eq!(r.detail(), "token expired");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    detail: String,
}

impl Rejection {
    /// A refusal for `reason` with `detail`.
    ///
    /// ```
    /// let r = wallet_auth_consumer::Rejection::new(wallet_auth_consumer::Reason::Invalid, "bad");
    /// assert_eq!(r.to_string(), "invalid: bad");
    /// ```
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::new(Reason::Invalid, detail)
    }

    /// The reason.
    ///
    /// ```
    /// use wallet_auth_consumer::{Reason, Rejection};
    /// assert_eq!(Rejection::new(Reason::Stale, "x").reason(), Reason::Stale);
    /// ```
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The detail text.
    ///
    /// ```
    /// use wallet_auth_consumer::{Reason, Rejection};
    /// assert_eq!(Rejection::new(Reason::Stale, "x").detail(), "x");
    /// ```
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl std::error::Error for Rejection {}

/// One decision, as the [`crate::Hook`] sees it: the claims when the
/// token verified far enough to read them, and the refusal reason (`None`:
/// accepted).
///
/// ```
/// use wallet_auth_consumer::Decision;
/// fn log(d: &Decision<'_>) {
///     let who = d.claims.map(|c| c.sub.as_str()).unwrap_or("-");
///     match d.reason {
///         None => println!("accepted {who}"),
///         Some(r) => println!("refused {who}: {}", r.as_str()),
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// The verified claims, when the signature checked out.
    pub claims: Option<&'a Claims>,
    /// `None` when accepted, else why not.
    pub reason: Option<Reason>,
    /// The refusal's detail (empty when accepted).
    pub detail: &'a str,
}

/// A consumer that could not be started.
///
/// ```
/// use wallet_auth_consumer::StartError;
/// let e = StartError::Config("issuer must be an http(s) URL".into());
/// assert!(e.to_string().contains("issuer"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration value is unusable.
    #[error("consumer configuration: {0}")]
    Config(String),
    /// No tokio runtime to run the background tasks on.
    #[error("the consumer must be started inside a tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}
