//! The operator and fleet routes through the real router: `/fleet/sessions`
//! behind the fleet secret, `/revoke`, `/revoked-jtis` (gzip when accepted),
//! `/mints`, and what a failed mint-audit write does to sign-in.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{app, claims_of, TestApp, Wallet};
use serde_json::{json, Value};
use wallet_auth::AuthConfig;

use common::{fleet, fleet_app, operator_token, post_bearer, FLEET_SECRET as SECRET};

#[tokio::test]
async fn fleet_secret_is_checked_before_the_body() {
    let app = fleet_app();
    let r = app
        .raw("POST", "/fleet/sessions", b"not json".to_vec(), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = common::default_app()
        .raw("POST", "/fleet/sessions", b"not json".to_vec(), &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .raw(
            "POST",
            "/fleet/sessions",
            b"not json".to_vec(),
            &[("x-fleet-secret", SECRET)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.raw("POST", "/revoke", b"not json".to_vec(), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn fleet_disabled_is_404() {
    let app = common::default_app();
    let r = app
        .post_with(
            "/fleet/sessions",
            json!({"session_id":"s","agent_id":"a"}),
            &[("x-fleet-secret", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.detail().is_empty());
}

#[tokio::test]
async fn fleet_secret_roles_and_ttl() {
    let app = fleet_app();
    let body = json!({ "session_id": "sess-1", "agent_id": "agent-7" });
    for headers in [
        vec![],
        vec![("x-fleet-secret", "wrong")],
        vec![("x-fleet-secret", "fleet-secret-for-test")],
    ] {
        let r = app
            .post_with("/fleet/sessions", body.clone(), &headers)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.detail(), "invalid X-Fleet-Secret");
    }
    let r = fleet(&app, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["session_token"].as_str().unwrap();
    let c = claims_of(token);
    assert_eq!(c["sub"], "sess-1");
    assert_eq!(c["session_id"], "sess-1");
    assert_eq!(c["agent_id"], "agent-7");
    assert_eq!(c["role"], "agent");
    assert!(c.get("scope").is_none(), "scope only when given");
    assert_eq!(r.body["exp"], c["exp"]);
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        86_400
    );
    app.auth.tokens().validate_access(token).unwrap();

    let r = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "role": "service", "scope": "treasury:*" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let c = claims_of(r.body["session_token"].as_str().unwrap());
    assert_eq!(c["role"], "service");
    assert_eq!(c["scope"], "treasury:*");

    for role in ["operator", "admin", "wallet", ""] {
        let r = fleet(
            &app,
            json!({ "session_id": "s", "agent_id": "a", "role": role }),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert_eq!(r.detail(), format!("role not allowed: {role}"));
    }
    for (b, detail) in [
        (
            json!({ "agent_id": "a" }),
            "session_id and agent_id required",
        ),
        (
            json!({ "session_id": "", "agent_id": "a" }),
            "session_id and agent_id required",
        ),
        (
            json!({ "session_id": "s" }),
            "session_id and agent_id required",
        ),
        (
            json!({ "session_id": 1, "agent_id": "a" }),
            "session_id must be a string",
        ),
        (
            json!({ "session_id": "s", "agent_id": "a", "ttl": "x" }),
            "ttl must be an integer",
        ),
        (
            json!({ "session_id": "s", "agent_id": "a", "ttl": 1.5 }),
            "ttl must be an integer",
        ),
    ] {
        let r = fleet(&app, b.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(r.detail(), detail);
    }
    // TTL clamping at both ends.
    for (ttl, want) in [
        (json!(1), 60u64),
        (json!(-5), 60),
        (json!(120), 120),
        (json!(u64::MAX), 100 * 365 * 86_400),
        (json!(100u64 * 365 * 86_400 + 1), 100 * 365 * 86_400),
    ] {
        let r = fleet(
            &app,
            json!({ "session_id": "s", "agent_id": "a", "ttl": ttl }),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let c = claims_of(r.body["session_token"].as_str().unwrap());
        assert_eq!(
            c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
            want,
            "ttl {ttl}"
        );
    }
    let capped = app_with_max(3600);
    let r = fleet(
        &capped,
        json!({ "session_id": "s", "agent_id": "a", "ttl": 999_999 }),
    )
    .await;
    let c = claims_of(r.body["session_token"].as_str().unwrap());
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
}

fn app_with_max(max: u64) -> TestApp {
    app(AuthConfig {
        fleet_mint_secret: SECRET.into(),
        fleet_max_ttl_seconds: max,
        ..Default::default()
    })
}

#[tokio::test]
async fn revoke_needs_an_operator() {
    let app = fleet_app();
    let body = json!({ "jti": "abc", "reason": "test" });
    let r = app.post("/revoke", body.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("www-authenticate"));
    let r = post_bearer(&app, "/revoke", body.clone(), "garbage").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let wallet = app.sign_in(&Wallet::generate("Ed25519")).await;
    let r = post_bearer(
        &app,
        "/revoke",
        body.clone(),
        wallet["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A refresh token is not a Bearer token, whatever its role.
    let r = post_bearer(
        &app,
        "/revoke",
        body.clone(),
        wallet["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let svc = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "role": "service" }),
    )
    .await;
    let r = post_bearer(
        &app,
        "/revoke",
        body.clone(),
        svc.body["session_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let op = operator_token(&app).await;
    let r = post_bearer(&app, "/revoke", body.clone(), &op).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let first = r.body["revoked"].clone();
    assert_eq!(first["jti"], "abc");
    assert_eq!(first["reason"], "test");
    assert_eq!(first["revoked_by"], "operator@test");
    assert!(first["revoked_at"].is_f64());
    // Idempotent: the same entry comes back, unchanged.
    app.clock.advance(Duration::from_secs(5));
    let r = post_bearer(
        &app,
        "/revoke",
        json!({ "jti": "abc", "reason": "other" }),
        &op,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["revoked"], first);

    for (b, detail) in [
        (json!({}), "jti required"),
        (json!({ "jti": "" }), "jti required"),
        (json!({ "jti": 5 }), "jti must be a string"),
        (
            json!({ "jti": "x", "reason": 5 }),
            "reason must be a string",
        ),
    ] {
        let r = post_bearer(&app, "/revoke", b.clone(), &op).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(r.detail(), detail);
    }
}

#[tokio::test]
async fn revoked_tokens_stop_working_and_are_listed() {
    let app = fleet_app();
    let op = operator_token(&app).await;
    let svc = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "role": "service" }),
    )
    .await;
    let svc = svc.body["session_token"].as_str().unwrap().to_string();
    let agent = fleet(&app, json!({ "session_id": "s2", "agent_id": "a" })).await;
    let agent = agent.body["session_token"].as_str().unwrap().to_string();

    assert_eq!(
        app.get("/revoked-jtis", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/revoked-jtis", Some(&agent)).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app.get("/revoked-jtis", Some(&svc)).await;
    assert_eq!(r.status, StatusCode::OK);
    // pico's `items`, plus SPEC 7's feed position beside them.
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(r.body["full"], json!(true));
    assert!(r.body["cursor"].is_string(), "{}", r.body);

    for jti in ["first", "second"] {
        assert_eq!(
            post_bearer(&app, "/revoke", json!({ "jti": jti }), &op)
                .await
                .status,
            StatusCode::OK
        );
    }
    for token in [&svc, &op] {
        let r = app.get("/revoked-jtis", Some(token)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            common::item_jtis(&r.body),
            ["second", "first"],
            "newest first"
        );
    }
    // Revoking the operator's own token locks it out.
    let op_jti = claims_of(&op)["jti"].as_str().unwrap().to_string();
    assert_eq!(
        post_bearer(&app, "/revoke", json!({ "jti": op_jti }), &op)
            .await
            .status,
        StatusCode::OK
    );
    let r = app.get("/revoked-jtis", Some(&op)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.detail().contains("revoked"), "{}", r.detail());
}

#[tokio::test]
async fn mints_lists_long_lived_mints_with_revoked() {
    let app = fleet_app();
    let op = operator_token(&app).await;
    let wallet = app.sign_in(&Wallet::generate("Ed25519")).await;
    // Below mint_audit_min_ttl_seconds (300): not audited.
    let short = fleet(
        &app,
        json!({ "session_id": "short", "agent_id": "a", "ttl": 120 }),
    )
    .await;
    let long = fleet(
        &app,
        json!({ "session_id": "long", "agent_id": "a", "scope": "x:y" }),
    )
    .await;
    assert_eq!(short.status, StatusCode::OK);
    let long_jti = claims_of(long.body["session_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let access_jti = claims_of(wallet["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(
        post_bearer(&app, "/revoke", json!({ "jti": access_jti }), &op)
            .await
            .status,
        StatusCode::OK
    );
    let h = format!("Bearer {op}");
    let r = app
        .raw("GET", "/mints", vec![], &[("authorization", &h)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["sign", "refresh", "access"],
        "newest first; the 120 s mint is not audited"
    );
    assert_eq!(items[0]["jti"], long_jti.as_str());
    assert_eq!(items[0]["session_id"], "long");
    assert_eq!(items[0]["scope"], "x:y");
    assert_eq!(items[0]["revoked"], false);
    assert_eq!(items[2]["jti"], access_jti.as_str());
    assert_eq!(items[2]["revoked"], true);
    for key in [
        "jti",
        "sub",
        "role",
        "iat",
        "exp",
        "kind",
        "scope",
        "agent_id",
        "session_id",
        "revoked",
    ] {
        assert!(items[2].get(key).is_some(), "{key}");
    }

    let r = app
        .raw("GET", "/mints?limit=1", vec![], &[("authorization", &h)])
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = app
        .raw("GET", "/mints?limit=0", vec![], &[("authorization", &h)])
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "clamped to 1");
    let r = app
        .raw("GET", "/mints?limit=abc", vec![], &[("authorization", &h)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        app.get("/mints", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let svc = fleet(
        &app,
        json!({ "session_id": "s", "agent_id": "a", "role": "service" }),
    )
    .await;
    assert_eq!(
        app.get("/mints", svc.body["session_token"].as_str())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

struct BrokenAudit;

#[async_trait::async_trait]
impl wallet_auth::MintAuditStore for BrokenAudit {
    async fn append(&self, _: Vec<wallet_auth::MintRecord>) -> Result<(), wallet_auth::StoreError> {
        Err(wallet_auth::StoreError::Unavailable("disk on fire".into()))
    }
    async fn recent(
        &self,
        _: usize,
    ) -> Result<Vec<wallet_auth::MintRecord>, wallet_auth::StoreError> {
        Ok(Vec::new())
    }
}

fn broken_audit_app(fail_closed: bool) -> TestApp {
    let clock = wallet_auth::clock::ManualClock::starting_now();
    let auth = wallet_auth::WalletAuth::builder(AuthConfig {
        mint_audit_fail_closed: fail_closed,
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .with_clock(std::sync::Arc::new(clock.clone()))
    .with_mint_audit_store(std::sync::Arc::new(BrokenAudit))
    .build()
    .unwrap();
    TestApp {
        router: auth.router(),
        auth,
        clock,
    }
}

#[tokio::test]
async fn a_failed_audit_write_is_counted_and_fails_closed_only_when_asked() {
    let app = broken_audit_app(false);
    app.sign_in(&Wallet::generate("Ed25519")).await;
    assert_eq!(app.auth.audit_failures(), 1);

    let app = broken_audit_app(true);
    let body = app.sign_in_body(&Wallet::generate("Ed25519")).await;
    let r = app.post("/sign-in", body).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!r.detail().is_empty());
    assert!(r.headers.contains_key("retry-after"));
}

/// A poller that accepts gzip (pico-client-auth's httpx does) gets the same
/// JSON, gzip-encoded; one that does not, or refuses it with q=0, gets it plain.
#[tokio::test]
async fn revoked_jtis_gzip_when_accepted() {
    use std::io::Read;
    let app = fleet_app();
    let op = operator_token(&app).await;
    for i in 0..50 {
        let r = post_bearer(&app, "/revoke", json!({ "jti": format!("jti-{i}") }), &op).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let get = |accept: Option<&'static str>| {
        let mut req = axum::http::Request::get("/api/v1/auth/revoked-jtis")
            .header("authorization", format!("Bearer {op}"));
        if let Some(a) = accept {
            req = req.header("accept-encoding", a);
        }
        let req = req.body(axum::body::Body::empty()).unwrap();
        let router = app.router.clone();
        async move {
            let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let enc = resp
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (enc, body)
        }
    };
    let (enc, plain) = get(None).await;
    assert_eq!(enc, None);
    let v: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 50);
    for refused in ["identity", "gzip;q=0", "br, gzip; q=0.0"] {
        let (enc, body) = get(Some(refused)).await;
        assert_eq!(enc, None, "{refused}");
        assert_eq!(body, plain);
    }
    for accepted in ["gzip, deflate", "br;q=1, GZIP;q=0.5", "*"] {
        let (enc, body) = get(Some(accepted)).await;
        assert_eq!(enc.as_deref(), Some("gzip"), "{accepted}");
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain, "{accepted}");
    }
}
