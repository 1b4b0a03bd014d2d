//! A small Server-Sent Events reader for the revocation stream tests, and a
//! real server on loopback to read from.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;

/// One event: its `event`, `id` and `data` fields (a comment block has an
/// empty `event` and its text in `comment`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: String,
    pub data: String,
    pub comment: Option<String>,
}

impl Event {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|_| panic!("data is not JSON: {self:?}"))
    }
}

/// Parses one block (the text between blank lines).
fn parse_block(block: &str) -> Event {
    let mut ev = Event::default();
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            ev.comment = Some(c.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => ev.event = value.to_string(),
                "id" => ev.id = value.to_string(),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                }
                _ => {}
            }
        }
    }
    ev
}

/// An open event stream.
pub struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    /// Opens `url` with `token` (and `Last-Event-ID` when given); panics
    /// unless it is a 200 event stream.
    pub async fn open(url: &str, token: &str, last_event_id: Option<&str>) -> Stream {
        let resp = Self::request(url, token, last_event_id).await;
        assert_eq!(resp.status(), 200, "{url}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{:?}",
            resp.headers()
        );
        Stream {
            resp,
            buf: String::new(),
        }
    }

    /// The raw answer to a stream request.
    pub async fn request(url: &str, token: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new().get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.unwrap()
    }

    /// The next block, comments included; `None` when the stream ends (or
    /// breaks). Panics when nothing comes within `within`.
    pub async fn next_block(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("no event in time");
            match chunk {
                Ok(Some(bytes)) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event that is not a comment.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        loop {
            let ev = self.next_block(within).await?;
            if ev.comment.is_none() || !ev.event.is_empty() {
                return Some(ev);
            }
        }
    }

    /// Waits for the end of the stream, skipping comments; panics when an
    /// event comes first or nothing ends it within `within`.
    pub async fn expect_end(&mut self, within: Duration) {
        if let Some(ev) = self.next_event(within).await {
            panic!("expected the stream to end, got {ev:?}");
        }
    }
}

/// A router served on 127.0.0.1:0 until dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub base: String,
    _stop: oneshot::Sender<()>,
}

/// Serves `router` on `listener` with `wallet_auth::http::serve`.
pub fn serve_on(listener: tokio::net::TcpListener, router: Router) -> Served {
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wallet_auth::http::serve(
        listener,
        router,
        wallet_auth::http::ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        addr,
        base: format!("http://{addr}{}", super::PREFIX),
        _stop: stop,
    }
}

/// Serves `router` on a fresh loopback port.
pub async fn serve(router: Router) -> Served {
    serve_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        router,
    )
}
