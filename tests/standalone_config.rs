//! The standalone server's configuration, as an operator meets it: the
//! binary started as a child process with `SERVER_AUTH_*` variables or a
//! YAML file. The file and the variables are both read (a variable wins
//! over the file); a value that does not parse stops start-up with a
//! message naming it; an unknown variable is named in a warning; the role
//! guardrails refuse a configuration that would let one role pass for
//! another.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::server::{Http, Server};
use common::Wallet;
use serde_json::json;

/// How a start-up attempt ended.
struct Outcome {
    /// `None`: the server started listening (and was then killed).
    exit: Option<ExitStatus>,
    stderr: String,
}

impl Outcome {
    /// Asserts start-up was refused and the message names `name`.
    fn assert_refused_naming(&self, name: &str) {
        match self.exit {
            None => panic!(
                "the server started; it should have refused its configuration naming {name}.\n\
                 stderr:\n{}",
                self.stderr
            ),
            Some(status) => assert!(!status.success(), "{status:?}"),
        }
        assert!(
            self.stderr.contains(name),
            "stderr does not name {name}:\n{}",
            self.stderr
        );
    }
}

/// Starts the standalone binary on `127.0.0.1:0` with `dir` as its data
/// directory, `args` and `env`, and waits (bounded) until it either exits
/// or prints its address; a started server is killed. Returns everything it
/// wrote to stderr.
fn start_up(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(common::server::standalone_binary());
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    // Only the variables under test: none inherited from the caller's shell.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SERVER_AUTH_") {
            cmd.env_remove(name);
        }
    }
    // A free metrics port each (the default would collide between tests).
    cmd.env("SERVER_AUTH_METRICS_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn standalone");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout = child.stdout.take().expect("stdout");
    let (listening, signal) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("wallet-auth listening on ") {
                let _ = listening.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if signal.recv_timeout(Duration::from_millis(50)).is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the standalone neither started nor exited within 60 s");
        }
    };
    let stderr = stderr_reader.join().expect("stderr reader");
    Outcome { exit, stderr }
}

#[test]
fn a_misspelt_boolean_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(
        dir.path(),
        &[],
        &[("SERVER_AUTH_MINT_AUDIT_FAIL_CLOSED", "ture")],
    );
    out.assert_refused_naming("SERVER_AUTH_MINT_AUDIT_FAIL_CLOSED");
    assert!(out.stderr.contains("not a boolean"), "{}", out.stderr);
    // Refused before anything was created: no key, no files.
    assert!(!dir.path().join("signing-key.pem").exists());
    assert!(!dir.path().join("keys").exists());
}

#[test]
fn every_boolean_spelling_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(
        dir.path(),
        &[],
        &[
            ("SERVER_AUTH_MINT_AUDIT_FAIL_CLOSED", "On"),
            ("SERVER_AUTH_AUTO_CREATE_ADMIN", "NO"),
        ],
    );
    assert!(out.exit.is_none(), "did not start:\n{}", out.stderr);
}

#[test]
fn a_number_that_does_not_parse_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(
        dir.path(),
        &[],
        &[("SERVER_AUTH_CHALLENGE_TTL_SECONDS", "60s")],
    );
    out.assert_refused_naming("SERVER_AUTH_CHALLENGE_TTL_SECONDS");
}

#[test]
fn a_bad_value_in_the_config_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "server_auth:\n  mint_audit_fail_closed: ture\n").unwrap();
    let out = start_up(dir.path(), &["--config", cfg.to_str().unwrap()], &[]);
    out.assert_refused_naming("server_auth.mint_audit_fail_closed");
}

#[test]
fn an_unknown_variable_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(dir.path(), &[], &[("SERVER_AUTH_NO_SUCH_THING", "1")]);
    assert!(
        out.exit.is_none(),
        "an unknown variable is a warning, not an error:\n{}",
        out.stderr
    );
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("SERVER_AUTH_NO_SUCH_THING"))
        .unwrap_or_else(|| panic!("no line names the variable:\n{}", out.stderr));
    assert!(warning.contains("WARN"), "{warning}");
}

// Role guardrails. The checks themselves belong to the configuration's
// validation (`WalletAuth::builder(..).build()`), which is being added
// separately: until it is merged, these three tests FAIL on this branch
// (the server starts), by design.

#[test]
fn admin_role_wallet_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(dir.path(), &[], &[("SERVER_AUTH_ADMIN_ROLE", "wallet")]);
    out.assert_refused_naming("admin_role");
}

#[test]
fn fleet_allowed_roles_with_operator_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(
        dir.path(),
        &[],
        &[
            ("SERVER_AUTH_FLEET_ALLOWED_ROLES", "agent,operator"),
            (
                "SERVER_AUTH_FLEET_MINT_SECRET",
                "a-fleet-secret-of-32-bytes-or-so",
            ),
        ],
    );
    out.assert_refused_naming("fleet_allowed_roles");
}

#[test]
fn a_ten_byte_fleet_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = start_up(
        dir.path(),
        &[],
        &[("SERVER_AUTH_FLEET_MINT_SECRET", "0123456789")],
    );
    out.assert_refused_naming("fleet_mint_secret");
    assert!(
        !out.stderr.contains("0123456789"),
        "the secret itself is never printed:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn config_file_and_env_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "server_auth:\n  audience: from-yaml\n  challenge_ttl_seconds: 30\n  issuer: http://yaml\n",
    )
    .unwrap();
    let server = Server::start(
        dir.path(),
        &["--config", cfg.to_str().unwrap()],
        &[
            ("SERVER_AUTH_ISSUER", "http://from-env"),
            ("SERVER_AUTH_SUPPORTED_WALLET_ALGORITHMS", "Ed25519"),
        ],
    );
    let http = Http::new(&server.base);
    let (_, c) = http
        .post("/challenge", json!({ "address": "x" }), &[])
        .await;
    assert_eq!(c["ttl"], 30);
    let tokens = http.sign_in(&Wallet::generate("Ed25519")).await;
    let claims = common::claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "from-yaml");
    assert_eq!(claims["iss"], "http://from-env");
    // Only Ed25519 is enabled by the env list.
    let body = json!({"address":"a","public_key":"aa","signature":"aa","challenge":"c","algorithm":"secp256k1"});
    let (status, r) = http.post("/sign-in", body, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(r["detail"], "unsupported wallet algorithm: secp256k1");
}

#[test]
fn bad_config_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::server::standalone_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("SERVER_AUTH_ALGORITHM", "HS256")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("algorithm"), "{err}");
}
