//! The signing key set (SPEC 8): rotation with pre-publication, retired
//! keys kept while their tokens live, tokens minted before a rotation kept
//! valid (our own Bearer checks and pico-client-auth), several processes on
//! one key directory, crashes during a rotation, an RS256 -> ML-DSA-65
//! migration.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::pico::Consumer;
use common::server::{standalone_binary, Http, Server};
use common::{header_of, TestApp, Wallet};
use serde_json::{json, Value};
use wallet_auth::clock::ManualClock;
use wallet_auth::keyset::{Initial, KeySetOptions};
use wallet_auth::token::SigningAlgorithm;
use wallet_auth::{AuthConfig, KeySet, KeyState, WalletAuth};

const PRE: u64 = 600;
const FLEET: &str = "fleet-secret-for-key-rotation";

fn config(dir: &std::path::Path) -> AuthConfig {
    AuthConfig {
        signing_keys_dir: dir.to_string_lossy().into(),
        key_prepublish_seconds: PRE,
        access_token_expire_minutes: 20,
        allow_memory_revocations: true,
        fleet_mint_secret: FLEET.into(),
        ..Default::default()
    }
}

fn app(dir: &std::path::Path, clock: &ManualClock) -> TestApp {
    let auth = WalletAuth::builder(config(dir))
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let router = auth.router();
    TestApp {
        auth,
        router,
        clock: clock.clone(),
    }
}

/// Another process's view of the key directory (as `standalone keys rotate`).
fn other_process(dir: &std::path::Path, clock: &ManualClock) -> KeySet {
    let opts = KeySetOptions::from_config(&config(dir), dir).unwrap();
    KeySet::open(opts, Arc::new(clock.clone()), Initial::default()).unwrap()
}

fn jwks_kids(app_jwks: &Value) -> Vec<String> {
    app_jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

async fn fleet_token(app: &TestApp, role: &str, ttl: u64) -> String {
    let r = app
        .post_with(
            "/fleet/sessions",
            json!({ "session_id": "s", "agent_id": "a", "role": role, "ttl": ttl }),
            &[("x-fleet-secret", FLEET)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["session_token"].as_str().unwrap().to_string()
}

async fn feed_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/revoked-jtis", Some(token)).await.status
}

#[tokio::test]
async fn rotation_prepublishes_switches_and_retires_after_the_last_token() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let app = app(dir.path(), &clock);
    let old_kid = app.auth.tokens().kid();
    let states = app.auth.key_states();
    assert_eq!(states.len(), 1);
    assert_eq!(
        states[0].state,
        KeyState::Current,
        "the first key signs at once"
    );

    // Tokens minted before the rotation: a wallet's, and a service token
    // for the denylist feed living 3 h.
    let wallet = Wallet::generate("Ed25519");
    let before = app.sign_in(&wallet).await;
    let old_access = before["access_token"].as_str().unwrap().to_string();
    let service = fleet_token(&app, "service", 3 * 3600).await;
    assert_eq!(header_of(&service)["kid"], old_kid.as_str());

    // Another process rotates; the server re-reads the directory.
    let next = other_process(dir.path(), &clock)
        .rotate(SigningAlgorithm::MlDsa65)
        .unwrap();
    assert_eq!(next.state, KeyState::Next);
    app.auth.reload_keys().await.unwrap();
    let r = app.get("/jwks", None).await;
    let kids = jwks_kids(&r.body);
    assert!(
        kids.contains(&next.kid) && kids.contains(&old_kid),
        "{kids:?}"
    );
    // No consumer may cache the JWKS past the pre-publication window.
    let cc = r.headers["cache-control"].to_str().unwrap();
    let max_age: u64 = cc.rsplit("max-age=").next().unwrap().parse().unwrap();
    assert!(max_age <= PRE, "{cc}");
    // Published at once, but not signing yet.
    let t = app.sign_in(&wallet).await;
    assert_eq!(
        header_of(t["access_token"].as_str().unwrap())["kid"],
        old_kid.as_str()
    );

    // After the window the new key signs (no reload needed: the switch is
    // the clock's), and the old tokens keep passing our own Bearer check.
    clock.advance(Duration::from_secs(PRE));
    let t = app.sign_in(&wallet).await;
    let new_access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&new_access)["kid"], next.kid.as_str());
    assert_eq!(header_of(&new_access)["alg"], "ML-DSA-65");
    assert_eq!(feed_status(&app, &service).await, StatusCode::OK);
    app.auth.tokens().validate_access(&old_access).unwrap();
    let states = app.auth.key_states();
    let old = states.iter().find(|k| k.kid == old_kid).unwrap();
    assert_eq!(old.state, KeyState::Retired);
    let retires_after = old.retires_after.unwrap();
    let service_exp = common::claims_of(&service)["exp"].as_u64().unwrap();
    assert!(
        retires_after >= service_exp,
        "kept while the service token lives"
    );

    // Past the wallet token's exp, the 3 h service token still lives: the
    // old key stays published.
    clock.advance(Duration::from_secs(3600));
    app.auth.reload_keys().await.unwrap();
    assert!(jwks_kids(&app.get("/jwks", None).await.body).contains(&old_kid));
    assert_eq!(feed_status(&app, &service).await, StatusCode::OK);

    // Once its last token has expired, the old key is dropped.
    let now = wallet_auth::clock::Clock::now_secs(&clock);
    clock.advance(Duration::from_secs(retires_after - now + 1));
    app.auth.reload_keys().await.unwrap();
    let kids = jwks_kids(&app.get("/jwks", None).await.body);
    assert_eq!(kids, std::slice::from_ref(&next.kid));
    assert_eq!(app.auth.key_states().len(), 1);
    assert!(!dir.path().join(format!("key-{old_kid}.pem")).exists());
}

