//! Thin handlers: extract, call the domain, map to a reply.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::extract::{Bearer, BodyRejection, ClientIp, JsonObject};
use crate::auth::{FleetRequest, Gate, SignInRequest};
use crate::{Error, WalletAuth};

fn json_bytes(body: bytes::Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(super) async fn jwks(State(auth): State<WalletAuth>) -> Response {
    let mut resp = json_bytes(auth.jwks_json());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

pub(super) async fn challenge(
    State(auth): State<WalletAuth>,
    body: JsonObject,
) -> Result<Response, Error> {
    let address = match body.0.get("address") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        _ => return Err(Error::AddressRequired),
    };
    let (challenge, ttl) = auth.issue_challenge(address).await?;
    Ok(Json(json!({ "challenge": challenge, "ttl": ttl })).into_response())
}

pub(super) async fn sign_in(
    State(auth): State<WalletAuth>,
    body: JsonObject,
) -> Result<Response, Error> {
    let req = SignInRequest {
        address: body.str_or_empty("address")?,
        public_key: body.str_or_empty("public_key")?,
        signature: body.str_or_empty("signature")?,
        challenge: body.str_or_empty("challenge")?,
        algorithm: body.str("algorithm")?,
    };
    Ok(Json(auth.sign_in(req).await?).into_response())
}

pub(super) async fn refresh(
    State(auth): State<WalletAuth>,
    body: JsonObject,
) -> Result<Response, Error> {
    let token = body.str_or_empty("refresh_token")?;
    Ok(Json(auth.refresh(&token).await?).into_response())
}

pub(super) async fn login(
    State(auth): State<WalletAuth>,
    ClientIp(ip): ClientIp,
    body: JsonObject,
) -> Result<Response, Error> {
    let email = body.str_or_empty("email")?;
    let password = body.str_or_empty("password")?;
    Ok(Json(auth.login(&email, &password, ip).await?).into_response())
}

pub(super) async fn fleet_session(
    State(auth): State<WalletAuth>,
    headers: HeaderMap,
    body: Result<JsonObject, BodyRejection>,
) -> Result<Response, Response> {
    // The secret is checked before the body is looked at.
    let secret = headers.get("x-fleet-secret").map(|v| v.as_bytes());
    auth.check_fleet_secret(secret)
        .map_err(IntoResponse::into_response)?;
    let body = body.map_err(IntoResponse::into_response)?;
    fleet_with(&auth, secret, &body)
        .await
        .map_err(IntoResponse::into_response)
}

async fn fleet_with(
    auth: &WalletAuth,
    secret: Option<&[u8]>,
    body: &JsonObject,
) -> Result<Response, Error> {
    let req = FleetRequest {
        session_id: body.str_or_empty("session_id")?,
        agent_id: body.str_or_empty("agent_id")?,
        role: body.str("role")?,
        ttl: body.int("ttl")?,
        scope: body.str("scope")?,
    };
    Ok(Json(auth.mint_fleet_session(secret, req).await?).into_response())
}

pub(super) async fn revoke(
    State(auth): State<WalletAuth>,
    Bearer(token): Bearer,
    body: Result<JsonObject, BodyRejection>,
) -> Result<Response, Response> {
    // Authorization first: an anonymous caller learns nothing about the body.
    let caller = auth
        .authorize(token.as_deref(), Gate::Operator)
        .await
        .map_err(IntoResponse::into_response)?;
    let body = body.map_err(IntoResponse::into_response)?;
    revoke_with(&auth, &caller, &body)
        .await
        .map_err(IntoResponse::into_response)
}

async fn revoke_with(
    auth: &WalletAuth,
    caller: &crate::AccessClaims,
    body: &JsonObject,
) -> Result<Response, Error> {
    let jti = body.str_or_empty("jti")?;
    let reason = body.str_or_empty("reason")?;
    let exp = match body.int("exp")? {
        None => None,
        Some(e) => Some(
            u64::try_from(e)
                .map_err(|_| Error::BadRequest("exp must be a non-negative integer".into()))?,
        ),
    };
    let entry = auth.revoke(caller, &jti, &reason, exp).await?;
    Ok(Json(json!({ "revoked": entry })).into_response())
}

pub(super) async fn revoked_jtis(
    State(auth): State<WalletAuth>,
    Bearer(token): Bearer,
    headers: HeaderMap,
) -> Result<Response, Error> {
    auth.authorize(token.as_deref(), Gate::Service).await?;
    let mut resp = if accepts_gzip(&headers) {
        let mut r = json_bytes(auth.revoked_jtis_gzip().await?);
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        json_bytes(auth.revoked_jtis_json().await?)
    };
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(resp)
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let zero_q = parts.any(|p| {
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_q
        })
}

pub(super) async fn mints(
    State(auth): State<WalletAuth>,
    Bearer(token): Bearer,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    auth.authorize(token.as_deref(), Gate::Operator).await?;
    let mut limit = None;
    for pair in query.as_deref().unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("limit=") {
            let n: i64 = v
                .parse()
                .map_err(|_| Error::BadRequest("limit must be an integer".into()))?;
            limit = Some(n);
        }
    }
    let items = auth.mints(limit).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub(super) async fn method_not_allowed() -> Response {
    super::error::detail(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
    )
}
