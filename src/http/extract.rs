//! Our own extractors, so every malformed request gets SPEC's error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

use crate::Error;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request body that must be a JSON object sent as `application/json`
/// (parameters allowed) or any `+json` type. Refused with
/// [`Error::UnsupportedMediaType`] (415, checked before the body is read),
/// [`Error::BodyTooLarge`] (413), [`Error::BadRequest`] (400) or
/// [`Error::BodyTimedOut`] (408).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::BodyTooLarge
            } else if caused_by_timeout(&e) {
                Error::BodyTimedOut
            } else {
                Error::BadRequest("could not read request body".into())
            }
        })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(Error::BodyTooLarge);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(Error::BadRequest(
                "request body must be a JSON object".into(),
            )),
            Err(_) => Err(Error::BadRequest("request body is not valid JSON".into())),
        }
    }
}

/// Whether a `Content-Type` names JSON: `application/json` or
/// `application/<anything>+json`, any case, parameters ignored. Browsers
/// send `text/plain` and form types cross-origin without a preflight; this
/// refuses them (SPEC 1).
fn is_json_content_type(value: Option<&header::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    if !kind.eq_ignore_ascii_case("application") {
        return false;
    }
    if subtype.eq_ignore_ascii_case("json") {
        return true;
    }
    // `+json` with something before it.
    subtype.len() > 5
        && subtype
            .get(subtype.len() - 5..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case("+json"))
}

/// Whether a body error comes from our body deadline (or tower-http's).
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<super::serve::BodyDeadline>() || c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl JsonObject {
    /// A string field: `None` when absent or null.
    ///
    /// # Errors
    /// `BadRequest` when present with another type.
    pub fn str(&self, name: &'static str) -> Result<Option<String>, Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::BadRequest(format!("{name} must be a string"))),
        }
    }

    /// A string field, empty when absent.
    ///
    /// # Errors
    /// `BadRequest` when present with another type.
    pub fn str_or_empty(&self, name: &'static str) -> Result<String, Error> {
        Ok(self.str(name)?.unwrap_or_default())
    }

    /// An integer field: `None` when absent or null.
    ///
    /// # Errors
    /// `BadRequest` when present but not an integer in the i64 range.
    pub fn int(&self, name: &'static str) -> Result<Option<i64>, Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    Ok(Some(i))
                } else if n.as_u64().is_some() {
                    Ok(Some(i64::MAX))
                } else {
                    Err(Error::BadRequest(format!("{name} must be an integer")))
                }
            }
            Some(_) => Err(Error::BadRequest(format!("{name} must be an integer"))),
        }
    }
}

/// The Bearer token of the `Authorization` header, if any.
#[derive(Debug)]
pub struct Bearer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Bearer(bearer_token(&parts.headers).map(str::to_owned)))
    }
}

/// The Bearer token of the `Authorization` header, borrowed: the scheme
/// matched without regard to case, the token trimmed, `None` when missing
/// or empty.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    // UTF-8 rather than `to_str`'s visible-ASCII check: the same for every
    // token we mint, and a SIMD scan of the ~1 KB header, not a byte loop.
    // Anything else in the header fails verification.
    let value = std::str::from_utf8(headers.get(header::AUTHORIZATION)?.as_bytes()).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The peer's IP address, when the server was started with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Behind the rate limit the address is resolved already (trusted
        // proxies' `X-Forwarded-For` taken into account); else the peer.
        if let Some(super::limit::ResolvedIp(ip)) = parts.extensions.get() {
            return Ok(ClientIp(Some(*ip)));
        }
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(ip))
    }
}

/// The validated access-token claims of the request's Bearer token, for a
/// host app's own routes: signature, `iss`, `aud`, `exp`, not a refresh
/// token, not revoked. The host's state must give a [`crate::WalletAuth`]
/// (`impl FromRef<AppState> for WalletAuth`, or `WalletAuth` itself as state).
/// A missing or bad token is refused with 401 and a `detail`; check roles
/// with [`Claims::require_role`].
///
/// ```
/// use axum::{routing::get, Router};
/// use wallet_auth::{http::Claims, AuthConfig, WalletAuth};
///
/// async fn me(claims: Claims) -> Result<String, wallet_auth::Error> {
///     claims.require_role(&["wallet", "operator"])?;
///     Ok(format!("hello {}", claims.0.sub))
/// }
///
/// # fn app(auth: WalletAuth) -> Router {
/// Router::new().route("/me", get(me)).with_state(auth.clone()).merge(auth.router())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Claims(pub crate::AccessClaims);

impl Claims {
    /// `Ok` when the token's role is one of `roles`.
    ///
    /// # Errors
    /// [`Error::Forbidden`] (403) otherwise.
    pub fn require_role(&self, roles: &[&str]) -> Result<(), Error> {
        if roles.contains(&self.0.role.as_str()) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

impl<S> FromRequestParts<S> for Claims
where
    S: Send + Sync,
    crate::WalletAuth: axum::extract::FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = <crate::WalletAuth as axum::extract::FromRef<S>>::from_ref(state);
        let Ok(Bearer(token)) = Bearer::from_request_parts(parts, state).await;
        auth.authenticate(token.as_deref()).await.map(Claims)
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;
    use axum::http::HeaderValue;

    fn json(ct: &str) -> bool {
        is_json_content_type(Some(&HeaderValue::from_str(ct).unwrap()))
    }

    #[test]
    fn json_types_are_accepted() {
        for ct in [
            "application/json",
            "APPLICATION/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=utf-8",
            "application/problem+json",
            "application/vnd.api+JSON; v=1",
        ] {
            assert!(json(ct), "{ct}");
        }
    }

    #[test]
    fn other_types_are_refused() {
        assert!(!is_json_content_type(None));
        for ct in [
            "",
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/+json",
            "application/json-seq",
            "application",
            "json",
        ] {
            assert!(!json(ct), "{ct}");
        }
        // Not visible ASCII: refused, not a panic.
        let odd = HeaderValue::from_bytes(b"application/json\xff").unwrap();
        assert!(!is_json_content_type(Some(&odd)));
    }
}
