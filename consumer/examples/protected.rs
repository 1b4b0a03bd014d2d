//! A service protected by wallet-auth tokens: `GET /whoami` answers the
//! caller's `sub`, `role` and `jti`, or 401/403/503 with a JSON `detail`.
//!
//! ```text
//! WALLET_AUTH_SERVICE_TOKEN=... cargo run -p wallet-auth-consumer --example protected -- \
//!     --listen 127.0.0.1:8080 --issuer http://127.0.0.1:8100 [--audience pico] [--role wallet]...
//! ```
//!
//! `--role` (repeatable) restricts `/whoami` to those roles (403 for the
//! others). It prints `protected listening on http://ADDR` once bound, so
//! `--listen 127.0.0.1:0` works.

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use wallet_auth_consumer::{Claims, Config, Consumer};

struct Args {
    listen: String,
    issuer: String,
    audience: String,
    roles: Vec<String>,
}

fn usage() -> String {
    "usage: protected --listen ADDR --issuer URL [--audience NAME] [--role ROLE]...".into()
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut issuer, mut audience, mut roles) = (None, None, None, Vec::new());
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--issuer" => issuer = Some(value()?),
            "--audience" => audience = Some(value()?),
            "--role" => roles.push(value()?),
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(Args {
        listen: listen.ok_or_else(usage)?,
        issuer: issuer.ok_or_else(usage)?,
        audience: audience.unwrap_or_else(|| "pico".into()),
        roles,
    })
}

async fn whoami(claims: Claims) -> Json<Value> {
    Json(json!({ "sub": claims.sub, "role": claims.role, "jti": claims.jti }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut config = Config::new(&args.issuer, &args.audience);
    config.service_token = std::env::var("WALLET_AUTH_SERVICE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if config.service_token.is_none() {
        eprintln!(
            "WALLET_AUTH_SERVICE_TOKEN is not set: the denylist cannot be read, tokens get 503"
        );
    }
    let consumer = Consumer::start(config)?;
    if !consumer.ready(Duration::from_secs(5)).await {
        eprintln!("issuer not ready yet; requests get 503 until it is");
    }
    let roles: Vec<&str> = args.roles.iter().map(String::as_str).collect();
    let guard = if roles.is_empty() {
        consumer.layer()
    } else {
        consumer.require_role(&roles)
    };
    let app = Router::new().route("/whoami", get(whoami)).layer(guard);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("protected listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
