//! The consumer crate against pico-server-auth 0.2.2, the Python peer
//! (started as bench/run.sh starts it, through bench/pico_app.py): it
//! validates pico's tokens, refuses its refresh tokens (same key, same
//! `iss`/`aud`, `type: refresh`), and honours its full-list denylist (pico
//! has no stream and ignores `?since=`: the consumer falls back to full
//! polls).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wallet_auth_consumer::{Config, Consumer, Reason, RevocationSource};

const PASSWORD: &str = "pico-consumer-test-password";

struct Pico {
    child: Child,
    base: String,
}

impl Drop for Pico {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts pico-server-auth, or says why it cannot (the venv lacks it).
#[allow(clippy::zombie_processes)] // Pico::drop kills and waits.
fn start_pico(dir: &std::path::Path) -> Option<Pico> {
    let python = common::interop_python()?;
    let has_server = Command::new(&python)
        .args(["-c", "import pico_server_auth, uvicorn"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_server {
        return None;
    }
    let port = common::free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/pico_app.py");
    let mut child = Command::new(python)
        .arg(script)
        .args([
            &port.to_string(),
            &dir.display().to_string(),
            "fleet-secret",
            PASSWORD,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    Some(Pico {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

async fn wait_up(pico: &Pico) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        let up = client
            .get(format!("{}/api/v1/auth/jwks", pico.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "pico-server-auth did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(pico: &Pico, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth{path}", pico.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_trusts_pico_server_auth_and_its_denylist() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pico) = start_pico(dir.path()) else {
        common::missing_dependency(
            "consumer_pico",
            "pico-server-auth 0.2.2 and uvicorn are not in target/interop-venv",
        );
        return;
    };
    wait_up(&pico).await;
    let login = post(
        &pico,
        "/login",
        json!({ "email": "admin@pico.local", "password": PASSWORD }),
    )
    .await;
    let access = login["access_token"].as_str().unwrap().to_string();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();

    let mut config = Config::new("http://localhost:8100", "pico");
    config.base_url = Some(pico.base.clone());
    // pico runs with its client middleware off: any token reads the list.
    config.service_token = Some(access.clone());
    config.revocations = RevocationSource::Stream;
    config.poll_interval = Duration::from_millis(300);
    let consumer = Consumer::start(config).unwrap();
    assert!(consumer.ready(Duration::from_secs(20)).await);

    let claims = consumer.validate(&access).await.unwrap();
    assert_eq!(claims.sub, "admin@pico.local");
    assert_eq!(
        consumer.validate(&refresh).await.unwrap_err().reason(),
        Reason::WrongType
    );
    let status = consumer.revocation_status();
    assert_eq!(status.cursor, None, "pico has no feed cursor");
    assert!(!status.streaming);

    post(
        &pico,
        "/revoke",
        json!({ "jti": claims.jti, "reason": "test" }),
    )
    .await;
    let t0 = Instant::now();
    loop {
        match consumer.validate(&access).await {
            Err(r) if r.reason() == Reason::Revoked => break,
            Ok(_) => {}
            Err(r) => panic!("unexpected refusal {r}"),
        }
        // The poll interval, plus one poll of a Python server on a shared box.
        assert!(t0.elapsed() < Duration::from_millis(1300), "still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!consumer.revocation_status().streaming);
}
