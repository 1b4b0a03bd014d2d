//! The HTTP edge: one route table, thin handlers, our extractors, and the
//! error-to-response mapping.

mod error;
mod extract;
mod handlers;
mod serve;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use self::extract::{Bearer, BodyRejection, ClientIp, JsonObject, MAX_BODY_BYTES};
pub use self::serve::{serve, ServeOptions};
use crate::WalletAuth;

/// A method a route does not serve: 405 with a `detail` (axum adds `Allow`),
/// instead of axum's empty body. Per route, so a host app can still merge
/// the router next to its own fallback.
async fn wrong_method() -> axum::response::Response {
    error::detail(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
    )
}

impl WalletAuth {
    /// The router with every route of SPEC section 1 under the configured
    /// prefix (default `/api/v1/auth`). Generic over the host's state, so a
    /// host app can `merge` it (or `nest` it with an empty prefix).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let routes = Router::new()
            .route("/jwks", get(handlers::jwks).fallback(wrong_method))
            .route(
                "/challenge",
                post(handlers::challenge).fallback(wrong_method),
            )
            .route("/sign-in", post(handlers::sign_in).fallback(wrong_method))
            .route("/refresh", post(handlers::refresh).fallback(wrong_method))
            .route("/login", post(handlers::login).fallback(wrong_method))
            .route(
                "/fleet/sessions",
                post(handlers::fleet_session).fallback(wrong_method),
            )
            .route("/revoke", post(handlers::revoke).fallback(wrong_method))
            .route(
                "/revoked-jtis",
                get(handlers::revoked_jtis).fallback(wrong_method),
            )
            .route("/mints", get(handlers::mints).fallback(wrong_method))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone());
        let prefix = self.config().route_prefix.as_str();
        if prefix.is_empty() {
            routes
        } else {
            Router::new().nest(prefix, routes)
        }
    }
}
