//! Resource limits. Oversized bodies over a real socket
//! (with and without Content-Length), slow clients cut off by
//! `wallet_auth::http::serve`, the challenge cap, and the CPU work bound.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{app, Wallet};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wallet_auth::http::{serve, ServeOptions};
use wallet_auth::{AuthConfig, WalletAuth};

const PREFIX: &str = "/api/v1/auth";

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve stops after shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn start(options: ServeOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = common::default_app().router;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, options, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

fn short() -> ServeOptions {
    ServeOptions::with_timeouts(Duration::from_millis(500), Duration::from_millis(500))
}

/// Reads until the server closes the connection (or `limit` passes);
/// returns what was read and how long it took.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, started.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

fn body_of(response: &[u8]) -> Value {
    let text = String::from_utf8_lossy(response);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("body not JSON: {text:?}"))
}

#[tokio::test]
async fn a_normal_request_is_served_and_shutdown_is_clean() {
    let server = start(short()).await;
    let r = reqwest::get(format!("http://{}{PREFIX}/jwks", server.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwks: Value = r.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_413_over_a_real_socket() {
    let server = start(ServeOptions::default()).await;
    let client = reqwest::Client::new();
    let address = "a".repeat(70 * 1024);
    let r = client
        .post(format!("http://{}{PREFIX}/challenge", server.addr))
        .json(&json!({ "address": address }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("too large"));
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_chunked_body_without_content_length_is_413() {
    let server = start(ServeOptions::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {PREFIX}/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("2000\r\n{}\r\n", "a".repeat(0x2000));
    // 80 KiB in 8 KiB chunks; the server may answer and close before the
    // end, so write errors are expected.
    for _ in 0..10 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status_of(&resp), 413, "{}", String::from_utf8_lossy(&resp));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let server = start(short()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /api/v1/au").await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: forever, unless the server hangs up.
    let trickle = async {
        for b in b"th/jwks HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
        }
    };
    let cut = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    assert!(cut.is_ok(), "still writing after 10 s: never cut off");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "cut off only after {took:?}");
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    // hyper may answer 408 before closing; it never serves the request.
    if !resp.is_empty() {
        assert_eq!(status_of(&resp), 408, "{}", String::from_utf8_lossy(&resp));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed() {
    let server = start(short()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let (_, took) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408() {
    let server = start(short()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {PREFIX}/challenge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"address\":\""
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"a").await.is_err() {
                break;
            }
            // Stop writing once the answer is there.
            let mut probe = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), s.peek(&mut probe)).await
            {
                if n > 0 {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .expect("a trickled body is never cut off");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 408, "{}", String::from_utf8_lossy(&resp));
    assert!(body_of(&resp)["detail"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn past_challenge_max_outstanding_challenge_is_503_and_sign_in_still_works() {
    let app = app(AuthConfig {
        challenge_max_outstanding: 10,
        ..Default::default()
    });
    let wallets: Vec<Wallet> = (0..10).map(|_| Wallet::generate("Ed25519")).collect();
    let mut nonces = Vec::new();
    for w in &wallets {
        nonces.push(app.challenge(&w.address()).await);
    }
    for i in 0..10 {
        let r = app
            .post("/challenge", json!({ "address": format!("flood-{i}") }))
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert!(r.headers.contains_key("retry-after"));
        assert!(!r.detail().is_empty());
    }
    // A sign-in for an existing challenge is unaffected by the flood.
    let w = &wallets[3];
    let nonce = &nonces[3];
    let r = app
        .post(
            "/sign-in",
            json!({
                "address": w.address(),
                "public_key": hex::encode(w.public_key()),
                "signature": hex::encode(w.sign(nonce.as_bytes())),
                "challenge": nonce,
                "algorithm": w.algorithm(),
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Its consumed challenge freed a slot.
    let r = app
        .post("/challenge", json!({ "address": "flood-after" }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Counts the requests whose CPU job has answered: each request's first
/// poll gets its own waker, which the pool's reply wakes once.
struct Answered {
    fired: AtomicBool,
    count: Arc<AtomicUsize>,
}

impl Wake for Answered {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.fired.swap(true, Ordering::SeqCst) {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The CPU pool admits at most `workers + queue` jobs at once and refuses
/// the rest with 503 and `Retry-After`. The burst is submitted in one pass
/// (each request polled once, in order, on this thread), so a request is
/// admitted only into room that the bound leaves or that a finished job
/// freed; finished jobs are counted by their wake-ups, not by timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_cpu_bound_gets_200s_and_503s_only() {
    const WORKERS: usize = 1;
    const QUEUE: usize = 1;
    const BURST: usize = 16;
    let auth = WalletAuth::builder(AuthConfig {
        allow_memory_revocations: true,
        ..Default::default()
    })
    .with_signing_key(common::signing_key())
    .with_cpu_limits(WORKERS, QUEUE)
    .build()
    .unwrap();
    let router = auth.router::<()>();
    let tapp = common::TestApp {
        auth,
        router,
        clock: wallet_auth::clock::ManualClock::starting_now(),
    };
    // 16 valid ML-DSA-65 sign-ins at once: each needs a verification and
    // two RSA signatures, with room for two at a time (one running, one
    // queued).
    let mut bodies = Vec::new();
    for _ in 0..BURST {
        bodies.push(tapp.sign_in_body(&Wallet::generate("ML-DSA-65")).await);
    }
    let mut requests: Vec<Pin<Box<dyn Future<Output = common::Reply> + Send + '_>>> = bodies
        .into_iter()
        .map(|body| {
            let tapp = &tapp;
            Box::pin(async move { tapp.post("/sign-in", body).await })
                as Pin<Box<dyn Future<Output = common::Reply> + Send + '_>>
        })
        .collect();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut replies: Vec<Option<common::Reply>> = Vec::new();
    let mut admitted = 0;
    let mut most_in_flight = 0;
    for request in &mut requests {
        let waker = Waker::from(Arc::new(Answered {
            fired: AtomicBool::new(false),
            count: Arc::clone(&answered),
        }));
        let reply = match request.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(r) => {
                if r.status == StatusCode::OK {
                    // Admitted and answered within its first poll.
                    admitted += 1;
                    waker.wake_by_ref();
                }
                Some(r)
            }
            Poll::Pending => {
                admitted += 1;
                None
            }
        };
        replies.push(reply);
        // Read after the poll: a job answered meanwhile only lowers this.
        let in_flight = admitted - answered.load(Ordering::SeqCst).min(admitted);
        most_in_flight = most_in_flight.max(in_flight);
    }
    let answered_during_burst = answered.load(Ordering::SeqCst);
    let mut ok = 0;
    let mut busy = 0;
    for (request, reply) in requests.iter_mut().zip(replies) {
        let r = match reply {
            Some(r) => r,
            None => tokio::time::timeout(Duration::from_secs(60), request.as_mut())
                .await
                .expect("no hang"),
        };
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(r.headers.contains_key("retry-after"));
                assert!(!r.detail().is_empty());
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    eprintln!(
        "cpu burst: {ok} ok, {busy} busy, at most {most_in_flight} in flight, \
         {answered_during_burst} answered during the burst"
    );
    assert_eq!(ok + busy, 16);
    assert!(ok >= 1, "nothing was served");
    // Every admitted request was served: the first poll reached the pool.
    assert_eq!(ok, admitted);
    assert!(
        most_in_flight <= WORKERS + QUEUE,
        "{most_in_flight} jobs admitted at once, past the bound of {}",
        WORKERS + QUEUE
    );
    // Each admission past the bound needed a job to finish first.
    assert!(
        busy >= BURST - (WORKERS + QUEUE) - answered_during_burst.min(BURST),
        "{busy} refused, {answered_during_burst} answered during the burst"
    );
}
