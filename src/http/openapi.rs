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

#[utoipa::path(get, path = "/jwks", tag = "keys",
    responses((status = 200, description = "The public signing keys (Cache-Control: public, max-age)", body = JwkSet)))]
fn jwks() {}

#[utoipa::path(post, path = "/challenge", tag = "sign-in", request_body = ChallengeBody,
    responses(
        (status = 200, description = "A one-time nonce and the message to sign", body = IssuedChallenge),
        (status = 400, description = "address required, too long, or a bad algorithm / chain_id", body = Detail),
        (status = 408, description = "request body not received in time", body = Detail),
        (status = 413, description = "request body over 64 KiB", body = Detail),
        (status = 415, description = "Content-Type must be application/json", body = Detail),
        (status = 429, description = "per-IP rate limit (Retry-After)", body = Detail),
        (status = 503, description = "too many outstanding challenges, or a store unavailable (Retry-After)", body = Detail)))]
fn challenge() {}

#[utoipa::path(post, path = "/sign-in", tag = "sign-in", request_body = SignInBody,
    responses(
        (status = 200, description = "Access and refresh tokens", body = SignInResponse),
        (status = 400, description = "missing fields, invalid hex, unsupported algorithm, address mismatch, audience not allowed", body = Detail),
        (status = 401, description = "invalid or expired challenge; signature verification failed", body = Detail),
        (status = 408, description = "request body not received in time", body = Detail),
        (status = 413, description = "request body over 64 KiB", body = Detail),
        (status = 415, description = "Content-Type must be application/json", body = Detail),
        (status = 429, description = "per-IP rate limit (Retry-After)", body = Detail),
        (status = 503, description = "server busy or a store unavailable (Retry-After)", body = Detail)))]
fn sign_in() {}

#[utoipa::path(post, path = "/refresh", tag = "sign-in", request_body = RefreshBody,
    responses(
        (status = 200, description = "A new access + refresh pair", body = TokenPair),
        (status = 400, description = "refresh_token required", body = Detail),
        (status = 401, description = "refresh expired; refresh invalid (revoked, reused, wrong kind)", body = Detail),
        (status = 408, description = "request body not received in time", body = Detail),
        (status = 413, description = "request body over 64 KiB", body = Detail),
        (status = 415, description = "Content-Type must be application/json", body = Detail),
        (status = 429, description = "per-IP or per-family rate limit (Retry-After)", body = Detail),
        (status = 503, description = "server busy or a store unavailable (Retry-After)", body = Detail)))]
fn refresh() {}

#[utoipa::path(post, path = "/login", tag = "sign-in", request_body = LoginBody,
    responses(
        (status = 200, description = "The bootstrap admin's tokens", body = TokenPair),
        (status = 400, description = "a field is not a string or too long", body = Detail),
        (status = 401, description = "invalid credentials", body = Detail),
        (status = 403, description = "password login disabled", body = Detail),
        (status = 408, description = "request body not received in time", body = Detail),
        (status = 413, description = "request body over 64 KiB", body = Detail),
        (status = 415, description = "Content-Type must be application/json", body = Detail),
        (status = 429, description = "rate limit or failure lockout (Retry-After)", body = Detail),
        (status = 503, description = "server busy or a store unavailable (Retry-After)", body = Detail)))]
fn login() {}

#[utoipa::path(post, path = "/fleet/sessions", tag = "fleet", request_body = FleetBody,
    security(("fleet_secret" = [])),
    responses(
        (status = 200, description = "A fleet session token", body = FleetSession),
        (status = 400, description = "session_id and agent_id required", body = Detail),
        (status = 401, description = "invalid X-Fleet-Secret", body = Detail),
        (status = 403, description = "role not allowed", body = Detail),
        (status = 404, description = "fleet minting disabled (no fleet_mint_secret)", body = Detail),
        (status = 408, description = "request body not received in time", body = Detail),
        (status = 413, description = "request body over 64 KiB", body = Detail),
        (status = 415, description = "Content-Type must be application/json", body = Detail),
        (status = 429, description = "per-IP rate limit (Retry-After)", body = Detail),
        (status = 503, description = "server busy or a store unavailable (Retry-After)", body = Detail)))]
fn fleet_sessions() {}

#[utoipa::path(post, path = "/revoke", tag = "revocation", request_body = RevokeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (idempotent; durable before the reply)", body = RevokeReply),
        (status = 400, description = "jti required; exp is in the past", body = Detail),
        (status = 401, description = "no or invalid Bearer token", body = Detail),
        (status = 403, description = "not an operator", body = Detail),
        (status = 408, description = "request body not received in time", body = Detail),
        (status = 413, description = "request body over 64 KiB", body = Detail),
        (status = 415, description = "Content-Type must be application/json", body = Detail),
        (status = 503, description = "the denylist cannot be made durable", body = Detail)))]
fn revoke() {}

#[utoipa::path(get, path = "/revoked-jtis", tag = "revocation",
    security(("bearer" = [])),
    params(
        ("since" = Option<String>, Query, description = "A cursor of an earlier reply: only what changed since (SPEC 7)"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier full reply"),
    ),
    responses(
        (status = 200, description = "The denylist (ETag; gzip when accepted)", body = RevokedJtisReply),
        (status = 304, description = "Not modified since the ETag given"),
        (status = 401, description = "no or invalid Bearer token", body = Detail),
        (status = 403, description = "neither service nor operator", body = Detail),
        (status = 503, description = "the denylist cannot be read", body = Detail)))]
fn revoked_jtis() {}

#[utoipa::path(get, path = "/revoked-jtis/stream", tag = "revocation",
    security(("bearer" = [])),
    params(
        ("since" = Option<String>, Query, description = "Resume after this cursor"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (an EventSource reconnecting)"),
    ),
    responses(
        (status = 200, description = "Server-sent events, one per revocation (SPEC 7)", content_type = "text/event-stream", body = String),
        (status = 401, description = "no or invalid Bearer token", body = Detail),
        (status = 403, description = "neither service nor operator", body = Detail),
        (status = 503, description = "too many streams, or no feed (Retry-After)", body = Detail)))]
fn revoked_jtis_stream() {}

#[utoipa::path(get, path = "/mints", tag = "revocation",
    security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "Default 200, clamped to [1, mint_audit_max_in_memory]")),
    responses(
        (status = 200, description = "Recent long-lived mints, newest first", body = MintsReply),
        (status = 400, description = "limit must be an integer", body = Detail),
        (status = 401, description = "no or invalid Bearer token", body = Detail),
        (status = 403, description = "not an operator", body = Detail),
        (status = 503, description = "the audit cannot be read", body = Detail)))]
fn mints() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operating",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
fn openapi_json() {}

#[utoipa::path(get, path = "/health/live", tag = "operating",
    responses((status = 200, description = "The process serves", body = Live)))]
fn health_live() {}

#[utoipa::path(get, path = "/health/ready", tag = "operating",
    responses(
        (status = 200, description = "Every store can serve", body = Ready),
        (status = 503, description = "A store cannot serve; its check names the reason", body = Ready)))]
fn health_ready() {}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "operating",
    responses((status = 200, description = "The issuer and its JWKS", body = Discovery)))]
fn discovery() {}

#[utoipa::path(get, path = "/metrics", tag = "operating",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4 (served on metrics_listen)", content_type = "text/plain", body = String),
        (status = 404, description = "metrics are off", body = Detail)))]
fn metrics() {}

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
