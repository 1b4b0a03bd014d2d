//! `{prefix}/openapi.json`: the OpenAPI 3.1 document of every route (SPEC 1,
//! 7 and 11), generated at compile time by `utoipa` from the route specs
//! below and the reply types of the crate (`IssuedChallenge`,
//! `SignInResponse`, `TokenPair`, `FleetSession`, `RevocationEntry`,
//! `MintView` derive their schemas). Paths here are relative to the
//! configured prefix (or rooted, for health and discovery); [`document`]
//! puts the prefix in. `tests/openapi.rs` fails when a route of the router
//! table is missing from the document.

#![allow(dead_code)] // the spec functions exist for their attributes only

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::{FleetSession, IssuedChallenge, MintView, SignInResponse, TokenPair};
use crate::revocation::{RevocationEntry, RevocationKind};
use crate::MintRecord;

/// Every error: `{"detail": "<text>"}` (SPEC 1).
#[derive(Serialize, ToSchema)]
struct Detail {
    /// What went wrong.
    detail: String,
}

/// `POST /challenge`.
#[derive(Serialize, ToSchema)]
struct ChallengeBody {
    /// The wallet id (or an EIP-55 / base58 account for `eip191` / `solana`); at most 8,192 characters.
    address: String,
    /// The message format (SPEC 9).
    algorithm: Option<String>,
    /// EIP-155 chain id, for `eip191` only.
    chain_id: Option<u64>,
}

/// `POST /sign-in`.
#[derive(Serialize, ToSchema)]
struct SignInBody {
    /// The wallet id: lowercase hex of the public key.
    address: String,
    /// Hex.
    public_key: String,
    /// Hex.
    signature: String,
    /// The nonce of `/challenge`.
    challenge: String,
    /// `ML-DSA-65` (default), `Ed25519`, `secp256k1`, `eip191`, `solana`.
    algorithm: Option<String>,
    /// The signed domain-bound message (SPEC 9), instead of the bare nonce.
    message: Option<String>,
    /// One of `audiences` (SPEC 2).
    audience: Option<String>,
}

/// `POST /refresh`.
#[derive(Serialize, ToSchema)]
struct RefreshBody {
    /// The refresh token; each works once.
    refresh_token: String,
}

/// `POST /login`.
#[derive(Serialize, ToSchema)]
struct LoginBody {
    /// `admin_email`.
    email: String,
    /// The bootstrap admin's password.
    password: String,
    /// One of `audiences` (SPEC 2).
    audience: Option<String>,
}

/// `POST /fleet/sessions`.
#[derive(Serialize, ToSchema)]
struct FleetBody {
    /// The session id (the token's `sub`).
    session_id: String,
    /// The agent id.
    agent_id: String,
    /// One of `fleet_allowed_roles` (default `agent`).
    role: Option<String>,
    /// Seconds, clamped to `[60, fleet_max_ttl_seconds]`; absent/0: `fleet_session_ttl_seconds`.
    ttl: Option<i64>,
    /// Free-form scope.
    scope: Option<String>,
    /// One of `audiences` (SPEC 2).
    audience: Option<String>,
}

/// `POST /revoke`.
#[derive(Serialize, ToSchema)]
struct RevokeBody {
    /// The token id to deny.
    jti: String,
    /// Why.
    reason: Option<String>,
    /// The token's `exp`: the entry leaves the poll once it passes.
    exp: Option<u64>,
}

/// `POST /revoke`'s reply.
#[derive(Serialize, ToSchema)]
struct RevokeReply {
    /// The stored entry (the first one, when revoked before).
    revoked: RevocationEntry,
}

/// `GET /revoked-jtis`'s reply (full list, or a delta with `?since=`).
#[derive(Serialize, ToSchema)]
struct RevokedJtisReply {
    /// Newest first.
    items: Vec<RevocationEntry>,
    /// Pass as `since` for the next poll (SPEC 7).
    cursor: Option<String>,
    /// In a delta reply: `false`.
    full: Option<bool>,
}

/// `GET /mints`'s reply.
#[derive(Serialize, ToSchema)]
struct MintsReply {
    /// Newest first.
    items: Vec<MintView>,
}

/// One public key (RSA or ML-DSA-65 "AKP", SPEC 8).
#[derive(Serialize, ToSchema)]
struct JwkSchema {
    /// `RSA` or `AKP`.
    kty: String,
    /// RFC 7638 thumbprint.
    kid: String,
    /// `RS256` or `ML-DSA-65`.
    alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    use_: String,
    /// RSA modulus, base64url.
    n: Option<String>,
    /// RSA exponent, base64url.
    e: Option<String>,
    /// ML-DSA-65 public key, base64url.
    #[serde(rename = "pub")]
    pub_: Option<String>,
}

