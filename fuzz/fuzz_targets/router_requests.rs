//! The request decoders of every route, through the real router. The first
//! byte picks the route (and whether an operator Bearer token or the fleet
//! secret rides along); the rest is the body (the query string for
//! `/mints`). The answer must be a 2xx, or a 4xx / 503 with a JSON `detail`:
//! never another 5xx, never a panic.
#![no_main]

#[path = "../decode.rs"]
mod decode;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use wallet_auth::clock::ManualClock;
use wallet_auth::{AuthConfig, SigningKey, WalletAuth};

const KEY: &str = include_str!("../../fixtures/keys/test-rsa-2048.pem");
const SECRET: &str = "fuzz-fleet-secret";

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    operator: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (router, operator) = rt.block_on(async {
            let clock = ManualClock::new(1_700_000_000_000);
            let auth = WalletAuth::builder(AuthConfig {
                fleet_mint_secret: SECRET.into(),
                auto_create_admin: true,
                admin_password: Some("fuzz-admin-password".into()),
                allow_memory_revocations: true,
                ..Default::default()
            })
            .with_signing_key(SigningKey::from_pem(KEY).expect("test key"))
            .with_clock(Arc::new(clock))
            .build()
            .expect("build");
            let now = 1_700_000_000;
            let claims = wallet_auth::AccessClaims::new(
                "http://localhost:8100",
                "pico",
                "operator@fuzz",
                "operator",
                now,
                now + 3600,
            );
            let operator = auth.tokens().sign_access(&claims).expect("sign");
            (auth.router(), operator)
        });
        Fixture {
            rt,
            router,
            operator,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = decode::route_input(data) else {
        return;
    };
    let f = fixture();
    let bearer = format!("Bearer {}", f.operator);
    let (method, path) = (input.method, input.route.as_str());
    let with_credentials = input.with_credentials;
    let body = input.body;
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/api/v1/auth{path}"))
        .header("content-type", "application/json");
    if with_credentials {
        req = req
            .header("authorization", bearer.as_str())
            .header("x-fleet-secret", SECRET);
    }
    // An unparsable query is the HTTP layer's to refuse, not ours.
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    f.rt.block_on(async {
        let resp = f.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(
            status.as_u16() < 500 || status.as_u16() == 503,
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: {status}: not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert!(
                v["detail"].is_string(),
                "{method} {path}: {status}: no detail: {v}"
            );
        }
    });
});
