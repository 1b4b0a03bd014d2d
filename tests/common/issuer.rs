//! A router served on a real loopback listener that counts what consumers
//! ask of it (JWKS fetches, full polls, delta polls, streams), and can be
//! stopped (every connection cut, as when the process dies) and started
//! again on the same port.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What the consumers asked for.
#[derive(Default, Debug)]
pub struct Counts {
    pub jwks: AtomicUsize,
    pub full_polls: AtomicUsize,
    pub delta_polls: AtomicUsize,
    pub streams: AtomicUsize,
    pub other: AtomicUsize,
}

impl Counts {
    pub fn jwks(&self) -> usize {
        self.jwks.load(Ordering::SeqCst)
    }
    pub fn full_polls(&self) -> usize {
        self.full_polls.load(Ordering::SeqCst)
    }
    pub fn delta_polls(&self) -> usize {
        self.delta_polls.load(Ordering::SeqCst)
    }
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    fn count(&self, req: &Request) {
        let path = req.uri().path();
        let since = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("since=")));
        let counter = if path.ends_with("/jwks") {
            &self.jwks
        } else if path.ends_with("/revoked-jtis/stream") {
            &self.streams
        } else if path.ends_with("/revoked-jtis") && since {
            &self.delta_polls
        } else if path.ends_with("/revoked-jtis") {
            &self.full_polls
        } else {
            &self.other
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// A served router; stopped on drop.
pub struct Issuer {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Issuer {
    /// Binds 127.0.0.1:0 (the address is known before the router is built,
    /// so its `issuer` can name it).
    pub async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// Serves `router` on `listener`, counting requests.
    pub fn serve(listener: TcpListener, router: Router) -> Issuer {
        let counts = Arc::new(Counts::default());
        let addr = listener.local_addr().unwrap();
        let mut issuer = Issuer {
            addr,
            counts,
            task: None,
        };
        issuer.run(listener, router);
        issuer
    }

    fn run(&mut self, listener: TcpListener, router: Router) {
        let counts = self.counts.clone();
        let router = router.layer(tower::util::MapRequestLayer::new(move |req: Request| {
            counts.count(&req);
            req
        }));
        self.task = Some(tokio::spawn(async move {
            // Owning the connections: aborting this task drops the set,
            // which aborts every connection at once.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((sock, _)) = accepted else { continue };
                        let svc = TowerToHyperService::new(router.clone());
                        conns.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(sock), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }));
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: the listener closes and every connection is cut.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves `router` again on the same port (after [`Issuer::stop`]).
    pub async fn restart(&mut self, router: Router) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.run(listener, router);
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A consumer configuration for `app` served by `issuer`: the tokens'
/// `iss` is the test apps' `http://localhost:8100`, reached at the
/// listener; the service token is minted by the app.
pub fn consumer_config(
    issuer: &Issuer,
    app: &super::TestApp,
    source: wallet_auth_consumer::RevocationSource,
) -> wallet_auth_consumer::Config {
    let mut c = wallet_auth_consumer::Config::new("http://localhost:8100", "pico");
    c.base_url = Some(issuer.url());
    c.service_token = Some(super::token_with_role(app, "service"));
    c.revocations = source;
    c.poll_interval = std::time::Duration::from_millis(300);
    c
}

/// Waits (bounded) until `cond` holds.
pub async fn eventually(what: &str, within: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The operator whose revocations the tests make directly on the app.
pub fn operator_claims() -> wallet_auth::AccessClaims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    operator_claims_at(now)
}

/// [`operator_claims`] issued at `now` (seconds), for an hour.
pub fn operator_claims_at(now: u64) -> wallet_auth::AccessClaims {
    wallet_auth::AccessClaims::new(
        "http://localhost:8100",
        "pico",
        "operator@test",
        "operator",
        now,
        now + 3600,
    )
}