#[tokio::test]
async fn a_crash_during_rotation_leaves_a_usable_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let first = app(dir.path(), &clock);
    let kid = first.auth.tokens().kid();
    let wallet = Wallet::generate("Ed25519");
    let token = first.sign_in(&wallet).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(first);

    // A rotation that died half-way: a key file without metadata and a
    // temporary metadata file.
    let orphan = wallet_auth::SigningKey::generate_ml_dsa_65().unwrap();
    let orphan_file = dir.path().join(format!("key-{}.pem", orphan.kid()));
    orphan.store(&orphan_file).unwrap();
    std::fs::write(
        dir.path().join("keyset.json.tmp.4242"),
        b"{\"version\":1,\"k",
    )
    .unwrap();
    let second = app(dir.path(), &clock);
    assert_eq!(second.auth.tokens().kid(), kid);
    assert_eq!(second.auth.key_states().len(), 1);
    assert!(!orphan_file.exists());
    second.auth.tokens().validate_access(&token).unwrap();
    second.sign_in(&wallet).await;
    drop(second);

    // Torn metadata (not something our writes leave, but a disk can):
    // rebuilt from the key files; the old token keeps validating.
    std::fs::write(
        dir.path().join("keyset.json"),
        b"{\"version\":1,\"keys\":[{\"ki",
    )
    .unwrap();
    let third = app(dir.path(), &clock);
    assert_eq!(third.auth.key_states().len(), 1);
    third.auth.tokens().validate_access(&token).unwrap();
    third.sign_in(&wallet).await;
    drop(third);
}

