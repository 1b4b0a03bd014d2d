//! The HTTP edge: one route table, thin handlers, our extractors, and the
//! error-to-response mapping.

mod error;
mod extract;
mod handlers;
mod serve;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use self::extract::{Bearer, BodyRejection, Claims, ClientIp, JsonObject, MAX_BODY_BYTES};
pub use self::serve::{serve, ServeOptions};
use crate::WalletAuth;

impl WalletAuth {
    /// The router with every route of SPEC section 1 under the configured
    /// prefix (default `/api/v1/auth`). Generic over the host's state, so a
    /// host app can `merge` it (or `nest` it with an empty prefix).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        // Full paths rather than `nest`: one routing step per request, no
        // prefix stripping on the hot paths.
        let prefix = self.config().route_prefix.as_str();
        let at = |path: &str| format!("{prefix}{path}");
        Router::new()
            .route(&at("/jwks"), get(handlers::jwks))
            .route(&at("/challenge"), post(handlers::challenge))
            .route(&at("/sign-in"), post(handlers::sign_in))
            .route(&at("/refresh"), post(handlers::refresh))
            .route(&at("/login"), post(handlers::login))
            .route(&at("/fleet/sessions"), post(handlers::fleet_session))
            .route(&at("/revoke"), post(handlers::revoke))
            .route(&at("/revoked-jtis"), get(handlers::revoked_jtis))
            .route(&at("/mints"), get(handlers::mints))
            .method_not_allowed_fallback(handlers::method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }
}
