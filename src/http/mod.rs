//! The HTTP edge: one route table, thin handlers, our extractors, the
//! response bodies it pre-builds (JWKS, the denylist poll and its gzip), and
//! the error-to-response mapping.

mod bodies;
mod error;
mod extract;
mod handlers;
mod limit;
mod openapi;
mod ops;
mod routes;
mod serve;
mod stream;

pub use self::extract::{Bearer, Claims, ClientIp, JsonObject, MAX_BODY_BYTES};
pub use self::ops::{DISCOVERY, HEALTH_LIVE, HEALTH_READY, METRICS_PATH, OPENAPI};
pub use self::routes::{rate_limited_routes, routes, served_routes};
pub use self::serve::{serve, serve_metrics, ServeOptions};
pub use self::stream::{STREAM_BUFFER, TOKEN_CHECK};
