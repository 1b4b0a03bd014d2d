//! The load driver of `bench/run.sh` for what wrk cannot do: sign-ins with a
//! fresh, pre-signed body per request, and filling a server with challenges.
//!
//! ```text
//! loadtest signin --base http://127.0.0.1:8100/api/v1/auth --alg Ed25519 \
//!     --keys 6000 --conns 16 --duration 5 --reps 5
//! loadtest fill --base http://127.0.0.1:8100/api/v1/auth --count 1000000 --conns 16 --long-every 4
//! ```
//!
//! `signin`: `--keys` wallet keys (seeds) are made once. Before each timed
//! repetition, one challenge per key is fetched and signed (untimed: client
//! signing never counts). The timed phase then posts those bodies over
//! `--conns` HTTP/1.1 keep-alive connections until they run out or
//! `--duration` seconds pass, whichever comes first. Prints one JSON line per
//! repetition: requests/s over the timed phase, p50/p99 latency, errors.
//!
//! `fill`: issues `--count` challenges for distinct addresses, one in every
//! `--long-every` of ML-DSA-65 size (3,904 characters), bounded by
//! `--deadline` seconds. Prints a JSON line of status counts.
//!
//! With `--server-pid`, the server's CPU use over the timed phase is
//! reported too (`server_cpu_util`: CPU seconds per wall second).
//!
//! The client is hyper's HTTP/1 connection on a single-threaded tokio
//! runtime (the script pins it to the load core).

#[path = "common/bench.rs"]
mod bench;
#[path = "../tests/common/wallets.rs"]
mod wallets;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{percentile, split_base, Error};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use wallets::Wallet;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Opts {
    mode: String,
    base: String,
    alg: String,
    keys: usize,
    conns: usize,
    duration: f64,
    reps: usize,
    count: usize,
    long_every: usize,
    deadline: f64,
    server_pid: Option<u32>,
}

fn parse_opts() -> Result<Opts, Error> {
    let mut it = std::env::args().skip(1);
    let mut o = Opts {
        mode: it.next().ok_or("usage: loadtest signin|fill [options]")?,
        base: "http://127.0.0.1:8100/api/v1/auth".into(),
        alg: "Ed25519".into(),
        keys: 1000,
        conns: 16,
        duration: 5.0,
        reps: 5,
        count: 1_000_000,
        long_every: 4,
        deadline: 900.0,
        server_pid: None,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--base" => o.base = v,
            "--alg" => o.alg = v,
            "--keys" => o.keys = v.parse()?,
            "--conns" => o.conns = v.parse()?,
            "--duration" => o.duration = v.parse()?,
            "--reps" => o.reps = v.parse()?,
            "--count" => o.count = v.parse()?,
            "--long-every" => o.long_every = v.parse()?,
            "--deadline" => o.deadline = v.parse()?,
            "--server-pid" => o.server_pid = Some(v.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if o.conns == 0 || o.keys == 0 || o.reps == 0 || o.long_every == 0 {
        return Err("--conns, --keys, --reps and --long-every must be positive".into());
    }
    Ok(o)
}

/// One HTTP/1.1 keep-alive connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    prefix: String,
}

impl Conn {
    async fn open(host: &str, prefix: &str) -> Result<Self, Error> {
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: host.to_string(),
            prefix: prefix.to_string(),
        })
    }

    async fn post(&mut self, path: &str, body: Bytes) -> Result<(u16, Bytes), Error> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.prefix))
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let fut = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Error>((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| "request timed out")?
    }
}

