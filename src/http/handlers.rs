//! Thin handlers: extract, call the domain, map to a reply.

use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::bodies::{self, Bodies};
use super::extract::{bearer_token, Bearer, ClientIp, JsonObject};
use super::routes::EdgeState;
use crate::auth::{ChallengeRequest, FleetRequest, Gate, SignInRequest};
use crate::Error;

fn json_bytes(body: bytes::Bytes) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(super) async fn jwks(State(edge): State<EdgeState>) -> Result<Response, Error> {
    let mut resp = json_bytes(edge.bodies.jwks()?);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, edge.bodies.jwks_cache_control());
    Ok(resp)
}

pub(super) async fn challenge(
    State(edge): State<EdgeState>,
    body: JsonObject,
) -> Result<Response, Error> {
    let address = match body.0.get("address") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        _ => return Err(Error::AddressRequired),
    };
    // `algorithm` and `chain_id` are optional here (SPEC 9); a null is absent.
    let algorithm = match body.0.get("algorithm") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(other) => return Err(Error::unsupported_algorithm(&other.to_string())),
    };
    let chain_id = match body.int("chain_id")? {
        None => None,
        Some(id) => Some(
            u64::try_from(id)
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| Error::BadRequest("chain_id must be a positive integer".into()))?,
        ),
    };
    let req = ChallengeRequest {
        address,
        algorithm,
        chain_id,
    };
    Ok(Json(edge.auth.challenge(req).await?).into_response())
}

pub(super) async fn sign_in(
    State(edge): State<EdgeState>,
    body: JsonObject,
) -> Result<Response, Error> {
    let req = SignInRequest {
        address: body.str_or_empty("address")?,
        public_key: body.str_or_empty("public_key")?,
        signature: body.str_or_empty("signature")?,
        challenge: body.str_or_empty("challenge")?,
        algorithm: algorithm_field(&body)?,
        message: body.str("message")?,
        audience: body.str("audience")?,
    };
    Ok(Json(edge.auth.sign_in(req).await?).into_response())
}

/// `/sign-in`'s `algorithm`: `None` when absent; a JSON `null` or any other
/// non-string is an unsupported algorithm, shown as JSON (SPEC 1).
fn algorithm_field(body: &JsonObject) -> Result<Option<String>, Error> {
    match body.0.get("algorithm") {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::unsupported_algorithm(&other.to_string())),
    }
}

pub(super) async fn refresh(
    State(edge): State<EdgeState>,
    body: JsonObject,
) -> Result<Response, Error> {
    let token = body.str_or_empty("refresh_token")?;
    Ok(Json(edge.auth.refresh(&token).await?).into_response())
}

pub(super) async fn login(
    State(edge): State<EdgeState>,
    ClientIp(ip): ClientIp,
    body: JsonObject,
) -> Result<Response, Error> {
    let email = body.str_or_empty("email")?;
    let password = body.str_or_empty("password")?;
    let audience = body.str("audience")?;
    let pair = edge
        .auth
        .login_for_audience(&email, &password, ip, audience.as_deref())
        .await?;
    Ok(Json(pair).into_response())
}

pub(super) async fn fleet_session(
    State(edge): State<EdgeState>,
    headers: HeaderMap,
    body: Result<JsonObject, Error>,
) -> Result<Response, Error> {
    // The secret is checked before the body is looked at.
    let secret = headers.get("x-fleet-secret").map(|v| v.as_bytes());
    edge.auth.check_fleet_secret(secret)?;
    let body = body?;
    let req = FleetRequest {
        session_id: body.str_or_empty("session_id")?,
        agent_id: body.str_or_empty("agent_id")?,
        role: body.str("role")?,
        ttl: body.int("ttl")?,
        scope: body.str("scope")?,
        audience: body.str("audience")?,
    };
    Ok(Json(edge.auth.mint_fleet_session(secret, req).await?).into_response())
}

pub(super) async fn revoke(
    State(edge): State<EdgeState>,
    Bearer(token): Bearer,
    body: Result<JsonObject, Error>,
) -> Result<Response, Error> {
    // Authorization first: an anonymous caller learns nothing about the body.
    let caller = edge
        .auth
        .authorize(token.as_deref(), Gate::Operator)
        .await?;
    let body = body?;
    let jti = body.str_or_empty("jti")?;
    let reason = body.str_or_empty("reason")?;
    // A negative exp is as far in the past as 0 (refused by `revoke`).
    let exp = body.int("exp")?.map(|e| u64::try_from(e).unwrap_or(0));
    let entry = edge.auth.revoke(&caller, &jti, &reason, exp).await?;
    Ok(Json(json!({ "revoked": entry })).into_response())
}

/// `GET /revoked-jtis`: the full list (with its `ETag`, `304` when it
/// matches `If-None-Match`) or, with `?since=`, a delta. The `304` and the
/// empty delta are the hot paths of every consumer's poll, so the request
/// is read in place: the token, the conditional headers and the query are
/// borrowed, not copied.
pub(super) async fn revoked_jtis(
    State(edge): State<EdgeState>,
    req: axum::extract::Request,
) -> Result<Response, Error> {
    let headers = req.headers();
    edge.auth
        .authorize_shared(bearer_token(headers), Gate::Service)
        .await?;
    if let Some(since) = req.uri().query().and_then(since_param) {
        // A cursor this server did not issue is unknown: the full list.
        if let Some(after) = bodies::parse_cursor(since) {
            if let Some((items, cursor)) = edge.auth.revoked_since(after).await? {
                if items.is_empty() {
                    // With its length set, axum does not write one per poll.
                    let (body, len) = edge.bodies.empty_delta(cursor);
                    let mut resp = json_bytes(body);
                    resp.headers_mut().insert(header::CONTENT_LENGTH, len);
                    return Ok(resp);
                }
                return Ok(json_bytes(bodies::delta_json(&items, cursor)?));
            }
        }
    }
    let poll = edge.bodies.revoked_jtis(&edge.auth).await?;
    let gzip = accepts_gzip(headers);
    let etag = if gzip { &poll.etag_gzip } else { &poll.etag };
    let mut resp = if bodies::none_match(headers, [&poll.etag, &poll.etag_gzip]) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = json_bytes(Bodies::gzip_of(&edge.auth, &poll).await?);
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        json_bytes(poll.json.clone())
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(resp)
}

pub(super) async fn revoked_jtis_stream(
    State(edge): State<EdgeState>,
    Bearer(token): Bearer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let caller = edge.auth.authorize(token.as_deref(), Gate::Service).await?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or(""))
        .or_else(|| query.as_deref().and_then(since_param));
    super::stream::open(&edge.hub, &edge.auth, caller, resume).await
}

/// The raw value of `since` in a query string, if present (a cursor needs
/// no percent-decoding; one that has any is not ours).
fn since_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("since="))
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

/// The query string of `/mints`.
#[derive(Deserialize)]
pub(super) struct MintsQuery {
    limit: Option<i64>,
}

pub(super) async fn mints(
    State(edge): State<EdgeState>,
    Bearer(token): Bearer,
    query: Result<Query<MintsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    edge.auth
        .authorize(token.as_deref(), Gate::Operator)
        .await?;
    let Query(MintsQuery { limit }) =
        query.map_err(|_| Error::BadRequest("limit must be an integer".into()))?;
    let items = edge.auth.mints(limit).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub(super) async fn method_not_allowed() -> Response {
    super::error::detail(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
    )
}