/// `GET /jwks`.
#[derive(Serialize, ToSchema)]
struct JwkSet {
    /// Every key that may still verify a live token.
    keys: Vec<JwkSchema>,
}

/// `GET /health/live`.
#[derive(Serialize, ToSchema)]
struct Live {
    /// `ok`.
    status: String,
}

/// `GET /health/ready`.
#[derive(Serialize, ToSchema)]
struct Ready {
    /// `ok` or `unavailable`.
    status: String,
    /// Check name (`challenges`, `revocations`, `mint_audit`, `signing_keys`) -> `ok` or the reason.
    checks: BTreeMap<String, String>,
}

/// `GET /.well-known/openid-configuration`.
#[derive(Serialize, ToSchema)]
struct Discovery {
    /// The `iss` of every token.
    issuer: String,
    /// `{issuer}{prefix}/jwks`.
    jwks_uri: String,
    /// The algorithms of the published keys.
    id_token_signing_alg_values_supported: Vec<String>,
}

/// The 429 of the routes limited per IP only.
const PER_IP: &str = "per-IP rate limit (Retry-After)";
/// The 503 of the routes behind the sign-in concurrency limit.
const BUSY: &str = "server busy or a store unavailable (Retry-After)";

/// One route's spec: `#[utoipa::path]` on an empty fn named `$name`, with its
/// replies as written and each error as `status => why`, answering a
/// [`Detail`]. A route that takes a JSON body (`json = Body`) also answers
/// the statuses of the body layers: 408, 413 and 415; a `bearer` route is
/// behind the Bearer gate, with its 401.
macro_rules! route {
    (
        $name:ident: $method:ident $path:tt, tag = $tag:tt, $(json = $body:ident,)? bearer,
        $($rest:tt)*
    ) => {
        route! {
            $name: $method $path, tag = $tag, $(json = $body,)?
            security = "bearer",
            $($rest)*
            401 => "no or invalid Bearer token",
        }
    };
    (
        $name:ident: $method:ident $path:tt, tag = $tag:tt, json = $body:ident,
        $(security = $scheme:tt,)?
        replies($($reply:tt),+ $(,)?),
        $($code:tt => $why:tt,)*
    ) => {
        route! {
            $name: $method $path, tag = $tag, [request_body = $body,]
            $(security = $scheme,)?
            replies($($reply),+),
            $($code => $why,)*
            408 => "request body not received in time",
            413 => "request body over 64 KiB",
            415 => "Content-Type must be application/json",
        }
    };
    (
        $name:ident: $method:ident $path:tt, tag = $tag:tt, $([$($body:tt)*])?
        $(security = $scheme:tt,)?
        $(params($($param:tt)*),)?
        replies($($reply:tt),+ $(,)?),
        $($code:tt => $why:tt,)*
    ) => {
        #[utoipa::path($method, path = $path, tag = $tag, $($($body)*)?
            $(security(($scheme = [])),)?
            $(params($($param)*),)?
            responses(
                $($reply,)+
                $((status = $code, description = $why, body = Detail),)*
            ))]
        fn $name() {}
    };
}

route! {
    jwks: get "/jwks", tag = "keys",
    replies((status = 200, description = "The public signing keys (Cache-Control: public, max-age)", body = JwkSet)),
}

route! {
    challenge: post "/challenge", tag = "sign-in", json = ChallengeBody,
    replies((status = 200, description = "A one-time nonce and the message to sign", body = IssuedChallenge)),
    400 => "address required, too long, or a bad algorithm / chain_id",
    429 => PER_IP,
    503 => "too many outstanding challenges, or a store unavailable (Retry-After)",
}

route! {
    sign_in: post "/sign-in", tag = "sign-in", json = SignInBody,
    replies((status = 200, description = "Access and refresh tokens", body = SignInResponse)),
    400 => "missing fields, invalid hex, unsupported algorithm, address mismatch, audience not allowed",
    401 => "invalid or expired challenge; signature verification failed",
    429 => PER_IP,
    503 => BUSY,
}

route! {
    refresh: post "/refresh", tag = "sign-in", json = RefreshBody,
    replies((status = 200, description = "A new access + refresh pair", body = TokenPair)),
    400 => "refresh_token required",
    401 => "refresh expired; refresh invalid (revoked, reused, wrong kind)",
    429 => "per-IP or per-family rate limit (Retry-After)",
    503 => BUSY,
}

route! {
    login: post "/login", tag = "sign-in", json = LoginBody,
    replies((status = 200, description = "The bootstrap admin's tokens", body = TokenPair)),
    400 => "a field is not a string or too long",
    401 => "invalid credentials",
    403 => "password login disabled",
    429 => "rate limit or failure lockout (Retry-After)",
    503 => BUSY,
}

