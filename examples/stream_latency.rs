//! The revocation-stream latency driver of `bench/feed.sh` (issue 13): how
//! long after `POST /revoke` answers 200 every connected
//! `GET /revoked-jtis/stream` has the event.
//!
//! ```text
//! stream_latency --base http://127.0.0.1:8100/api/v1/auth --token SERVICE_TOKEN \
//!     --streams 100 --events 200
//! ```
//!
//! Opens `--streams` event streams (HTTP/1.1, one connection each), then
//! revokes `--events` fresh jtis one after another over one more connection,
//! each after every stream has seen the previous one. For each revocation and
//! stream the sample is the time from the end of the 200 answer to the
//! arrival of the stream's `revoked` event with that jti (0 when the event
//! came first). Prints one JSON line: samples, p50/p99/max in ms, and any
//! stream that fell behind. Every wait is bounded (`--timeout` seconds per
//! event).

#[path = "common/bench.rs"]
mod bench;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{percentile, split_base, Error};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Mutex};

struct Opts {
    base: String,
    token: String,
    streams: usize,
    events: usize,
    timeout: f64,
}

fn parse_opts() -> Result<Opts, Error> {
    let mut o = Opts {
        base: "http://127.0.0.1:8100/api/v1/auth".into(),
        token: String::new(),
        streams: 100,
        events: 200,
        timeout: 10.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--base" => o.base = v,
            "--token" => o.token = v,
            "--streams" => o.streams = v.parse()?,
            "--events" => o.events = v.parse()?,
            "--timeout" => o.timeout = v.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if o.token.is_empty() || o.streams == 0 || o.events == 0 {
        return Err("--token is needed; --streams and --events must be positive".into());
    }
    Ok(o)
}

/// Arrival times of `revoked` events by jti, per stream.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Opens one event stream; its reader task records every `revoked` event's
/// jti with its arrival time and reports each arrival on `seen`.
async fn open_stream(
    host: &str,
    prefix: &str,
    token: &str,
    seen: mpsc::UnboundedSender<String>,
) -> Result<Arrivals, Error> {
    let tcp = tokio::net::TcpStream::connect(host).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("{prefix}/revoked-jtis/stream"))
        .header("host", host)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != 200 {
        return Err(format!("stream answered {}", resp.status()).into());
    }
    let arrivals: Arrivals = Arc::default();
    let mine = arrivals.clone();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(chunk) = frame.data_ref() else {
                continue;
            };
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if !event.lines().any(|l| l == "event: revoked") {
                    continue;
                }
                let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    continue;
                };
                if let Some(jti) = v.get("jti").and_then(|j| j.as_str()) {
                    mine.lock().await.insert(jti.to_string(), now);
                    let _ = seen.send(jti.to_string());
                }
            }
        }
    });
    Ok(arrivals)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let o = parse_opts()?;
    let (host, prefix) = split_base(&o.base)?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let mut streams = Vec::with_capacity(o.streams);
    for _ in 0..o.streams {
        streams.push(open_stream(&host, &prefix, &o.token, seen_tx.clone()).await?);
    }
    drop(seen_tx);

    let tcp = tokio::net::TcpStream::connect(&host).await?;
    tcp.set_nodelay(true)?;
    let (mut revoker, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let run = std::process::id();
    let wait = Duration::from_secs_f64(o.timeout);
    let mut samples = Vec::with_capacity(o.streams * o.events);
    let mut missed = 0usize;
    for i in 0..o.events {
        let jti = format!("latency-{run}-{i}");
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{prefix}/revoke"))
            .header("host", &host)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", o.token))
            .body(Full::new(Bytes::from(format!(
                r#"{{"jti":"{jti}","reason":"latency"}}"#
            ))))?;
        revoker.ready().await?;
        let resp = revoker.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        let answered = Instant::now();
        if status != 200 {
            return Err(format!("/revoke answered {status}").into());
        }
        // Until every stream has this jti (bounded).
        let deadline = answered + wait;
        // Every stream reports each jti once, and this jti is new.
        let mut have = 0usize;
        while have < o.streams {
            match tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await {
                Ok(Some(j)) if j == jti => have += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for s in &streams {
            match s.lock().await.remove(&jti) {
                Some(at) => {
                    samples.push(at.saturating_duration_since(answered).as_secs_f64() * 1e3)
                }
                None => missed += 1,
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "streams": o.streams,
            "events": o.events,
            "samples": samples.len(),
            "missed": missed,
            "p50_ms": percentile(&samples, 0.50),
            "p99_ms": percentile(&samples, 0.99),
            "max_ms": samples.last().copied().unwrap_or(f64::NAN),
        })
    );
    Ok(())
}
