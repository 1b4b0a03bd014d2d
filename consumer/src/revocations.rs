//! The denylist, kept current by the event stream, falling back to delta
//! polls and then to full polls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::fetch::{read_bounded, FetchError};
use crate::sse::{SseItem, SseParser};
use crate::{Config, Reason, Rejection, RevocationSource, StalePolicy};

/// Longest jti kept (a longer one names no token of ours).
const MAX_JTI: usize = 1024;
/// How long the stream is not retried after the issuer said it has none.
const STREAM_PROBE: Duration = Duration::from_secs(300);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the consumer's denylist stands.
///
/// ```
/// # async fn f(consumer: wallet_auth_consumer::Consumer) {
/// let s = consumer.revocation_status();
/// println!("{} revoked, streaming: {}", s.entries, s.streaming);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationStatus {
    /// Revoked jtis known.
    pub entries: usize,
    /// The feed cursor (absent against pico-server-auth).
    pub cursor: Option<String>,
    /// Time since the denylist was last known current; `None` before the
    /// first successful read.
    pub age: Option<Duration>,
    /// Whether the event stream is connected.
    pub streaming: bool,
}

#[derive(Default)]
struct State {
    /// Revoked jtis and their tokens' `exp` (when the issuer said).
    jtis: HashMap<String, Option<u64>>,
    cursor: Option<String>,
    etag: Option<String>,
    current_at: Option<Duration>,
    /// The issuer ignored `?since=` (pico): full polls only.
    no_deltas: bool,
    /// When the stream was found missing.
    no_stream_at: Option<Duration>,
    streaming: bool,
    /// Entries added since expired ones were last dropped.
    added: usize,
}

/// Entries added between two sweeps of the expired ones.
const PRUNE_EVERY: usize = 4096;

impl State {
    /// Adds `jti`; every [`PRUNE_EVERY`] additions drops the entries whose
    /// token has expired (past `exp` plus `leeway`), as the issuer does, so
    /// a long-running consumer holds what still matters.
    fn insert(&mut self, jti: String, exp: Option<u64>, now: Duration, leeway: Duration) {
        if jti.len() > MAX_JTI {
            return;
        }
        self.jtis.insert(jti, exp);
        self.added += 1;
        if self.added >= PRUNE_EVERY {
            self.added = 0;
            let horizon = now.saturating_sub(leeway).as_secs();
            self.jtis.retain(|_, exp| exp.is_none_or(|e| e >= horizon));
        }
    }
}

#[derive(Deserialize)]
struct Item {
    jti: Option<String>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    full: Option<bool>,
}

enum StreamEnd {
    /// The server said `reset`: refetch the full list.
    Reset,
    /// The connection ended.
    Closed,
    /// The issuer has no event stream.
    Unsupported,
}

pub(crate) struct Revocations {
    config: Config,
    client: reqwest::Client,
    state: Mutex<State>,
}

fn item_exp(n: &Option<serde_json::Number>) -> Option<u64> {
    n.as_ref()
        .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
}

