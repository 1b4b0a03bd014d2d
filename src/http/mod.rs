//! The HTTP edge: one route table, thin handlers, our extractors, the
//! response bodies it pre-builds (JWKS, the denylist poll and its gzip), and
//! the error-to-response mapping.

mod bodies;
mod error;
mod extract;
mod handlers;
mod limit;
mod routes;
mod serve;
mod stream;

pub use self::extract::{Bearer, Claims, ClientIp, JsonObject, MAX_BODY_BYTES};
pub use self::routes::{rate_limited_routes, routes};
pub use self::serve::{serve, ServeOptions};
pub use self::stream::{STREAM_BUFFER, TOKEN_CHECK};
