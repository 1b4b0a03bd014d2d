//! End to end: consumer/examples/protected.rs as a child process in front
//! of the real server on loopback. `GET /whoami` answers 200 with the
//! caller's sub, role and jti, 401 without a valid token or for a revoked
//! one, 403 for a role it does not allow, and 503 once the issuer has been
//! unreachable longer than the denylist's bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::issuer::Issuer;
use serde_json::{json, Value};
use wallet_auth::AuthConfig;

/// The example, built (a no-op when it is up to date: the test never runs
/// a binary older than the library).
fn protected_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join("protected");
    {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "wallet-auth-consumer",
                "--example",
                "protected",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the protected example failed");
    }
    bin
}

struct Protected {
    child: Child,
    url: String,
}

impl Drop for Protected {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::zombie_processes)] // Protected::drop kills and waits.
fn start_protected(issuer: &str, service_token: &str, extra: &[&str]) -> Protected {
    let mut child = Command::new(protected_binary())
        .args(["--listen", "127.0.0.1:0", "--issuer", issuer])
        .args(extra)
        .env("WALLET_AUTH_SERVICE_TOKEN", service_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = common::server::lines_of(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("protected did not start");
        if let Some(url) = line.strip_prefix("protected listening on ") {
            common::server::drain(rx);
            return Protected {
                child,
                url: url.trim().to_string(),
            };
        }
    }
}

/// An access token for `role` with the server's issuer (the listener).
fn mint(app: &common::TestApp, iss: &str, role: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        wallet_auth::AccessClaims::new(iss, "pico", &format!("{role}@test"), role, now, now + 3600);
    app.auth.tokens().sign_access(&claims).unwrap()
}

async fn whoami(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{url}/whoami"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protected_example_answers_whoami() {
    let listener = Issuer::bind().await;
    let iss = format!("http://{}", listener.local_addr().unwrap());
    let app = common::app(AuthConfig {
        issuer: iss.clone(),
        ..AuthConfig::default()
    });
    let issuer = Issuer::serve(listener, app.router.clone());
    let service = mint(&app, &iss, "service");
    let p = start_protected(&iss, &service, &["--role", "wallet", "--role", "operator"]);

    let wallet = mint(&app, &iss, "wallet");
    let (status, body) = whoami(&p.url, Some(&wallet)).await;
    assert_eq!(status, 200, "{body}");
    let claims = common::claims_of(&wallet);
    assert_eq!(
        body,
        json!({ "sub": "wallet@test", "role": "wallet", "jti": claims["jti"] })
    );

    let (status, body) = whoami(&p.url, None).await;
    assert_eq!(status, 401);
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = whoami(&p.url, Some("not-a-token")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("invalid")),
        "{body}"
    );
    let (status, body) = whoami(&p.url, Some(&service)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // Revoked: refused within a second (the example streams the feed).
    let op = mint(&app, &iss, "operator");
    let r = reqwest::Client::new()
        .post(format!("{iss}/api/v1/auth/revoke"))
        .bearer_auth(&op)
        .json(&json!({ "jti": claims["jti"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t0 = Instant::now();
    loop {
        let (status, body) = whoami(&p.url, Some(&wallet)).await;
        if status == 401 {
            assert_eq!(body["reason"], "revoked", "{body}");
            break;
        }
        assert_eq!(status, 200);
        assert!(t0.elapsed() < Duration::from_secs(1), "still accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = whoami(&p.url, Some(&op)).await;
    assert_eq!(status, 200);
    drop(issuer);
}
