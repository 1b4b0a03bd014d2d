//! Runs the standalone example as a child process on 127.0.0.1:0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Path of the built standalone example, building it if needed.
pub fn standalone_binary() -> PathBuf {
    // target/<profile>/deps/<test-binary> -> target/<profile>/examples/standalone
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = profile_dir.join("examples").join("standalone");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "standalone"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example standalone");
        assert!(status.success(), "building the standalone example failed");
    }
    bin
}

/// Every line a child prints on `stdout`, in order, from a reader thread
/// that ends at EOF or once the receiver is gone.
pub fn lines_of(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Keeps taking the rest of `lines`, so the child never blocks on a full pipe.
pub fn drain(lines: Receiver<String>) {
    std::thread::spawn(move || while lines.recv().is_ok() {});
}

/// A running standalone server; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// `http://ADDR` of the main listener (health and discovery).
    pub root: String,
    /// `http://ADDR/metrics` of the metrics listener, when it is on.
    pub metrics: Option<String>,
    pub stdout_lines: Vec<String>,
}

impl Server {
    /// Starts the server with `--data-dir dir --listen 127.0.0.1:0`, extra
    /// args and env, and waits (bounded) until it prints its address.
    #[allow(clippy::zombie_processes)] // Server::drop kills and waits.
    pub fn start(dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(standalone_binary());
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("RUST_LOG", "warn")
            // Each server its own free metrics port (the default, 9464,
            // would collide between parallel tests); `env` may override.
            .env("SERVER_AUTH_METRICS_LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn standalone");
        let rx = lines_of(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("standalone did not start; stdout so far: {lines:?}")
            });
            if let Some(addr) = line.strip_prefix("wallet-auth listening on ") {
                let root = addr.trim().to_string();
                let base = format!("{root}/api/v1/auth");
                let metrics = lines.iter().find_map(|l: &String| {
                    l.strip_prefix("wallet-auth metrics on ")
                        .map(|m| m.trim().to_string())
                });
                lines.push(line);
                drain(rx);
                return Server {
                    child,
                    base,
                    root,
                    metrics,
                    stdout_lines: lines,
                };
            }
            lines.push(line);
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "standalone did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON client for a server's API base (`http://ADDR/api/v1/auth`).
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
}

impl Http {
    pub fn new(base: &str) -> Self {
        Http {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            base: base.to_string(),
        }
    }

    /// POSTs JSON with optional headers; returns the status and JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// GETs with an optional Bearer token.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Challenge, sign, sign in; asserts 200 and returns the reply.
    pub async fn sign_in(&self, wallet: &super::Wallet) -> serde_json::Value {
        let (status, c) = self
            .post(
                "/challenge",
                serde_json::json!({ "address": wallet.address() }),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{c}");
        let nonce = c["challenge"].as_str().unwrap();
        let body = serde_json::json!({
            "address": wallet.address(),
            "public_key": hex::encode(wallet.public_key()),
            "signature": hex::encode(wallet.sign(nonce.as_bytes())),
            "challenge": nonce,
            "algorithm": wallet.algorithm(),
        });
        let (status, s) = self.post("/sign-in", body, &[]).await;
        assert_eq!(status, 200, "{s}");
        s
    }

    /// A fleet session token with `role`.
    pub async fn fleet_token(&self, secret: &str, role: &str) -> String {
        let body = serde_json::json!({ "session_id": format!("{role}-session"), "agent_id": "tests", "role": role });
        let (status, r) = self
            .post("/fleet/sessions", body, &[("x-fleet-secret", secret)])
            .await;
        assert_eq!(status, 200, "{r}");
        r["session_token"].as_str().unwrap().to_string()
    }

    /// The bootstrap admin's access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, r) = self
            .post(
                "/login",
                serde_json::json!({ "email": email, "password": password }),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{r}");
        r["access_token"].as_str().unwrap().to_string()
    }
}
