//! The floor of the HTTP stack, for `bench/run.sh` (issue 6, part 4): a bare
//! axum server on the same tokio/axum/hyper stack as the standalone server,
//! with two handlers that do the least the real routes must do.
//!
//! ```text
//! cargo run --release --example floor -- --listen 127.0.0.1:8200 --jwks-file jwks.json
//! ```
//!
//! - `GET /api/v1/auth/jwks` answers the bytes of `--jwks-file` (the real
//!   server's JWKS, fetched by the script) with the same headers.
//! - `POST /api/v1/auth/challenge` parses the JSON body, takes 32 random
//!   bytes from the OS and does one map insert, and answers the same JSON
//!   shape as the real route.
//! - `GET /api/v1/auth/revoked-jtis` answers the bytes of `--poll-file` (the
//!   real server's poll body) without checking any token.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dashmap::DashMap;

#[derive(Clone)]
struct Floor {
    jwks: Bytes,
    poll: Bytes,
    map: Arc<DashMap<String, [u8; 32]>>,
}

async fn jwks(State(s): State<Floor>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        s.jwks.clone(),
    )
        .into_response()
}

async fn poll(State(s): State<Floor>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        s.poll.clone(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct ChallengeBody {
    address: String,
}

async fn challenge(State(s): State<Floor>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<ChallengeBody>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad body").into_response();
    };
    let mut nonce = [0u8; 32];
    if getrandom::fill(&mut nonce).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    s.map.insert(req.address, nonce);
    axum::Json(serde_json::json!({ "challenge": hex::encode(nonce), "ttl": 60 })).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:8200".to_string();
    let mut jwks_file = None;
    let mut poll_file = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--listen" => listen = it.next().ok_or("--listen needs a value")?,
            "--jwks-file" => jwks_file = Some(it.next().ok_or("--jwks-file needs a value")?),
            "--poll-file" => poll_file = Some(it.next().ok_or("--poll-file needs a value")?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let jwks_bytes = match jwks_file {
        Some(p) => Bytes::from(std::fs::read(p)?),
        None => Bytes::from_static(br#"{"keys":[]}"#),
    };
    let poll_bytes = match poll_file {
        Some(p) => Bytes::from(std::fs::read(p)?),
        None => Bytes::from_static(br#"{"items":[]}"#),
    };
    let state = Floor {
        jwks: jwks_bytes,
        poll: poll_bytes,
        map: Arc::new(DashMap::new()),
    };
    let app = Router::new()
        .route("/api/v1/auth/jwks", get(jwks))
        .route("/api/v1/auth/challenge", post(challenge))
        .route("/api/v1/auth/revoked-jtis", get(poll))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("floor listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
