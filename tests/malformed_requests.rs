//! Malformed requests on every route, as property tests through the router.
//! Whatever arrives, the answer is a 2xx (where the contract promises one)
//! or a 4xx / 503 with a JSON `detail`: never another 5xx, never a panic.
//! The routes come from the router's own table (`wallet_auth::http::routes`),
//! so a new route cannot go unfuzzed.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;
use wallet_auth::clock::ManualClock;
use wallet_auth::{AuthConfig, WalletAuth};

const PREFIX: &str = "/api/v1/auth";
const SECRET: &str = "fleet-secret-for-tests";

/// A route's method, its path (relative to the prefix), and the body
/// fields it reads.
type Route = (&'static str, &'static str, &'static [&'static str]);

/// Every route of the router, with the body fields it reads.
fn routes() -> &'static [Route] {
    static R: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        wallet_auth::http::routes()
            .into_iter()
            .map(|(method, path)| (method_name(&method), path, body_fields(path)))
            .collect()
    })
}

fn method_name(method: &axum::http::Method) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or_else(|| panic!("route method {method} is not in METHODS"))
}

/// The body fields each route reads. A route missing here fails every test
/// of this file: describe it, so its fields are fuzzed too.
fn body_fields(path: &str) -> &'static [&'static str] {
    match path {
        "/jwks" | "/revoked-jtis" | "/revoked-jtis/stream" | "/mints" => &[],
        "/challenge" => &["address"],
        "/sign-in" => &[
            "address",
            "public_key",
            "signature",
            "challenge",
            "algorithm",
            "audience",
        ],
        "/refresh" => &["refresh_token"],
        "/login" => &["email", "password", "audience"],
        "/fleet/sessions" => &["session_id", "agent_id", "role", "ttl", "scope", "audience"],
        "/revoke" => &["jti", "reason", "exp"],
        other => panic!("route {other} is new: list the body fields it reads in body_fields"),
    }
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    operator: String,
}

/// One app for the whole file: building one hashes the admin password
/// (argon2), too slow to repeat per case.
fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (router, operator) = rt.block_on(async {
        let clock = ManualClock::starting_now();
        let auth = WalletAuth::builder(AuthConfig {
            fleet_mint_secret: SECRET.into(),
            auto_create_admin: true,
            admin_password: Some("correct horse battery staple".into()),
            allow_memory_revocations: true,
            ..Default::default()
        })
        .with_signing_key(common::signing_key())
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
        use wallet_auth::clock::Clock;
        let now = clock.now_secs();
        let claims = common::issuer::operator_claims_at(now);
        let operator = auth.tokens().sign_access(&claims).unwrap();
        (auth.router(), operator)
    });
    Fixture {
        rt,
        router,
        operator,
    }
}

impl Fixture {
    /// Sends one request; `headers` values that are not valid header bytes
    /// are dropped (hyper would refuse them before the router).
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &[u8])],
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut all: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
        all.extend_from_slice(headers);
        self.send_headers(method, path, body, &all)
    }

    /// Sends one request with exactly these headers (no `Content-Type`
    /// unless given).
    fn send_headers(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &[u8])],
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"));
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                req = req.header(*k, v);
            }
        }
        let req = req.body(Body::from(body)).unwrap();
        self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            if headers
                .get("content-type")
                .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"))
            {
                // An open event stream never ends: its headers are the answer.
                return (status, headers, Vec::new());
            }
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, bytes.to_vec())
        })
    }

    /// Sends with the operator's Bearer token and the fleet secret, so the
    /// gated routes get as far as their body.
    fn send_authed(&self, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let bearer = format!("Bearer {}", self.operator);
        let (s, h, b) = self.send(
            method,
            path,
            body,
            &[
                ("authorization", bearer.as_bytes()),
                ("x-fleet-secret", SECRET.as_bytes()),
            ],
        );
        check(method, path, s, &h, &b);
        (s, b)
    }
}

/// The contract for every answer: no 5xx but 503 (with Retry-After), and a
/// JSON body with a string `detail` on every non-2xx.
fn check(
    method: &str,
    path: &str,
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) {
    let text = String::from_utf8_lossy(body);
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{method} {path}: {status}: {text}"
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            headers.contains_key("retry-after"),
            "{method} {path}: 503 without Retry-After"
        );
    }
    if !status.is_success() {
        let v: Value = serde_json::from_slice(body)
            .unwrap_or_else(|_| panic!("{method} {path}: {status}: body is not JSON: {text:?}"));
        assert!(
            v["detail"].is_string(),
            "{method} {path}: {status}: no string detail: {v}"
        );
    }
}

/// The test's own reading of SPEC 1: `application/json` or
/// `application/<something>+json`, any case, parameters after `;` ignored.
fn names_json(content_type: Option<&[u8]>) -> bool {
    let Some(ct) = content_type.and_then(|b| std::str::from_utf8(b).ok()) else {
        return false;
    };
    if !ct.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return false;
    }
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/")
            && essence.ends_with("+json")
            && essence.len() > "application/+json".len())
}

