//! The consumer crate's keys and checks against the real server on
//! loopback (issue 13): a flood of random kids costs the issuer at most
//! one JWKS fetch per cooldown; with the issuer stopped, cached keys serve
//! for the stale window and then tokens get 503 (`stale`), as they do when
//! the denylist is older than its bound under fail-closed; audiences;
//! refresh tokens, foreign algorithms, expiry and roles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::forge::{attacker_key, b64json, our_key, rs_header, signed};
use common::issuer::{consumer_config, Issuer};
use common::{token_with_role, Wallet, FLEET_SECRET};
use jsonwebtoken::Algorithm;
use serde_json::json;
use wallet_auth::AuthConfig;
use wallet_auth_consumer::{Consumer, ManualClock, Reason, RevocationSource, StalePolicy};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(role: &str) -> serde_json::Value {
    let now = now();
    json!({
        "iss": "http://localhost:8100", "aud": "pico", "sub": "someone", "role": role,
        "jti": format!("{:032x}", rand_u128()), "iat": now, "exp": now + 600,
    })
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    u128::from_le_bytes(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_costs_one_jwks_fetch_per_cooldown() {
    let app = common::app(AuthConfig::default());
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let clock = ManualClock::starting_now();
    let mut config = consumer_config(&issuer, &app, RevocationSource::Off);
    config.kid_cooldown = Duration::from_secs(30);
    config.clock = Arc::new(clock.clone());
    let consumer = Consumer::start(config).unwrap();
    let good = token_with_role(&app, "wallet");
    consumer.validate(&good).await.unwrap();
    assert_eq!(issuer.counts.jwks(), 1);

    let flood = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let kid = format!("{:032x}", rand_u128());
                signed(
                    &rs_header(&kid),
                    &claims("wallet"),
                    &our_key(),
                    Algorithm::RS256,
                )
            })
            .collect()
    };
    let run = |tokens: Vec<String>| {
        let consumer = consumer.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for t in tokens {
                let c = consumer.clone();
                set.spawn(async move { c.validate(&t).await });
            }
            while let Some(r) = set.join_next().await {
                let r = r.unwrap();
                assert_eq!(r.unwrap_err().reason(), Reason::Invalid);
            }
        }
    };
    run(flood(1000)).await;
    assert_eq!(issuer.counts.jwks(), 2, "one refetch for the whole flood");
    consumer.validate(&good).await.unwrap();
    run(flood(100)).await;
    assert_eq!(issuer.counts.jwks(), 2, "none within the cooldown");
    clock.advance(Duration::from_secs(31));
    run(flood(1000)).await;
    assert_eq!(issuer.counts.jwks(), 3, "one more per cooldown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_issuer_stopped_keys_serve_for_the_stale_window_then_503() {
    let app = common::app(AuthConfig::default());
    let mut issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let clock = ManualClock::starting_now();
    let mut config = consumer_config(&issuer, &app, RevocationSource::Poll);
    config.key_stale_window = Duration::from_secs(60);
    config.max_staleness = Duration::from_secs(3600);
    config.clock = Arc::new(clock.clone());
    let consumer = Consumer::start(config).unwrap();
    assert!(consumer.ready(Duration::from_secs(10)).await);
    let token = token_with_role(&app, "wallet");
    consumer.validate(&token).await.unwrap();
    issuer.stop().await;
    // The JWKS said max-age=300: past it, inside the 60 s window.
    clock.advance(Duration::from_secs(330));
    consumer.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(40));
    let r = consumer.validate(&token).await.unwrap_err();
    assert_eq!(r.reason(), Reason::Stale, "{r}");
    assert_eq!(r.reason().status(), 503);
    // Back up: keys fetched again, tokens accepted.
    issuer.restart(app.router.clone()).await;
    clock.advance(Duration::from_secs(2));
    consumer.validate(&token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denylist_older_than_its_bound_is_503_when_fail_closed_only() {
    let app = common::app(AuthConfig::default());
    let mut issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let clock = ManualClock::starting_now();
    let start = |policy| {
        let mut config = consumer_config(&issuer, &app, RevocationSource::Stream);
        config.max_staleness = Duration::from_secs(30);
        config.policy = policy;
        config.clock = Arc::new(clock.clone());
        Consumer::start(config).unwrap()
    };
    let closed = start(StalePolicy::FailClosed);
    let open = start(StalePolicy::FailOpen);
    let token = token_with_role(&app, "wallet");
    for c in [&closed, &open] {
        assert!(c.ready(Duration::from_secs(10)).await);
        c.validate(&token).await.unwrap();
    }
    issuer.stop().await;
    clock.advance(Duration::from_secs(20));
    closed.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let r = closed.validate(&token).await.unwrap_err();
    assert_eq!(r.reason(), Reason::Stale, "{r}");
    open.validate(&token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_of_different_audiences_accept_only_their_own_tokens() {
    let app = common::app(AuthConfig {
        audiences: vec!["orders-api".into(), "billing-api".into()],
        fleet_mint_secret: FLEET_SECRET.into(),
        ..AuthConfig::default()
    });
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let mut tokens = Vec::new();
    let mut consumers = Vec::new();
    for aud in ["orders-api", "billing-api"] {
        let body = json!({ "session_id": aud, "agent_id": "a", "role": "agent", "audience": aud });
        let r = common::fleet(&app, body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.push(r.body["session_token"].as_str().unwrap().to_string());
        let mut config = consumer_config(&issuer, &app, RevocationSource::Poll);
        config.audience = aud.into();
        consumers.push(Consumer::start(config).unwrap());
    }
    for (i, consumer) in consumers.iter().enumerate() {
        assert!(consumer.ready(Duration::from_secs(10)).await);
        let mine = consumer.validate(&tokens[i]).await.unwrap();
        assert_eq!(mine.sub, ["orders-api", "billing-api"][i]);
        let theirs = consumer.validate(&tokens[1 - i]).await.unwrap_err();
        assert_eq!(theirs.reason(), Reason::Invalid);
        assert_eq!(theirs.detail(), "wrong audience");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_access_tokens_of_the_published_algorithms_pass() {
    let app = common::app(AuthConfig::default());
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let decisions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut config = consumer_config(&issuer, &app, RevocationSource::Poll);
    let seen = decisions.clone();
    config.on_decision = Some(Arc::new(move |d| seen.lock().unwrap().push(d.reason)));
    let consumer = Consumer::start(config).unwrap();
    assert!(consumer.ready(Duration::from_secs(10)).await);
    let kid = app.auth.tokens().kid().to_string();
    let refusal = |token: String| {
        let consumer = consumer.clone();
        async move { consumer.validate(&token).await.unwrap_err().reason() }
    };

    // A real refresh token (typ refresh+jwt) and a pico-style one (type: refresh).
    let pair = app.sign_in(&Wallet::generate("Ed25519")).await;
    let refresh = pair["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refusal(refresh).await, Reason::WrongType);
    let mut pico_refresh = claims("wallet");
    pico_refresh["type"] = json!("refresh");
    let t = signed(
        &rs_header(&kid),
        &pico_refresh,
        &our_key(),
        Algorithm::RS256,
    );
    assert_eq!(refusal(t).await, Reason::WrongType);
    // The wallet's access token passes.
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(consumer.validate(access).await.unwrap().role, "wallet");

    // none, HMAC over the public key, another key, alg/key mismatch.
    let body = b64json(&claims("wallet"));
    let none = format!("{}.{body}.", b64json(&json!({ "alg": "none", "kid": kid })));
    assert_eq!(refusal(none).await, Reason::Invalid);
    let hs = signed(
        &json!({ "alg": "HS256", "typ": "JWT", "kid": kid }),
        &claims("wallet"),
        &jsonwebtoken::EncodingKey::from_secret(b"public"),
        Algorithm::HS256,
    );
    assert_eq!(refusal(hs).await, Reason::Invalid);
    let forged = signed(
        &rs_header(&kid),
        &claims("wallet"),
        &attacker_key(),
        Algorithm::RS256,
    );
    assert_eq!(refusal(forged).await, Reason::Invalid);
    let mismatch = signed(
        &json!({ "alg": "ML-DSA-65", "typ": "JWT", "kid": kid }),
        &claims("wallet"),
        &our_key(),
        Algorithm::RS256,
    );
    assert_eq!(refusal(mismatch).await, Reason::Invalid);

    // exp past the leeway; nbf ahead; wrong issuer; garbage.
    let mut old = claims("wallet");
    old["exp"] = json!(now() - 120);
    let t = signed(&rs_header(&kid), &old, &our_key(), Algorithm::RS256);
    assert_eq!(refusal(t).await, Reason::Expired);
    let mut in_leeway = claims("wallet");
    in_leeway["exp"] = json!(now() - 5);
    let t = signed(&rs_header(&kid), &in_leeway, &our_key(), Algorithm::RS256);
    consumer.validate(&t).await.unwrap();
    let mut early = claims("wallet");
    early["nbf"] = json!(now() + 600);
    let t = signed(&rs_header(&kid), &early, &our_key(), Algorithm::RS256);
    assert_eq!(refusal(t).await, Reason::Invalid);
    let mut other = claims("wallet");
    other["iss"] = json!("http://elsewhere");
    let t = signed(&rs_header(&kid), &other, &our_key(), Algorithm::RS256);
    assert_eq!(refusal(t).await, Reason::Invalid);
    for junk in ["", "a.b", "a.b.c", "....", &"x".repeat(20_000)] {
        assert_eq!(refusal(junk.to_string()).await, Reason::Invalid);
    }

    // Roles.
    let service = token_with_role(&app, "service");
    let r = consumer
        .authorize(Some(&service), &["operator"])
        .await
        .unwrap_err();
    assert_eq!((r.reason(), r.reason().status()), (Reason::Forbidden, 403));
    consumer
        .authorize(Some(&service), &["service"])
        .await
        .unwrap();
    assert_eq!(
        consumer.authorize(None, &[]).await.unwrap_err().reason(),
        Reason::Invalid
    );

    // The hook saw every decision.
    let seen = decisions.lock().unwrap();
    assert_eq!(seen.len(), 19, "{seen:?}");
    assert_eq!(seen.iter().filter(|r| r.is_none()).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_dsa_65_tokens_verify_with_the_published_akp_key() {
    wallet_auth::install_crypto_provider();
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/mldsa-jwt/key.pem"
    ))
    .unwrap();
    let app = common::app_with(
        AuthConfig {
            algorithm: "ML-DSA-65".into(),
            ..Default::default()
        },
        |b| b.with_signing_key(wallet_auth::SigningKey::from_pem(&pem).unwrap()),
    );
    let issuer = Issuer::serve(Issuer::bind().await, app.router.clone());
    let consumer = Consumer::start(consumer_config(&issuer, &app, RevocationSource::Poll)).unwrap();
    assert!(consumer.ready(Duration::from_secs(10)).await);
    let token = token_with_role(&app, "wallet");
    assert_eq!(common::header_of(&token)["alg"], "ML-DSA-65");
    assert_eq!(consumer.validate(&token).await.unwrap().role, "wallet");
    // The same kid under RS256 (signed by our RSA key): the key's alg rules.
    let kid = common::header_of(&token)["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let t = signed(
        &rs_header(&kid),
        &claims("wallet"),
        &our_key(),
        Algorithm::RS256,
    );
    let r = consumer.validate(&t).await.unwrap_err();
    assert_eq!(
        (r.reason(), r.detail()),
        (Reason::Invalid, "token algorithm does not match its key")
    );
    // A flipped signature byte.
    let mut bytes = token.into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let t = String::from_utf8(bytes).unwrap();
    assert_eq!(
        consumer.validate(&t).await.unwrap_err().reason(),
        Reason::Invalid
    );
}
