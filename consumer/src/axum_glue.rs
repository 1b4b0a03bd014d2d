//! The axum side: refusals as responses, the [`Claims`] extractor, and the
//! tower layer that guards a router.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::{Claims, Consumer, Reason, Rejection};

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.reason().status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let body = serde_json::json!({
            "detail": self.detail(),
            "reason": self.reason().as_str(),
        });
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        match self.reason() {
            Reason::Expired | Reason::Invalid | Reason::Revoked | Reason::WrongType => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Reason::Stale => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Reason::Forbidden | Reason::Internal => {}
        }
        resp
    }
}

/// The token of an `Authorization: Bearer` header, if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The claims of the request's Bearer token. Behind a [`ConsumerLayer`]
/// it takes what the layer validated; otherwise it validates the token
/// with a [`Consumer`] found in the request's extensions (added with
/// `axum::Extension(consumer)`).
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use wallet_auth_consumer::{Claims, Consumer};
/// async fn whoami(claims: Claims) -> String { claims.sub }
/// # fn app(consumer: Consumer) -> Router {
/// Router::new().route("/whoami", get(whoami)).layer(consumer.layer())
/// # }
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<Claims>() {
            return Ok(claims.clone());
        }
        let Some(consumer) = parts.extensions.get::<Consumer>().cloned() else {
            return Err(Rejection::new(
                Reason::Internal,
                "no token consumer installed on this route",
            ));
        };
        consumer.authorize(bearer(&parts.headers), &[]).await
    }
}

impl Consumer {
    /// A tower layer validating every request's Bearer token: refused
    /// requests get the [`Rejection`] response (401/403/503 with a JSON
    /// `detail`), accepted ones reach the service with their [`Claims`]
    /// in the extensions (and the consumer, for further extractors).
    ///
    /// ```no_run
    /// # fn f(consumer: wallet_auth_consumer::Consumer) {
    /// let app: axum::Router = axum::Router::new().layer(consumer.layer());
    /// # }
    /// ```
    pub fn layer(&self) -> ConsumerLayer {
        ConsumerLayer {
            consumer: self.clone(),
            roles: Arc::new(Vec::new()),
        }
    }

    /// As [`Consumer::layer`], also requiring one of `roles` (403 for a
    /// valid token of another role).
    ///
    /// ```no_run
    /// # fn f(consumer: wallet_auth_consumer::Consumer) {
    /// let admin: axum::Router = axum::Router::new()
    ///     .layer(consumer.require_role(&["operator"]));
    /// # }
    /// ```
    pub fn require_role(&self, roles: &[&str]) -> ConsumerLayer {
        ConsumerLayer {
            consumer: self.clone(),
            roles: Arc::new(roles.iter().map(|r| r.to_string()).collect()),
        }
    }
}

/// The layer of [`Consumer::layer`] and [`Consumer::require_role`].
///
/// ```no_run
/// # fn f(consumer: wallet_auth_consumer::Consumer) {
/// let layer: wallet_auth_consumer::ConsumerLayer = consumer.layer();
/// # let _ = layer; }
/// ```
#[derive(Clone)]
pub struct ConsumerLayer {
    consumer: Consumer,
    roles: Arc<Vec<String>>,
}

impl<S> tower::Layer<S> for ConsumerLayer {
    type Service = ConsumerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConsumerService {
            inner,
            consumer: self.consumer.clone(),
            roles: self.roles.clone(),
        }
    }
}

/// The service [`ConsumerLayer`] wraps around the inner one.
///
/// ```no_run
/// # fn f(consumer: wallet_auth_consumer::Consumer) {
/// use tower::Layer;
/// let svc = consumer.layer().layer(tower::service_fn(|_req: axum::extract::Request| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
/// }));
/// # let _ = svc; }
/// ```
#[derive(Clone)]
pub struct ConsumerService<S> {
    inner: S,
    consumer: Consumer,
    roles: Arc<Vec<String>>,
}

impl<S, B> tower::Service<Request<B>> for ConsumerService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The ready inner service goes with this call; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let consumer = self.consumer.clone();
        let roles = self.roles.clone();
        Box::pin(async move {
            let token = bearer(req.headers()).map(str::to_string);
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            match consumer.authorize(token.as_deref(), &roles).await {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    req.extensions_mut().insert(consumer);
                    inner.call(req).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}
