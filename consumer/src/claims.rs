//! The claims of an accepted access token.

use serde::{Deserialize, Serialize};

use crate::{Reason, Rejection};

/// The claims of a token this consumer accepted.
///
/// ```
/// use wallet_auth_consumer::Claims;
/// let c: Claims = serde_json::from_str(
///     r#"{"sub":"0xab","role":"wallet","jti":"j1","iss":"i","aud":"pico","exp":9}"#,
/// ).unwrap();
/// assert_eq!(c.role, "wallet");
/// assert!(c.has_role(&["wallet", "operator"]));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the wallet id, the email, or the fleet session id.
    #[serde(default)]
    pub sub: String,
    /// Role (`wallet`, `operator`, `service`, `agent`, ...); empty when absent.
    #[serde(default)]
    pub role: String,
    /// Unique token id (what a revocation names).
    #[serde(default)]
    pub jti: String,
    /// Issuer.
    #[serde(default)]
    pub iss: String,
    /// Audience: one name, or several.
    #[serde(default)]
    pub aud: Audience,
    /// Expiry, epoch seconds.
    #[serde(default)]
    pub exp: u64,
    /// Issued at, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Every other claim (`wallet_address`, `scope`, `agent_id`, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The `aud` claim: a string or an array of strings (RFC 7519 4.1.3).
///
/// ```
/// use wallet_auth_consumer::Audience;
/// let one = Audience::One("pico".into());
/// assert!(one.contains("pico"));
/// let many = Audience::Many(vec!["a".into(), "b".into()]);
/// assert!(many.contains("b") && !many.contains("c"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Default for Audience {
    fn default() -> Self {
        Audience::Many(Vec::new())
    }
}

impl Audience {
    /// Whether `name` is among the audiences.
    ///
    /// ```
    /// assert!(wallet_auth_consumer::Audience::One("x".into()).contains("x"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Audience::One(a) => a == name,
            Audience::Many(all) => all.iter().any(|a| a == name),
        }
    }
}

impl Claims {
    /// Whether the token's role is one of `roles`.
    ///
    /// ```
    /// # let c: wallet_auth_consumer::Claims = serde_json::from_str(r#"{"role":"service"}"#).unwrap();
    /// assert!(c.has_role(&["service"]));
    /// assert!(!c.has_role(&["operator"]));
    /// ```
    pub fn has_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| *r == self.role)
    }

    /// `Ok` when the role is one of `roles`, else a
    /// [`Reason::Forbidden`] refusal (403).
    ///
    /// # Errors
    /// The refusal when the role is not allowed.
    ///
    /// ```
    /// # let c: wallet_auth_consumer::Claims = serde_json::from_str(r#"{"role":"wallet"}"#).unwrap();
    /// assert!(c.require_role(&["wallet"]).is_ok());
    /// assert_eq!(c.require_role(&["operator"]).unwrap_err().reason(),
    ///            wallet_auth_consumer::Reason::Forbidden);
    /// ```
    pub fn require_role(&self, roles: &[&str]) -> Result<(), Rejection> {
        if self.has_role(roles) {
            Ok(())
        } else {
            Err(Rejection::new(
                Reason::Forbidden,
                format!("role {} is not allowed here", self.role),
            ))
        }
    }
}