/// `Content-Type` values: near misses of JSON types, and arbitrary bytes.
fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    let built = (
        "(application|APPLICATION|Application|text|multipart| application)",
        "(json|JSON|Json|plain|x-www-form-urlencoded|form-data|jsonx|json-seq|\\+json|vnd\\.api\\+json|problem\\+JSON|json )",
        "(|; charset=utf-8|;charset=\"x\"|; boundary=a|;)",
    )
        .prop_map(|(t, s, p)| format!("{t}/{s}{p}").into_bytes());
    prop::option::of(prop_oneof![
        built,
        prop::collection::vec(any::<u8>(), 0..40),
    ])
}

fn post_routes() -> impl Strategy<Value = Route> {
    proptest::sample::select(routes()).prop_filter("POST", |r| r.0 == "POST")
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        "[a-f0-9]{0,80}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    any::<String>(),
                    "(address|public_key|signature|challenge|algorithm|refresh_token|email|password|session_id|agent_id|role|ttl|scope|jti|reason)"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Hostile scalars: wrong types, huge numbers, unicode and NUL.
fn hostile_field() -> impl Strategy<Value = String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        Just("1e309".to_string()),
        Just("-1e309".to_string()),
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("340282366920938463463374607431768211456".to_string()),
        Just(format!("1{}", "0".repeat(5000))),
        Just("\"\\u0000\"".to_string()),
        Just("\"a\\u0000b\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\udfff\\ud800\"".to_string()),
        Just("\"\u{202e}\u{feff}\u{1f600}\"".to_string()),
        Just("\"ML-DSA-65\\u0000\"".to_string()),
        Just(format!("\"{}\"", "é".repeat(9000))),
        Just(format!("\"{}\"", "a".repeat(20_000))),
        Just("true".to_string()),
        Just("{}".to_string()),
        Just("[]".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_on_every_post_route(route in post_routes(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        let f = fixture();
        f.send_authed(route.0, route.1, body);
    }

    /// A body-taking route answers 415 with SPEC's detail exactly when the
    /// `Content-Type` does not name JSON (the gates are passed, so the
    /// content type is what decides).
    #[test]
    fn arbitrary_content_types_on_every_post_route(route in post_routes(), ct in content_type()) {
        let f = fixture();
        let bearer = format!("Bearer {}", f.operator);
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("authorization", bearer.as_bytes()),
            ("x-fleet-secret", SECRET.as_bytes()),
        ];
        if let Some(ct) = &ct {
            if HeaderValue::from_bytes(ct).is_ok() {
                headers.push(("content-type", ct));
            }
        }
        let sent = headers.iter().find(|h| h.0 == "content-type").map(|h| h.1);
        let (s, h, b) = f.send_headers(route.0, route.1, b"{}".to_vec(), &headers);
        check(route.0, route.1, s, &h, &b);
        if names_json(sent) {
            prop_assert_ne!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{:?}", sent.map(String::from_utf8_lossy));
        } else {
            prop_assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{:?}", sent.map(String::from_utf8_lossy));
            let v: Value = serde_json::from_slice(&b).unwrap();
            prop_assert_eq!(&v["detail"], "Content-Type must be application/json");
        }
    }

    #[test]
    fn arbitrary_json_on_every_post_route(route in post_routes(), v in json_value()) {
        let f = fixture();
        f.send_authed(route.0, route.1, serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn wrong_types_and_hostile_values_for_every_field(
        route in post_routes(),
        pick in any::<prop::sample::Index>(),
        raw in hostile_field(),
    ) {
        let f = fixture();
        let fields = route.2;
        let field = fields[pick.index(fields.len())];
        // The other fields plausible, the picked one hostile (as raw text,
        // so numbers serde_json would not produce still arrive).
        let mut parts: Vec<String> = fields
            .iter()
            .filter(|n| **n != field)
            .map(|n| format!("\"{n}\":\"{}\"", "ab".repeat(16)))
            .collect();
        parts.push(format!("\"{field}\":{raw}"));
        let body = format!("{{{}}}", parts.join(","));
        f.send_authed(route.0, route.1, body.into_bytes());
    }

    #[test]
    fn duplicate_keys(route in post_routes(), a in hostile_field(), b in hostile_field(), pick in any::<prop::sample::Index>()) {
        let f = fixture();
        let field = route.2[pick.index(route.2.len())];
        let body = format!("{{\"{field}\":{a},\"{field}\":{b}}}");
        f.send_authed(route.0, route.1, body.into_bytes());
    }

    #[test]
    fn arbitrary_authorization_and_fleet_secret_headers(
        route in proptest::sample::select(routes()),
        auth in prop::collection::vec(any::<u8>(), 0..300),
        secret in prop::collection::vec(any::<u8>(), 0..100),
        bearer_prefix in any::<bool>(),
    ) {
        let f = fixture();
        let mut auth_value = if bearer_prefix { b"Bearer ".to_vec() } else { Vec::new() };
        auth_value.extend_from_slice(&auth);
        let body = b"{\"jti\":\"x\",\"session_id\":\"s\",\"agent_id\":\"a\"}".to_vec();
        let (s, h, b) = f.send(
            route.0,
            route.1,
            body,
            &[("authorization", &auth_value), ("x-fleet-secret", &secret)],
        );
        check(route.0, route.1, s, &h, &b);
        if matches!(route.1, "/revoke" | "/revoked-jtis" | "/mints" | "/fleet/sessions") {
            prop_assert_eq!(s, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn arbitrary_mints_queries(q in "[ -~]{0,60}") {
        let f = fixture();
        let q: String = q.chars().filter(|c| !matches!(c, ' ' | '#' | '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}')).collect();
        f.send_authed("GET", &format!("/mints?{q}"), Vec::new());
    }

    /// A valid address, however odd its characters, gets exactly 200.
    #[test]
    fn any_nonempty_string_address_gets_a_challenge(address in "\\PC{1,200}|[\\x00-\\x1f]{1,20}") {
        let f = fixture();
        let body = serde_json::to_vec(&json!({ "address": address })).unwrap();
        let (s, b) = f.send_authed("POST", "/challenge", body);
        prop_assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }
}

#[test]
fn every_method_on_every_route() {
    let f = fixture();
    for (_, path, _) in routes() {
        for method in METHODS {
            for body in [Vec::new(), b"{}".to_vec(), b"not json".to_vec()] {
                f.send_authed(method, path, body);
            }
        }
    }
}

#[test]
fn the_route_list_is_what_the_router_serves() {
    let f = fixture();
    assert!(routes().len() >= 9, "{:?}", routes());
    for (method, path, _) in routes() {
        let (s, b) = f.send_authed(method, path, b"{}".to_vec());
        assert!(
            s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {s}: {}",
            String::from_utf8_lossy(&b)
        );
    }
}

#[test]
fn a_wrong_method_gets_405_with_a_detail() {
    let f = fixture();
    let (s, _) = f.send_authed("DELETE", "/challenge", Vec::new());
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let bearer = format!("Bearer {}", f.operator);
    let (s, h, b) = f.send(
        "POST",
        "/jwks",
        b"{}".to_vec(),
        &[("authorization", bearer.as_bytes())],
    );
    check("POST", "/jwks", s, &h, &b);
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h["allow"], "GET,HEAD");
}

#[test]
fn deep_nesting_is_refused_without_a_stack_overflow() {
    let f = fixture();
    for route in routes().iter().filter(|r| r.0 == "POST") {
        for body in [
            "[".repeat(10_000),
            "{\"a\":".repeat(10_000),
            format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)),
            format!("{{\"address\":{}1{}}}", "[".repeat(127), "]".repeat(127)),
            format!("{{\"address\":{}1{}}}", "[".repeat(129), "]".repeat(129)),
        ] {
            let (s, b) = f.send_authed(route.0, route.1, body.into_bytes());
            assert!(
                s.is_client_error(),
                "{}: {s}: {}",
                route.1,
                String::from_utf8_lossy(&b)
            );
        }
    }
}

#[test]
fn huge_numbers_and_nul_strings_are_4xx_or_200() {
    let f = fixture();
    let cases: [(&str, &str); 10] = [
        (
            "/fleet/sessions",
            r#"{"session_id":"s","agent_id":"a","ttl":1e309}"#,
        ),
        (
            "/fleet/sessions",
            r#"{"session_id":"s","agent_id":"a","ttl":18446744073709551616}"#,
        ),
        (
            "/fleet/sessions",
            r#"{"session_id":"s","agent_id":"a","ttl":-0}"#,
        ),
        (
            "/fleet/sessions",
            r#"{"session_id":"s","agent_id":"a","ttl":-9223372036854775808}"#,
        ),
        (
            "/fleet/sessions",
            r#"{"session_id":"s\u0000","agent_id":"a\u0000"}"#,
        ),
        ("/challenge", r#"{"address":"\u0000"}"#),
        ("/challenge", r#"{"address":1e309}"#),
        (
            "/sign-in",
            r#"{"address":"a","public_key":"00","signature":"00","challenge":"c","algorithm":"Ed25519\u0000"}"#,
        ),
        ("/revoke", r#"{"jti":"\u0000","reason":"\ud800"}"#),
        (
            "/login",
            r#"{"email":"admin@pico.local\u0000","password":"\u0000"}"#,
        ),
    ];
    for (path, body) in cases {
        let (s, b) = f.send_authed("POST", path, body.as_bytes().to_vec());
        assert!(
            s.is_client_error() || s == StatusCode::OK,
            "{path} {body}: {s}: {}",
            String::from_utf8_lossy(&b)
        );
    }
}
