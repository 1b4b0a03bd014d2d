//! The app factory and helpers shared by the integration tests.

#![allow(dead_code)]

pub mod forge;
pub mod issuer;
pub mod pico;
pub mod proxy;
pub mod redis_server;
pub mod server;
pub mod sse;
pub mod wallets;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use wallet_auth::clock::ManualClock;
use wallet_auth::{AuthConfig, SigningKey, WalletAuth, WalletAuthBuilder};

pub use wallets::Wallet;

pub const PREFIX: &str = "/api/v1/auth";

/// The committed test key (fixtures/keys/test-rsa-2048.pem).
pub fn test_key_pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/keys/test-rsa-2048.pem"
    ))
    .unwrap()
}

/// An attacker's key (fixtures/keys/other-rsa-2048.pem).
pub fn other_key_pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/keys/other-rsa-2048.pem"
    ))
    .unwrap()
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_pem(&test_key_pem()).unwrap()
}

pub struct TestApp {
    pub auth: WalletAuth,
    pub router: Router,
    pub clock: ManualClock,
}

/// A router on the committed test key and a manual clock.
pub fn app(config: AuthConfig) -> TestApp {
    app_with(config, |builder| builder)
}

/// As [`app`], with more set on the builder (stores, say) by `more`.
pub fn app_with(
    config: AuthConfig,
    more: impl FnOnce(WalletAuthBuilder) -> WalletAuthBuilder,
) -> TestApp {
    let clock = ManualClock::starting_now();
    // The test key is persistent: a test app keeps its denylist in memory
    // unless it names a file.
    let config = AuthConfig {
        allow_memory_revocations: true,
        ..config
    };
    let builder = WalletAuth::builder(config)
        .with_signing_key(signing_key())
        .with_clock(Arc::new(clock.clone()));
    let auth = more(builder).build().unwrap();
    let router = auth.router();
    TestApp {
        auth,
        router,
        clock,
    }
}

/// The `jti` of every item of a `/revoked-jtis` or `/mints` body, in order.
pub fn item_jtis(body: &Value) -> Vec<&str> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["jti"].as_str().unwrap())
        .collect()
}

pub fn default_app() -> TestApp {
    app(AuthConfig::default())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn detail(&self) -> &str {
        self.body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {} {}", self.status, self.body))
    }
}

impl TestApp {
    /// Sends a request with a raw body through the router.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{status}: body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.raw("POST", path, serde_json::to_vec(&body).unwrap(), &[])
            .await
    }

    pub async fn post_with(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        self.raw("POST", path, serde_json::to_vec(&body).unwrap(), headers)
            .await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.raw("GET", path, Vec::new(), &headers).await
    }

    pub async fn challenge(&self, address: &str) -> String {
        let r = self
            .post("/challenge", serde_json::json!({ "address": address }))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["challenge"].as_str().unwrap().to_string()
    }

    /// A complete, valid sign-in body for `wallet` over a fresh challenge.
    pub async fn sign_in_body(&self, wallet: &Wallet) -> Value {
        let address = wallet.address();
        let nonce = self.challenge(&address).await;
        serde_json::json!({
            "address": address,
            "public_key": hex::encode(wallet.public_key()),
            "signature": hex::encode(wallet.sign(nonce.as_bytes())),
            "challenge": nonce,
            "algorithm": wallet.algorithm(),
        })
    }

    /// Signs in and returns the 200 reply body.
    pub async fn sign_in(&self, wallet: &Wallet) -> Value {
        let body = self.sign_in_body(wallet).await;
        let r = self.post("/sign-in", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }
}

/// An access token of `role` minted with the app's own keys, as `/login`
/// would mint one for the admin.
pub fn token_with_role(app: &TestApp, role: &str) -> String {
    use wallet_auth::clock::Clock;
    let now = app.clock.now_secs();
    let claims = wallet_auth::AccessClaims::new(
        "http://localhost:8100",
        "pico",
        &format!("{role}@test"),
        role,
        now,
        now + 3600,
    );
    app.auth.tokens().sign_access(&claims).unwrap()
}

/// Decodes a JWT's payload without verifying it (for inspecting claims).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Decodes a JWT's header without verifying it.
pub fn header_of(token: &str) -> Value {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A test whose external dependency is missing: fails under `CI=true`,
/// otherwise says loudly that it did not run. Returns normally only outside CI.
pub fn missing_dependency(test: &str, why: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if in_ci {
        panic!("{test}: {why} (CI=true: a missing dependency is a failure)");
    }
    // Straight to the stderr handle: eprintln! inside a test is captured by
    // the harness and would only show on failure.
    use std::io::Write;
    let bang = "!".repeat(71);
    let _ = write!(
        std::io::stderr().lock(),
        "\n{bang}\n!!! SKIPPED {test}: {why}\n\
         !!! run .ci/setup to install it; under CI=true this is a failure\n{bang}\n\n"
    );
}

/// A loopback port that was free a moment ago (for a child process to listen on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The interop virtualenv's python (created by .ci/setup, or here on first
/// use), or `None` when it cannot be had.
pub fn interop_python() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/interop-venv/bin/python");
    let works = |p: &std::path::Path| {
        std::process::Command::new(p)
            .args(["-c", "import pico_client_auth"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&python) {
        return Some(python);
    }
    // Create it as .ci/setup does; only this test binary uses it.
    let venv = root.join("target/interop-venv");
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .and_then(|s| {
            if !s.success() {
                return Ok(s);
            }
            std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(root.join("tests/interop/requirements.txt"))
                .status()
        });
    if status.is_ok_and(|s| s.success()) && works(&python) {
        Some(python)
    } else {
        None
    }
}

/// The default router on the test key.
pub fn default_router() -> Router {
    default_app().router
}

/// The fleet secret of [`fleet_app`].
pub const FLEET_SECRET: &str = "fleet-secret-for-tests";

/// A router with `/fleet/sessions` enabled under [`FLEET_SECRET`].
pub fn fleet_app() -> TestApp {
    wallet_auth::install_crypto_provider();
    app(AuthConfig {
        fleet_mint_secret: FLEET_SECRET.into(),
        ..Default::default()
    })
}

/// POSTs `body` to `/fleet/sessions` with [`FLEET_SECRET`].
pub async fn fleet(app: &TestApp, body: Value) -> Reply {
    app.post_with("/fleet/sessions", body, &[("x-fleet-secret", FLEET_SECRET)])
        .await
}

/// An operator access token minted with the app's own keys.
pub async fn operator_token(app: &TestApp) -> String {
    token_with_role(app, "operator")
}

/// POSTs `body` to `path` with `token` as the Bearer token.
pub async fn post_bearer(app: &TestApp, path: &str, body: Value, token: &str) -> Reply {
    let h = format!("Bearer {token}");
    app.post_with(path, body, &[("authorization", h.as_str())])
        .await
}
