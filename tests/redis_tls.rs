//! Redis over TLS against a real `redis-server` started with `--tls-port`
//! (and no plain port), on certificates made here with rcgen: the router's
//! stores over `rediss://`, a server certificate that does not chain to the
//! configured CA (or does not name the host) refused, mutual TLS refused by
//! the server without a trusted client certificate, and every TLS file
//! checked at start-up naming its field.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::redis_server::unique_prefix;
use common::{claims_of, Wallet};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tempfile::TempDir;
use wallet_auth::store_redis::RedisTls;
use wallet_auth::{AuthConfig, ConfigError, RedisOptions, RedisStores, RevocationStore};

// ---------------------------------------------------------------------------
// Certificates

/// A CA, a server certificate for 127.0.0.1 and localhost, a client
/// certificate, and a second CA with a client certificate of its own, as PEM
/// files in a temporary directory.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn make() -> Certs {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();

        let (ca_pem, ca) = make_ca("wallet-auth test CA");
        write("ca.pem", ca_pem);
        let (other_pem, other) = make_ca("some other CA");
        write("other-ca.pem", other_pem);

        let (cert, key) = leaf(
            &ca,
            "redis",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("server.pem", cert);
        write("server-key.pem", key);
        let (cert, key) = leaf(&ca, "wallet-auth", &[], ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", cert);
        write("client-key.pem", key);
        let (cert, key) = leaf(&other, "intruder", &[], ExtendedKeyUsagePurpose::ClientAuth);
        write("other-client.pem", cert);
        write("other-client-key.pem", key);
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

/// A self-signed CA: its PEM and the issuer that signs with it.
fn make_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate signed by `issuer` for `names`: its PEM and its key's PEM.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

// ---------------------------------------------------------------------------
// A redis-server that speaks TLS only

/// A `redis-server` with `--port 0 --tls-port PORT` on 127.0.0.1 and
/// 127.0.0.2, presenting `server.pem`; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl TlsRedis {
    /// Starts one; `client_auth` turns on `--tls-auth-clients yes` (clients
    /// must present a certificate signed by `ca.pem`). `None` (after
    /// `missing_dependency`, a failure under CI=true) without a
    /// TLS-capable redis-server.
    fn start(test: &str, certs: &Certs, client_auth: bool) -> Option<TlsRedis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            common::missing_dependency(test, "redis-server is not on PATH");
            return None;
        }
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let log = dir.path().join("redis.log");
            #[allow(clippy::zombie_processes)] // killed and reaped below or on drop
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1 127.0.0.2"])
                .arg("--tls-cert-file")
                .arg(certs.path("server.pem"))
                .arg("--tls-key-file")
                .arg(certs.path("server-key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(certs.path("ca.pem"))
                .args(["--tls-auth-clients", if client_auth { "yes" } else { "no" }])
                .arg("--dir")
                .arg(dir.path())
                .args(["--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--loglevel", "verbose"])
                .arg("--logfile")
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Ok(Some(_)) = child.try_wait() {
                    if text.contains("Address already in use") {
                        break; // another port
                    }
                    let lower = text.to_ascii_lowercase();
                    if (lower.contains("tls") && lower.contains("not") && lower.contains("support"))
                        || lower.contains("missing implement")
                    {
                        common::missing_dependency(
                            test,
                            "this redis-server is built without TLS (see .ci/setup)",
                        );
                        return None;
                    }
                    panic!("redis-server exited at start:\n{text}");
                }
                if text.contains("Ready to accept connections") {
                    return Some(TlsRedis { child, port, dir });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-server not ready within 20 s:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// `rediss://HOST:PORT`.
    fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        key_prefix: prefix.into(),
        op_timeout: Duration::from_secs(2),
        feed_block: Duration::from_millis(500),
        max_staleness: Duration::from_millis(1500),
        ..Default::default()
    }
}

/// The configuration of a router on `url` with these TLS files ("" unset).
fn tls_config(url: &str, ca: &str, cert: &str, key: &str) -> AuthConfig {
    AuthConfig {
        redis_url: url.into(),
        redis_tls_ca_file: ca.into(),
        redis_tls_cert_file: cert.into(),
        redis_tls_key_file: key.into(),
        ..AuthConfig::default()
    }
}

/// Connects as the standalone does: the files read and checked from the
/// configuration, then `connect_tls`.
async fn connect(
    config: &AuthConfig,
    prefix: &str,
) -> Result<RedisStores, wallet_auth::StoreError> {
    let tls = RedisTls::from_config(config).unwrap();
    RedisStores::connect_tls(&config.redis_url, &tls, options(prefix)).await
}

/// Whether a connection made with `config` is refused: the connect fails,
/// or (TLS 1.3 reports a refused client certificate after the handshake)
/// the first command does.
async fn refused(config: &AuthConfig) -> String {
    match connect(config, &unique_prefix("refused")).await {
        Err(e) => e.to_string(),
        Ok(stores) => match stores.persistence().await {
            Err(e) => e.to_string(),
            Ok(p) => panic!("the connection was accepted and answered {p:?}"),
        },
    }
}

/// A router on `config`'s Redis: sign in, reuse the challenge (refused),
/// revoke the refresh token, and find the revocation in Redis through a
/// second connection.
async fn round_trip(config: &AuthConfig) {
    let prefix = unique_prefix("tls");
    let stores = connect(config, &prefix).await.unwrap();
    let revocations = stores.revocations().await.unwrap();
    let app = common::app_with(config.clone(), |builder| {
        builder
            .with_challenge_store(Arc::new(stores.challenges()))
            .with_revocation_store(Arc::new(revocations))
            .with_mint_audit_store(Arc::new(stores.mint_audit(100)))
    });

    let wallet = Wallet::generate("Ed25519");
    let body = app.sign_in_body(&wallet).await;
    let signed_in = app.post("/sign-in", body.clone()).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let again = app.post("/sign-in", body).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);

    let refresh = signed_in.body["refresh_token"].as_str().unwrap();
    let jti = claims_of(refresh)["jti"].as_str().unwrap().to_string();
    let operator = format!("Bearer {}", common::token_with_role(&app, "operator"));
    let revoked = app
        .post_with(
            "/revoke",
            json!({ "jti": jti, "reason": "tls test" }),
            &[("authorization", &operator)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let reused = app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.body);

    // The entry is in Redis: a second connection loads it.
    let other = connect(config, &prefix).await.unwrap();
    let loaded = other.revocations().await.unwrap();
    assert_eq!(loaded.get(&jti).await.unwrap().unwrap().reason, "tls test");
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_work_over_tls() {
    let certs = Certs::make();
    let Some(redis) = TlsRedis::start("redis_tls::the_stores_work_over_tls", &certs, false) else {
        return;
    };
    let config = tls_config(&redis.url("127.0.0.1"), &certs.file("ca.pem"), "", "");
    round_trip(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_the_ca_did_not_sign_is_refused() {
    let certs = Certs::make();
    let Some(redis) = TlsRedis::start(
        "redis_tls::a_server_certificate_the_ca_did_not_sign_is_refused",
        &certs,
        false,
    ) else {
        return;
    };
    let url = redis.url("127.0.0.1");
    // Another CA.
    let e = refused(&tls_config(&url, &certs.file("other-ca.pem"), "", "")).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    // No CA file: the system's roots, which do not hold the test CA.
    let e = refused(&tls_config(&url, "", "", "")).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The right CA, but a host the certificate does not name.
    let e = refused(&tls_config(
        &redis.url("127.0.0.2"),
        &certs.file("ca.pem"),
        "",
        "",
    ))
    .await;
    assert!(e.contains("not valid for name"), "{e}");
    // And the right CA and host: accepted.
    let ok = tls_config(&url, &certs.file("ca.pem"), "", "");
    let stores = connect(&ok, &unique_prefix("ok")).await.unwrap();
    stores.persistence().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_wants_a_client_certificate_the_server_trusts() {
    let certs = Certs::make();
    let Some(redis) = TlsRedis::start(
        "redis_tls::mutual_tls_wants_a_client_certificate_the_server_trusts",
        &certs,
        true,
    ) else {
        return;
    };
    let url = redis.url("127.0.0.1");
    let ca = certs.file("ca.pem");

    // No client certificate: the server refuses the handshake.
    let e = refused(&tls_config(&url, &ca, "", "")).await;
    let log = redis.log();
    assert!(
        log.contains("peer did not return a certificate"),
        "the server did not refuse for the missing certificate ({e}):\n{log}"
    );
    // A client certificate of another CA: refused too.
    let e = refused(&tls_config(
        &url,
        &ca,
        &certs.file("other-client.pem"),
        &certs.file("other-client-key.pem"),
    ))
    .await;
    let log = redis.log();
    assert!(
        log.contains("certificate verify failed"),
        "the server did not refuse the untrusted certificate ({e}):\n{log}"
    );

    // With the client certificate the CA signed: the whole round trip.
    let config = tls_config(
        &url,
        &ca,
        &certs.file("client.pem"),
        &certs.file("client-key.pem"),
    );
    assert!(RedisTls::from_config(&config)
        .unwrap()
        .has_client_certificate());
    round_trip(&config).await;
}

/// The field a start-up refusal names, from `RedisTls::from_config` and from
/// the builder (the same for both).
fn refused_field(config: &AuthConfig) -> &'static str {
    let Err(ConfigError::Invalid { field, reason }) = RedisTls::from_config(config) else {
        panic!("RedisTls::from_config accepted {config:?}");
    };
    let built = wallet_auth::WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..config.clone()
    })
    .with_signing_key(common::signing_key())
    .build();
    match built {
        Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{reason}"),
        Err(other) => panic!("build refused with {other}, not naming {field}"),
        Ok(_) => panic!("build accepted {config:?}"),
    }
    // No reason quotes a key.
    assert!(!reason.contains("BEGIN PRIVATE KEY"), "{reason}");
    field
}

#[test]
fn tls_files_are_checked_at_start_up_naming_the_field() {
    let certs = Certs::make();
    let f = |name: &str| certs.file(name);
    let url = "rediss://:hunter2@127.0.0.1:6380";
    let missing = f("no-such.pem");
    let dir = certs.dir.path().to_string_lossy().into_owned();
    let cases: &[(AuthConfig, &str)] = &[
        // Both or neither.
        (
            tls_config(url, "", &f("client.pem"), ""),
            "redis_tls_key_file",
        ),
        (
            tls_config(url, &f("ca.pem"), "", &f("client-key.pem")),
            "redis_tls_cert_file",
        ),
        // TLS files with a plain or no URL.
        (
            tls_config("redis://127.0.0.1:6379", &f("ca.pem"), "", ""),
            "redis_url",
        ),
        (tls_config("", &f("ca.pem"), "", ""), "redis_tls_ca_file"),
        // Unreadable.
        (tls_config(url, &missing, "", ""), "redis_tls_ca_file"),
        (tls_config(url, &dir, "", ""), "redis_tls_ca_file"),
        (
            tls_config(url, "", &missing, &f("client-key.pem")),
            "redis_tls_cert_file",
        ),
        (
            tls_config(url, "", &f("client.pem"), &missing),
            "redis_tls_key_file",
        ),
        // Not what they should hold.
        (
            tls_config(url, &f("client-key.pem"), "", ""),
            "redis_tls_ca_file",
        ),
        (
            tls_config(url, "", &f("client-key.pem"), &f("client-key.pem")),
            "redis_tls_cert_file",
        ),
        (
            tls_config(url, "", &f("client.pem"), &f("client.pem")),
            "redis_tls_key_file",
        ),
        // A key that is not the certificate's.
        (
            tls_config(url, "", &f("client.pem"), &f("server-key.pem")),
            "redis_tls_key_file",
        ),
    ];
    for (i, (config, field)) in cases.iter().enumerate() {
        assert_eq!(refused_field(config), *field, "case {i}");
    }
    // The unreadable file is named in the reason; the URL's password is not.
    let Err(e) = RedisTls::from_config(&tls_config(url, &missing, "", "")) else {
        unreachable!()
    };
    let e = e.to_string();
    assert!(e.contains("no-such.pem") && !e.contains("hunter2"), "{e}");

    // What passes: a CA, a client certificate and its key, or both.
    for ok in [
        tls_config(url, &f("ca.pem"), "", ""),
        tls_config(url, "", &f("client.pem"), &f("client-key.pem")),
        tls_config(url, &f("ca.pem"), &f("client.pem"), &f("client-key.pem")),
    ] {
        RedisTls::from_config(&ok).unwrap();
    }
}
