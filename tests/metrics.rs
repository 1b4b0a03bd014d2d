//! Metrics (SPEC 11): every name of the SPEC with its labels, nothing
//! counted (and no layer) with metrics off, `promtool check metrics` on the
//! standalone server's output, and a real Prometheus scraping a running
//! standalone server and answering a query for the sign-in counter.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::server::{Http, Server};
use common::Wallet;
use tower::ServiceExt;
use wallet_auth::AuthConfig;

fn metrics_app() -> common::TestApp {
    common::app_with(AuthConfig::default(), |b| b.with_metrics())
}

/// The value of the series `name{labels}` in Prometheus text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn every_spec_name_is_exported_with_its_labels() {
    let app = metrics_app();
    let wallet = Wallet::generate("Ed25519");
    for _ in 0..3 {
        app.sign_in(&wallet).await;
    }
    // A failed sign-in, a bad refresh, a reuse.
    let mut body = app.sign_in_body(&wallet).await;
    body["challenge"] = "00".repeat(32).into();
    assert_eq!(
        app.post("/sign-in", body).await.status,
        StatusCode::UNAUTHORIZED
    );
    let pair = app.sign_in(&wallet).await;
    let refresh = serde_json::json!({ "refresh_token": pair["refresh_token"] });
    assert_eq!(
        app.post("/refresh", refresh.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.post("/refresh", refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    let operator = common::token_with_role(&app, "operator");
    let r = app
        .post_with(
            "/revoke",
            serde_json::json!({ "jti": "j1" }),
            &[("authorization", &format!("Bearer {operator}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let text = app.auth.render_metrics().await.unwrap();
    for name in wallet_auth::ops::metrics::METRIC_NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    let alg = r#"algorithm="Ed25519""#;
    let sign_ins =
        |result: &str| format!(r#"wallet_auth_sign_ins_total{{{alg},result="{result}"}}"#);
    for (series, want) in [
        (sign_ins("success"), 4.0),
        (sign_ins("invalid_challenge"), 1.0),
        (
            r#"wallet_auth_refreshes_total{result="success"}"#.into(),
            1.0,
        ),
        (r#"wallet_auth_refreshes_total{result="reuse"}"#.into(), 1.0),
        ("wallet_auth_challenges_issued_total".into(), 5.0),
        ("wallet_auth_revocations_total".into(), 1.0),
        (
            r#"wallet_auth_http_requests_total{route="/sign-in",status="200"}"#.into(),
            4.0,
        ),
        (
            r#"wallet_auth_http_request_duration_seconds_count{route="/sign-in"}"#.into(),
            5.0,
        ),
        (r#"wallet_auth_signing_keys{state="current"}"#.into(), 1.0),
        (r#"wallet_auth_shed_total{reason="rate_limit"}"#.into(), 0.0),
        ("wallet_auth_audit_failures_total".into(), 0.0),
        ("wallet_auth_cpu_queue_depth".into(), 0.0),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in:\n{text}");
    }
    assert!(sample(&text, "wallet_auth_denylist_entries").unwrap() >= 1.0);
    // Never a wallet id, a jti or a token in a label.
    assert!(!text.contains(&wallet.address()), "a wallet id leaked");
    assert!(!text.contains("\"j1\""), "a jti leaked");
    assert!(!text.contains(pair["access_token"].as_str().unwrap()));
}

#[tokio::test]
async fn shed_requests_are_counted_by_reason() {
    let app = common::app_with(
        AuthConfig {
            rate_limit_per_ip_per_minute: 1,
            ..AuthConfig::default()
        },
        |b| b.with_metrics(),
    );
    // A real listener: the per-IP limit needs the peer address.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        common::PREFIX
    );
    tokio::spawn(wallet_auth::http::serve(
        listener,
        app.router.clone(),
        wallet_auth::http::ServeOptions::default(),
        std::future::pending(),
    ));
    let http = Http::new(&base);
    let mut limited = 0;
    for _ in 0..3 {
        let (status, _) = http
            .post("/challenge", serde_json::json!({ "address": "aa" }), &[])
            .await;
        if status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1);
    let text = app.auth.render_metrics().await.unwrap();
    assert_eq!(
        sample(&text, r#"wallet_auth_shed_total{reason="rate_limit"}"#),
        Some(f64::from(limited)),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"wallet_auth_http_requests_total{route="/challenge",status="429"}"#
        ),
        Some(f64::from(limited))
    );
}

#[tokio::test]
async fn with_metrics_off_nothing_is_collected() {
    let app = common::default_app();
    assert!(app.auth.metrics().is_none());
    assert!(app.auth.render_metrics().await.is_none());
    let resp = app
        .auth
        .metrics_router::<()>()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// A Prometheus tool on PATH, or a loud skip (a failure under CI=true).
fn tool(test: &str, name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        common::missing_dependency(
            test,
            &format!("{name} is not on PATH (Debian's prometheus package)"),
        );
    }
    found
}

async fn scrape(url: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

#[tokio::test]
async fn promtool_accepts_the_standalone_servers_output() {
    if !tool(
        "metrics::promtool_accepts_the_standalone_servers_output",
        "promtool",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    Http::new(&server.base)
        .sign_in(&Wallet::generate("Ed25519"))
        .await;
    let text = scrape(
        server
            .metrics
            .as_deref()
            .expect("metrics are on by default"),
    )
    .await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_metrics_listener_is_off_when_metrics_listen_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[("SERVER_AUTH_METRICS_LISTEN", "")]);
    assert!(server.metrics.is_none(), "{:?}", server.stdout_lines);
}

/// A Prometheus server on loopback; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) every second.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wallet-auth\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = common::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The value of an instant query, if it has one sample.
    async fn query(&self, q: &str) -> Option<f64> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_sign_in_counter() {
    let test = "metrics::a_real_prometheus_scrapes_the_sign_in_counter";
    if !tool(test, "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let metrics = server.metrics.clone().expect("metrics are on by default");
    let target = metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let prometheus = Prometheus::start(&target);
    let http = Http::new(&server.base);
    for _ in 0..3 {
        http.sign_in(&Wallet::generate("Ed25519")).await;
    }
    let q = r#"sum(wallet_auth_sign_ins_total{algorithm="Ed25519",result="success"})"#;
    // Bounded: Prometheus starts, scrapes every second, and answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if prometheus.query(q).await == Some(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw 3 sign-ins (last: {:?}; up: {:?})",
            prometheus.query(q).await,
            prometheus.query("up").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        prometheus.query(r#"up{job="wallet-auth"}"#).await,
        Some(1.0)
    );
}
