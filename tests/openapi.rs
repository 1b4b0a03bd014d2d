//! `{prefix}/openapi.json` (SPEC 11): OpenAPI 3.1, every route the router
//! serves (from its own route table) with every status of the contract, and
//! an independent validator (Python's openapi-spec-validator, installed in
//! the interop venv by .ci/setup) accepts it.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use wallet_auth::AuthConfig;

async fn document(prefix: &str) -> Value {
    let app = common::app(AuthConfig {
        route_prefix: prefix.into(),
        ..AuthConfig::default()
    });
    let resp = app
        .router
        .oneshot(
            Request::get(format!("{prefix}/openapi.json"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn every_served_route_is_in_the_document_and_nothing_else() {
    for prefix in [common::PREFIX, "/auth"] {
        let doc = document(prefix).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let served = wallet_auth::http::served_routes(prefix);
        // The SPEC 1 table and the operating routes.
        assert!(served.len() >= wallet_auth::http::routes().len() + 5);
        for (method, path) in &served {
            let op = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{method} {path} is not in the document"))
                [method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} has no operation");
            let responses = op["responses"].as_object().unwrap();
            for code in ["200", "405", "500"] {
                assert!(responses.contains_key(code), "{method} {path}: no {code}");
            }
        }
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    served
                        .iter()
                        .any(|(m, p)| p == path && m.as_str().eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_contracts_error_statuses_are_documented() {
    let doc = document(common::PREFIX).await;
    let statuses = |method: &str, path: &str| -> Vec<String> {
        doc["paths"][format!("{}{path}", common::PREFIX)][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"))
            .keys()
            .cloned()
            .collect()
    };
    for (method, path, codes) in [
        (
            "post",
            "/challenge",
            &["400", "413", "415", "429", "503"][..],
        ),
        (
            "post",
            "/sign-in",
            &["400", "401", "413", "415", "429", "503"],
        ),
        ("post", "/refresh", &["400", "401", "429"]),
        ("post", "/login", &["401", "403", "429"]),
        ("post", "/fleet/sessions", &["400", "401", "403", "404"]),
        ("post", "/revoke", &["400", "401", "403", "503"]),
        ("get", "/revoked-jtis", &["304", "401", "403"]),
        ("get", "/revoked-jtis/stream", &["401", "403", "503"]),
        ("get", "/mints", &["400", "401", "403"]),
    ] {
        let have = statuses(method, path);
        for code in codes {
            assert!(
                have.iter().any(|c| c == code),
                "{method} {path}: no {code} in {have:?}"
            );
        }
    }
    assert!(doc["paths"]["/health/ready"]["get"]["responses"]["503"].is_object());
    // The reply types come from the code.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "SignInResponse",
        "TokenPair",
        "IssuedChallenge",
        "FleetSession",
        "RevocationEntry",
        "MintView",
        "Detail",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
}

#[tokio::test]
async fn an_independent_validator_accepts_the_document() {
    let test = "openapi::an_independent_validator_accepts_the_document";
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    let has_validator = std::process::Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_validator {
        common::missing_dependency(
            test,
            "openapi-spec-validator is not in target/interop-venv (run .ci/setup)",
        );
        return;
    }
    let doc = document(common::PREFIX).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1.0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