/// CPU seconds (user + system, all threads) process `pid` has used so far,
/// from `/proc/PID/stat` (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Fetches one challenge per key and signs it; returns the sign-in bodies.
async fn prepare(
    o: &Opts,
    host: &str,
    prefix: &str,
    seeds: &[[u8; 32]],
) -> Result<Vec<Bytes>, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(std::sync::Mutex::new(vec![Bytes::new(); seeds.len()]));
    let seeds = Arc::new(seeds.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..o.conns.min(seeds.len()) {
        let (next, out, seeds) = (Arc::clone(&next), Arc::clone(&out), Arc::clone(&seeds));
        let (host, prefix, alg) = (host.to_string(), prefix.to_string(), o.alg.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut c = Conn::open(&host, &prefix).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= seeds.len() {
                    return Ok::<_, Error>(());
                }
                let w = Wallet::from_seed(&alg, seeds[i]);
                let address = w.address();
                let (status, body) = c
                    .post(
                        "/challenge",
                        Bytes::from(json!({ "address": address }).to_string()),
                    )
                    .await?;
                if status != 200 {
                    return Err(format!(
                        "challenge: HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    )
                    .into());
                }
                let v: Value = serde_json::from_slice(&body)?;
                let nonce = v["challenge"]
                    .as_str()
                    .ok_or("no challenge in reply")?
                    .to_string();
                let sig = w.sign(nonce.as_bytes());
                let body = json!({
                    "address": address,
                    "public_key": address,
                    "signature": hex::encode(sig),
                    "challenge": nonce,
                    "algorithm": alg,
                });
                out.lock().map_err(|_| "poisoned")?[i] = Bytes::from(body.to_string());
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let bodies = std::mem::take(&mut *out.lock().map_err(|_| "poisoned")?);
    Ok(bodies)
}

async fn timed(o: &Opts, host: &str, prefix: &str, bodies: Vec<Bytes>) -> Result<Value, Error> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let limit = Duration::from_secs_f64(o.duration);
    let mut conns = Vec::new();
    for _ in 0..o.conns {
        conns.push(Conn::open(host, prefix).await?);
    }
    let cpu0 = cpu_secs(o.server_pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in conns {
        let (bodies, next) = (Arc::clone(&bodies), Arc::clone(&next));
        tasks.push(tokio::task::spawn_local(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            while start.elapsed() < limit {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let t0 = Instant::now();
                match c.post("/sign-in", bodies[i].clone()).await {
                    Ok((200, _)) => lat.push(t0.elapsed().as_micros() as f64 / 1000.0),
                    Ok((status, body)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        break;
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, f) = t.await?;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(o.server_pid).zip(cpu0).map(|(b, a)| b - a);
    lat.sort_by(f64::total_cmp);
    Ok(json!({
        "server_cpu_util": server_cpu.map(|c| c / secs),
        "ok": lat.len(),
        "errors": errors,
        "first_error": first_error,
        "secs": secs,
        "rps": lat.len() as f64 / secs,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "exhausted": next.load(Ordering::Relaxed) >= bodies.len(),
    }))
}

async fn signin(o: Opts) -> Result<(), Error> {
    let (host, prefix) = split_base(&o.base)?;
    let seeds: Vec<[u8; 32]> = (0..o.keys)
        .map(|_| {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| e.to_string())?;
            Ok::<_, Error>(s)
        })
        .collect::<Result<_, _>>()?;
    for rep in 0..o.reps {
        let t0 = Instant::now();
        let bodies = prepare(&o, &host, &prefix, &seeds).await?;
        let prep_secs = t0.elapsed().as_secs_f64();
        let mut r = timed(&o, &host, &prefix, bodies).await?;
        r["rep"] = json!(rep);
        r["alg"] = json!(o.alg);
        r["prepare_secs"] = json!(prep_secs);
        println!("{r}");
    }
    Ok(())
}

async fn fill(o: Opts) -> Result<(), Error> {
    let (host, prefix) = split_base(&o.base)?;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Duration::from_secs_f64(o.deadline);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.conns {
        let next = Arc::clone(&next);
        let (host, prefix) = (host.clone(), prefix.clone());
        let (count, long_every) = (o.count, o.long_every);
        tasks.push(tokio::task::spawn_local(async move {
            let mut c = Conn::open(&host, &prefix).await?;
            let mut counts = std::collections::BTreeMap::<u16, u64>::new();
            while start.elapsed() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let unit = format!("{i:064x}");
                // An ML-DSA-65 wallet id is 3,904 hex characters (61 x 64).
                let address = if i.is_multiple_of(long_every) {
                    unit.repeat(61)
                } else {
                    unit
                };
                let body = Bytes::from(json!({ "address": address }).to_string());
                let (status, _) = c.post("/challenge", body).await?;
                *counts.entry(status).or_default() += 1;
            }
            Ok::<_, Error>(counts)
        }));
    }
    let mut total = std::collections::BTreeMap::<u16, u64>::new();
    for t in tasks {
        for (k, v) in t.await?? {
            *total.entry(k).or_default() += v;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let statuses: serde_json::Map<String, Value> = total
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    println!("{}", json!({ "statuses": statuses, "secs": secs }));
    Ok(())
}

fn main() -> Result<(), Error> {
    let o = parse_opts()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        match o.mode.as_str() {
            "signin" => signin(o).await,
            "fill" => fill(o).await,
            other => Err(format!("unknown mode {other}").into()),
        }
    })
}
