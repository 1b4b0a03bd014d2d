//! Embedding: the router nests or merges into a host app with its own state,
//! and the host protects its own routes with the `Claims` extractor.

mod common;

use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use wallet_auth::http::Claims;
use wallet_auth::{AuthConfig, WalletAuth};

#[derive(Clone)]
struct HostState {
    auth: WalletAuth,
    greeting: &'static str,
}

impl FromRef<HostState> for WalletAuth {
    fn from_ref(s: &HostState) -> WalletAuth {
        s.auth.clone()
    }
}

async fn me(
    axum::extract::State(s): axum::extract::State<HostState>,
    claims: Claims,
) -> Result<String, wallet_auth::Error> {
    claims.require_role(&["wallet"])?;
    Ok(format!("{} {}", s.greeting, claims.0.sub))
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: &str,
    bearer: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn merge_into_a_host_app_with_its_own_state() {
    let auth = WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .build()
    .unwrap();
    let state = HostState {
        auth: auth.clone(),
        greeting: "hello",
    };
    let app: Router = Router::new()
        .route("/me", get(me))
        .merge(auth.router::<HostState>())
        .with_state(state);

    let (status, _) = call(&app, "GET", "/api/v1/auth/jwks", "", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, "GET", "/me", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("detail"));

    // Sign in through the merged router, then call the host route.
    let wallet = common::Wallet::generate("Ed25519");
    let (_, c) = call(
        &app,
        "POST",
        "/api/v1/auth/challenge",
        &format!(r#"{{"address":"{}"}}"#, wallet.address()),
        None,
    )
    .await;
    let nonce = serde_json::from_str::<serde_json::Value>(&c).unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({
        "address": wallet.address(), "public_key": hex::encode(wallet.public_key()),
        "signature": hex::encode(wallet.sign(nonce.as_bytes())), "challenge": nonce, "algorithm": "Ed25519",
    });
    let (status, s) = call(
        &app,
        "POST",
        "/api/v1/auth/sign-in",
        &body.to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let s: serde_json::Value = serde_json::from_str(&s).unwrap();
    let (status, body) = call(&app, "GET", "/me", "", s["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("hello {}", wallet.address()));
    // A refresh token is not accepted by the extractor.
    let (status, _) = call(&app, "GET", "/me", "", s["refresh_token"].as_str()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn nest_under_another_prefix() {
    let auth = WalletAuth::builder(AuthConfig {
        route_prefix: String::new(),
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .build()
    .unwrap();
    let app: Router = Router::new().nest("/auth", auth.router());
    let (status, body) = call(&app, "GET", "/auth/jwks", "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&app, "GET", "/api/v1/auth/jwks", "", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// After a rotation the old public key stays published and accepted until
/// its tokens expire; new tokens use the new key.
#[tokio::test]
async fn rotation_keeps_the_retired_key_verifying() {
    let old_key = wallet_auth::SigningKey::from_pem(&common::other_key_pem()).unwrap();
    let old_jwk = old_key.jwk().clone();
    let old = WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(old_key)
    .build()
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = wallet_auth::AccessClaims::new(
        "http://localhost:8100",
        "pico",
        "op",
        "operator",
        now,
        now + 600,
    );
    let old_token = old.tokens().sign_access(&claims).unwrap();

    let new = WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .with_retired_key(old_jwk.clone())
    .build()
    .unwrap();
    let app: Router = new.router();
    let (status, body) = call(&app, "GET", "/api/v1/auth/jwks", "", None).await;
    assert_eq!(status, StatusCode::OK);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new.tokens().kid().as_str(), old_jwk.kid.as_str()]);
    assert_ne!(kids[0], kids[1]);
    let (status, _) = call(&app, "GET", "/api/v1/auth/mints", "", Some(&old_token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a token of the retired key still verifies"
    );
    // Without the retired key it does not.
    let (status, _) = call(
        &common::default_router(),
        "GET",
        "/api/v1/auth/mints",
        "",
        Some(&old_token),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
