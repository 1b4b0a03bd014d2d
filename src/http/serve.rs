//! Serving the router on a listener the caller bound, with the limits
//! `axum::serve` lacks: a deadline for a request's headers and one for its
//! body, so a slow client cannot hold a connection (and its memory) forever.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::{BoxError, Router};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Limits applied by [`serve`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// A connection that has not sent a request's complete headers this
    /// long after it started reading them is closed (also bounds how long
    /// an idle keep-alive connection is held).
    pub header_read_timeout: Duration,
    /// A request body not received in full this long after its request's
    /// headers is refused with 408. A total deadline, not an idle timeout:
    /// a client trickling a byte at a time does not reset it.
    pub body_read_timeout: Duration,
    /// After `shutdown` resolves, how long in-flight requests get to finish
    /// before their connections are dropped.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    /// 10 s for headers, 30 s for a body, 30 s to drain.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ServeOptions {
    /// The defaults with other header and body deadlines.
    pub fn with_timeouts(header_read_timeout: Duration, body_read_timeout: Duration) -> Self {
        Self {
            header_read_timeout,
            body_read_timeout,
            ..Self::default()
        }
    }
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` resolves,
/// then stops accepting and lets in-flight requests finish (at most
/// [`ServeOptions::drain_timeout`]). Handlers see the peer address through
/// `ConnectInfo<SocketAddr>`, as with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
///
/// HTTP/1.1 only: HTTP/2 is for the TLS-terminating proxy in front.
///
/// # Errors
/// Never for a single connection's failure (logged at debug); only when the
/// listener itself cannot report its address.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let _ = listener.local_addr()?;
    let app = router;
    let body_deadline = options.body_read_timeout;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            // A request without a body (most GETs) has nothing to time.
            let req = req.map(|b| {
                if http_body::Body::is_end_stream(&b) {
                    Body::new(b)
                } else {
                    Body::new(DeadlineBody::new(b, body_deadline))
                }
            });
            app.clone().oneshot(req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: dropping connections still in flight");
    }
    Ok(())
}

/// The error a request body yields once its deadline has passed; the JSON
/// extractor answers it with 408.
#[derive(Debug)]
pub(crate) struct BodyDeadline;

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body deadline passed")
    }
}

impl std::error::Error for BodyDeadline {}

/// A body that fails with [`BodyDeadline`] once `deadline` has passed,
/// however steadily its bytes were arriving. Its timer is made when the
/// body is first read, so a body no handler reads costs no timer.
struct DeadlineBody<B> {
    inner: B,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, within: Duration) -> Self {
        Self {
            inner,
            deadline: tokio::time::Instant::now() + within,
            timer: None,
        }
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `auth`'s [`metrics_router`](crate::WalletAuth::metrics_router)
/// (`GET /metrics`) on `listener` until `shutdown` resolves: the separate
/// metrics listener of SPEC 11 (`metrics_listen`), with [`serve`]'s limits.
///
/// # Errors
/// As [`serve`].
pub async fn serve_metrics<F>(
    listener: TcpListener,
    auth: &crate::WalletAuth,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    serve(
        listener,
        auth.metrics_router(),
        ServeOptions::default(),
        shutdown,
    )
    .await
}