route! {
    fleet_sessions: post "/fleet/sessions", tag = "fleet", json = FleetBody,
    security = "fleet_secret",
    replies((status = 200, description = "A fleet session token", body = FleetSession)),
    400 => "session_id and agent_id required",
    401 => "invalid X-Fleet-Secret",
    403 => "role not allowed",
    404 => "fleet minting disabled (no fleet_mint_secret)",
    429 => PER_IP,
    503 => BUSY,
}

route! {
    revoke: post "/revoke", tag = "revocation", json = RevokeBody, bearer,
    replies((status = 200, description = "Revoked (idempotent; durable before the reply)", body = RevokeReply)),
    400 => "jti required; exp is in the past",
    403 => "not an operator",
    503 => "the denylist cannot be made durable",
}

route! {
    revoked_jtis: get "/revoked-jtis", tag = "revocation", bearer,
    params(
        ("since" = Option<String>, Query, description = "A cursor of an earlier reply: only what changed since (SPEC 7)"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier full reply"),
    ),
    replies(
        (status = 200, description = "The denylist (ETag; gzip when accepted)", body = RevokedJtisReply),
        (status = 304, description = "Not modified since the ETag given"),
    ),
    403 => "neither service nor operator",
    503 => "the denylist cannot be read",
}

route! {
    revoked_jtis_stream: get "/revoked-jtis/stream", tag = "revocation", bearer,
    params(
        ("since" = Option<String>, Query, description = "Resume after this cursor"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (an EventSource reconnecting)"),
    ),
    replies((status = 200, description = "Server-sent events, one per revocation (SPEC 7)", content_type = "text/event-stream", body = String)),
    403 => "neither service nor operator",
    503 => "too many streams, or no feed (Retry-After)",
}

route! {
    mints: get "/mints", tag = "revocation", bearer,
    params(("limit" = Option<i64>, Query, description = "Default 200, clamped to [1, mint_audit_max_in_memory]")),
    replies((status = 200, description = "Recent long-lived mints, newest first", body = MintsReply)),
    400 => "limit must be an integer",
    403 => "not an operator",
    503 => "the audit cannot be read",
}

route! {
    openapi_json: get "/openapi.json", tag = "operating",
    replies((status = 200, description = "This document", content_type = "application/json", body = Object)),
}

route! {
    health_live: get "/health/live", tag = "operating",
    replies((status = 200, description = "The process serves", body = Live)),
}

route! {
    health_ready: get "/health/ready", tag = "operating",
    replies(
        (status = 200, description = "Every store can serve", body = Ready),
        (status = 503, description = "A store cannot serve; its check names the reason", body = Ready),
    ),
}

route! {
    discovery: get "/.well-known/openid-configuration", tag = "operating",
    replies((status = 200, description = "The issuer and its JWKS", body = Discovery)),
}

route! {
    metrics: get "/metrics", tag = "operating",
    replies((status = 200, description = "Prometheus text format 0.0.4 (served on metrics_listen)", content_type = "text/plain", body = String)),
    404 => "metrics are off",
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "fleet_secret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Fleet-Secret"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wallet-auth",
        description = "Wallet challenge-response login minting RS256 / ML-DSA-65 JWTs; wire-compatible with pico-server-auth 0.2.2."
    ),
    paths(
        jwks, challenge, sign_in, refresh, login, fleet_sessions, revoke, revoked_jtis,
        revoked_jtis_stream, mints, openapi_json, health_live, health_ready, discovery, metrics
    ),
    components(schemas(RevocationKind, MintRecord)),
    modifiers(&Security)
)]
struct ApiDoc;

/// Paths documented at the root, not under the prefix.
const ROOTED: [&str; 4] = [
    "/health/live",
    "/health/ready",
    "/.well-known/openid-configuration",
    "/metrics",
];

/// The document for a router under `prefix`, served from `issuer`: the
/// generated one with the prefix put in front of the prefixed paths, and
/// `405` and `500` (which any route may answer) added to every operation.
pub(crate) fn document(issuer: &str, prefix: &str) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        let old = std::mem::take(paths);
        for (path, mut item) in old {
            if let Some(ops) = item.as_object_mut() {
                for op in ops.values_mut() {
                    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut)
                    {
                        for (code, what) in
                            [("405", "method not allowed"), ("500", "internal error")]
                        {
                            responses.entry(code).or_insert_with(|| {
                                serde_json::json!({
                                    "description": what,
                                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                                })
                            });
                        }
                    }
                }
            }
            let full = if ROOTED.contains(&path.as_str()) {
                path
            } else {
                format!("{prefix}{path}")
            };
            paths.insert(full, item);
        }
    }
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "servers".into(),
            serde_json::json!([{ "url": issuer.trim_end_matches('/') }]),
        );
    }
    doc
}
