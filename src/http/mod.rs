//! The HTTP edge: one route table, thin handlers, our extractors, and the
//! error-to-response mapping.

mod error;
mod extract;
mod handlers;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use self::extract::{Bearer, BodyRejection, Claims, ClientIp, JsonObject, MAX_BODY_BYTES};
use crate::WalletAuth;

impl WalletAuth {
    /// The router with every route of SPEC section 1 under the configured
    /// prefix (default `/api/v1/auth`). Generic over the host's state, so a
    /// host app can `merge` it (or `nest` it with an empty prefix).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let routes = Router::new()
            .route("/jwks", get(handlers::jwks))
            .route("/challenge", post(handlers::challenge))
            .route("/sign-in", post(handlers::sign_in))
            .route("/refresh", post(handlers::refresh))
            .route("/login", post(handlers::login))
            .route("/fleet/sessions", post(handlers::fleet_session))
            .route("/revoke", post(handlers::revoke))
            .route("/revoked-jtis", get(handlers::revoked_jtis))
            .route("/mints", get(handlers::mints))
            .method_not_allowed_fallback(handlers::method_not_allowed)
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