/// Runs `standalone keys ...` and returns its stdout.
fn keys_cli(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(standalone_binary());
    // The rotating process's key_prepublish_seconds decides when a new key signs.
    cmd.arg("keys").args(args).env("RUST_LOG", "warn");
    for (k, v) in ROTATION_ENV {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `check` every 100 ms until it holds, for at most 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn signing_kid(http: &Http) -> (String, String) {
    let t = http.sign_in(&Wallet::generate("Ed25519")).await;
    let h = header_of(t["access_token"].as_str().unwrap());
    (
        h["kid"].as_str().unwrap().to_string(),
        h["alg"].as_str().unwrap().to_string(),
    )
}

async fn published(http: &Http) -> Vec<(String, String)> {
    let (_, jwks) = http.get("/jwks", None).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_string(),
                k["alg"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const ROTATION_ENV: [(&str, &str); 6] = [
    // The polls below sign in often.
    ("SERVER_AUTH_RATE_LIMIT_PER_IP_PER_MINUTE", "0"),
    ("SERVER_AUTH_KEY_PREPUBLISH_SECONDS", "3"),
    ("SERVER_AUTH_KEY_RELOAD_SECONDS", "1"),
    ("SERVER_AUTH_FLEET_MINT_SECRET", "interop-fleet-secret"),
    ("SERVER_AUTH_AUTO_CREATE_ADMIN", "true"),
    ("SERVER_AUTH_ADMIN_PASSWORD", "interop-admin-password"),
];

/// Two standalone servers with their own data directories share one key
/// directory; after `keys rotate --algorithm ML-DSA-65` both publish both
/// kinds, both switch to the new kid, and tokens minted before keep
/// passing the Bearer checks of either (an RS256 -> ML-DSA-65 migration).
#[tokio::test]
async fn two_standalones_agree_after_keys_rotate_and_migrate_to_ml_dsa() {
    let keys = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys_dir = keys.path().to_string_lossy().to_string();
    let mut env: Vec<(&str, &str)> = ROTATION_ENV.to_vec();
    env.push(("SERVER_AUTH_SIGNING_KEYS_DIR", &keys_dir));
    let a = Server::start(a_dir.path(), &[], &env);
    let b = Server::start(b_dir.path(), &[], &env);
    let (ha, hb) = (Http::new(&a.base), Http::new(&b.base));
    let (old_kid, old_alg) = signing_kid(&ha).await;
    assert_eq!(old_alg, "RS256");
    assert_eq!(signing_kid(&hb).await.0, old_kid, "one key set, one signer");
    let op = ha.login("admin@pico.local", "interop-admin-password").await;
    let service = hb.fleet_token("interop-fleet-secret", "service").await;

    let out = keys_cli(
        &[
            "rotate",
            "--data-dir",
            &a_dir.path().to_string_lossy(),
            "--algorithm",
            "ML-DSA-65",
        ],
        &[("SERVER_AUTH_SIGNING_KEYS_DIR", &keys_dir)],
    );
    let new_kid = out.trim().to_string();
    assert!(!new_kid.is_empty() && new_kid != old_kid);
    let listed = keys_cli(
        &["list", "--data-dir", &a_dir.path().to_string_lossy()],
        &[("SERVER_AUTH_SIGNING_KEYS_DIR", &keys_dir)],
    );
    assert!(
        listed.contains(&new_kid) && listed.contains("next"),
        "{listed}"
    );

    for http in [&ha, &hb] {
        eventually("both kinds published", || async {
            let p = published(http).await;
            p.contains(&(old_kid.clone(), "RS256".into()))
                && p.contains(&(new_kid.clone(), "ML-DSA-65".into()))
        })
        .await;
    }
    for http in [&ha, &hb] {
        eventually("the new key signs", || async {
            signing_kid(http).await == (new_kid.clone(), "ML-DSA-65".to_string())
        })
        .await;
    }
    // Tokens of the RS256 key pass the Bearer checks of both servers.
    for http in [&ha, &hb] {
        let (status, _) = http.get("/revoked-jtis", Some(&service)).await;
        assert_eq!(status, 200);
        let fresh = http.sign_in(&Wallet::generate("Ed25519")).await;
        let jti = common::claims_of(fresh["access_token"].as_str().unwrap())["jti"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, r) = http
            .post(
                "/revoke",
                json!({ "jti": jti, "reason": "migration" }),
                &[("authorization", &format!("Bearer {op}"))],
            )
            .await;
        assert_eq!(status, 200, "{r}");
    }
    let listed = keys_cli(
        &["list", "--data-dir", &a_dir.path().to_string_lossy()],
        &[("SERVER_AUTH_SIGNING_KEYS_DIR", &keys_dir)],
    );
    assert!(
        listed.contains("retired") && listed.contains("current"),
        "{listed}"
    );
    drop((a, b));
}

/// pico-client-auth validates, through our JWKS, a token minted before a
/// `keys rotate`, polls the denylist with a service token of the old key,
/// and honours a revocation made with a token of the new key.
#[tokio::test]
async fn pico_client_auth_validates_tokens_minted_before_a_rotation() {
    let Some(python) =
        common::pico::python("pico_client_auth_validates_tokens_minted_before_a_rotation")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &ROTATION_ENV);
    let http = Http::new(&server.base);
    let wallet = Wallet::generate("Ed25519");
    let access = http.sign_in(&wallet).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let service = http.fleet_token("interop-fleet-secret", "service").await;
    let (old_kid, _) = signing_kid(&http).await;

    let new_kid = keys_cli(
        &[
            "rotate",
            "--data-dir",
            &dir.path().to_string_lossy(),
            "--algorithm",
            "RS256",
        ],
        &[],
    )
    .trim()
    .to_string();
    eventually("the new key signs", || async {
        signing_kid(&http).await.0 == new_kid
    })
    .await;
    assert!(published(&http).await.iter().any(|(k, _)| *k == old_kid));

    let base = server.base.clone();
    let mut consumer = Consumer::start(&python, &base, service, access.clone(), "RS256", &[]);
    assert_eq!(
        consumer.line().await,
        format!("VALID {} wallet", wallet.address())
    );
    // The operator's token is of the new key.
    let op = http
        .login("admin@pico.local", "interop-admin-password")
        .await;
    assert_eq!(header_of(&op)["kid"], new_kid.as_str());
    let jti = common::claims_of(&access)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = http
        .post(
            "/revoke",
            json!({ "jti": jti, "reason": "rotation" }),
            &[("authorization", &format!("Bearer {op}"))],
        )
        .await;
    assert_eq!(status, 200);
    consumer.go();
    let second = consumer.line().await;
    assert!(
        second.starts_with("REJECTED") && second.contains(&jti),
        "{second}"
    );
    consumer.exits_ok();
}

/// An older data directory's `signing-key.pem` is imported as the current
/// key of the new key set: its tokens keep validating.
#[tokio::test]
async fn an_old_data_dir_key_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signing-key.pem"), common::test_key_pem()).unwrap();
    let old = common::signing_key();
    // `--metrics-listen` is accepted (it only sets `metrics_listen`).
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"], &[]);
    let http = Http::new(&server.base);
    assert_eq!(signing_kid(&http).await.0, old.kid());
    let keys = keys_cli(&["list", "--data-dir", &dir.path().to_string_lossy()], &[]);
    assert!(
        keys.contains(old.kid()) && keys.contains("current"),
        "{keys}"
    );
}