impl Revocations {
    pub(crate) fn new(config: Config, client: reqwest::Client) -> Self {
        Self {
            config,
            client,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn status(&self) -> RevocationStatus {
        let now = self.config.clock.now();
        let st = self.lock();
        RevocationStatus {
            entries: st.jtis.len(),
            cursor: st.cursor.clone(),
            age: st.current_at.map(|t| now.saturating_sub(t)),
            streaming: st.streaming,
        }
    }

    /// Whether the denylist is current enough to be trusted.
    pub(crate) fn current(&self) -> bool {
        if self.config.revocations == RevocationSource::Off {
            return true;
        }
        let now = self.config.clock.now();
        self.lock()
            .current_at
            .is_some_and(|t| now.saturating_sub(t) <= self.config.max_staleness)
    }

    /// Refuses `jti` when revoked, or when the denylist is too old under
    /// fail-closed.
    pub(crate) fn check(&self, jti: &str) -> Result<(), Rejection> {
        if self.config.revocations == RevocationSource::Off {
            return Ok(());
        }
        let now = self.config.clock.now();
        let st = self.lock();
        if st.jtis.contains_key(jti) {
            return Err(Rejection::new(Reason::Revoked, "token revoked"));
        }
        let fresh = st
            .current_at
            .is_some_and(|t| now.saturating_sub(t) <= self.config.max_staleness);
        if !fresh && self.config.policy == StalePolicy::FailClosed {
            return Err(Rejection::new(
                Reason::Stale,
                "revocation list is out of date: the issuer is unreachable",
            ));
        }
        Ok(())
    }

    fn mark_current(&self) {
        let now = self.config.clock.now();
        self.lock().current_at = Some(now);
    }

    fn add(&self, jti: String, exp: Option<u64>) {
        let now = self.config.clock.now();
        self.lock().insert(jti, exp, now, self.config.leeway);
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.service_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// One poll: a delta when a cursor is known and the issuer answers
    /// deltas, else the full list (conditional on its ETag).
    async fn poll(&self) -> Result<(), FetchError> {
        let (cursor, etag) = {
            let st = self.lock();
            let cursor = if st.no_deltas {
                None
            } else {
                st.cursor.clone()
            };
            (cursor, st.etag.clone())
        };
        let url = self.config.route("/revoked-jtis");
        let mut req = self.client.get(&url).timeout(self.config.request_timeout);
        if let Some(c) = &cursor {
            req = req.query(&[("since", c.as_str())]);
        } else if let Some(tag) = &etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag.as_str());
        }
        let resp = self.authorized(req).send().await?;
        let status = resp.status().as_u16();
        if status == 304 {
            self.mark_current();
            return Ok(());
        }
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let new_etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_bounded(resp, self.config.max_feed_bytes).await?;
        let body: Body =
            serde_json::from_slice(&body).map_err(|e| FetchError::Malformed(e.to_string()))?;
        let now = self.config.clock.now();
        let mut st = self.lock();
        let delta = cursor.is_some() && body.full == Some(false);
        if cursor.is_some() && body.full.is_none() {
            // `since` ignored: an issuer without deltas (pico-server-auth).
            st.no_deltas = true;
        }
        if !delta {
            st.jtis.clear();
            st.etag = new_etag;
        }
        for item in body.items {
            if let Some(jti) = item.jti {
                let exp = item_exp(&item.exp);
                st.insert(jti, exp, now, self.config.leeway);
            }
        }
        if body.cursor.is_some() || !delta {
            st.cursor = body.cursor;
        }
        st.current_at = Some(now);
        Ok(())
    }

    /// One connection of the event stream, read until it ends.
    async fn stream(&self) -> Result<StreamEnd, FetchError> {
        let cursor = self.lock().cursor.clone();
        let url = self.config.route("/revoked-jtis/stream");
        let mut req = self
            .client
            .get(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(c) = &cursor {
            req = req.header("last-event-id", c.as_str());
        }
        let connect =
            tokio::time::timeout(self.config.request_timeout, self.authorized(req).send());
        let mut resp = match connect.await {
            Ok(r) => r?,
            Err(_) => return Err(FetchError::Timeout),
        };
        let status = resp.status().as_u16();
        if matches!(status, 404 | 405 | 501) {
            return Ok(StreamEnd::Unsupported);
        }
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Ok(StreamEnd::Unsupported);
        }
        self.mark_current();
        self.lock().streaming = true;
        let end = self.read_stream(&mut resp).await;
        self.lock().streaming = false;
        end
    }

    async fn read_stream(&self, resp: &mut reqwest::Response) -> Result<StreamEnd, FetchError> {
        let mut parser = SseParser::new(self.config.max_sse_line);
        let mut items = Vec::new();
        loop {
            let chunk =
                match tokio::time::timeout(self.config.stream_idle_timeout, resp.chunk()).await {
                    Err(_) => return Err(FetchError::Timeout),
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok(None)) => return Ok(StreamEnd::Closed),
                    Ok(Ok(Some(chunk))) => chunk,
                };
            parser
                .push(&chunk, &mut items)
                .map_err(|e| FetchError::Malformed(e.to_string()))?;
            for item in items.drain(..) {
                match item {
                    SseItem::Comment => {}
                    SseItem::Event { event, data, id } => match event.as_str() {
                        "revoked" => {
                            if let Ok(item) = serde_json::from_str::<Item>(&data) {
                                if let Some(jti) = item.jti {
                                    self.add(jti, item_exp(&item.exp));
                                }
                            }
                            if let Some(id) = id {
                                self.lock().cursor = Some(id);
                            }
                        }
                        "reset" => return Ok(StreamEnd::Reset),
                        _ => {}
                    },
                }
            }
            self.mark_current();
        }
    }

    /// The background task: keeps the denylist current until dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let mut need_full = true;
        loop {
            let stream_wanted = self.config.revocations == RevocationSource::Stream && {
                let now = self.config.clock.now();
                let st = self.lock();
                st.no_stream_at
                    .is_none_or(|t| now.saturating_sub(t) >= STREAM_PROBE)
            };
            match self.config.revocations {
                RevocationSource::Off => return,
                _ if !stream_wanted => {
                    if let Err(e) = self.poll().await {
                        tracing::warn!(error = %e, "revocation poll failed");
                    }
                    tokio::time::sleep(self.config.poll_interval).await;
                }
                _ => {
                    if need_full || self.lock().cursor.is_none() {
                        if let Err(e) = self.poll().await {
                            tracing::warn!(error = %e, "revocation list fetch failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                        need_full = false;
                        if self.lock().cursor.is_none() {
                            // No cursor: the issuer has no feed to follow.
                            self.lock().no_stream_at = Some(self.config.clock.now());
                            continue;
                        }
                    }
                    match self.stream().await {
                        Ok(StreamEnd::Reset) => {
                            let mut st = self.lock();
                            st.cursor = None;
                            st.etag = None;
                            need_full = true;
                        }
                        Ok(StreamEnd::Closed) => {
                            backoff = Duration::from_millis(100);
                            tokio::time::sleep(backoff).await;
                        }
                        Ok(StreamEnd::Unsupported) => {
                            tracing::info!("the issuer has no revocation stream: polling");
                            self.lock().no_stream_at = Some(self.config.clock.now());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "revocation stream failed; reconnecting");
                            // A poll keeps the list current should the
                            // stream alone be broken (a buffering proxy).
                            let _ = self.poll().await;
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_swept() {
        let mut st = State::default();
        let now = Duration::from_secs(1_000_000);
        let leeway = Duration::from_secs(30);
        st.insert("old".into(), Some(999_000), now, leeway);
        st.insert("edge".into(), Some(999_980), now, leeway);
        st.insert("forever".into(), None, now, leeway);
        st.insert("x".repeat(MAX_JTI + 1), None, now, leeway);
        assert_eq!(st.jtis.len(), 3, "an over-long jti is not kept");
        for i in 0..PRUNE_EVERY {
            st.insert(format!("live-{i}"), Some(2_000_000), now, leeway);
        }
        assert!(!st.jtis.contains_key("old"));
        assert!(st.jtis.contains_key("edge") && st.jtis.contains_key("forever"));
    }
}
