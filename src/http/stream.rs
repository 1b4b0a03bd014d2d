//! `GET /revoked-jtis/stream`: the denylist's change feed as Server-Sent
//! Events (SPEC 7).
//!
//! One [`Hub`] per router fans each new revocation out to every connected
//! stream: a single task wakes when the feed moves, reads what is new once,
//! encodes each entry's JSON once, and offers it to every connection's
//! bounded queue. A connection whose queue is full (its reader is slower
//! than the feed) is dropped on the spot, so no reader can hold more than
//! [`STREAM_BUFFER`] events of memory; it reconnects with `Last-Event-ID`
//! and replays what it missed. Replay reads the feed page by page as the
//! connection drains, never all at once.
//!
//! A stream ends when its caller's token expires or is revoked: a revocation
//! of that jti seen by the hub closes it at once, and every
//! [`TOKEN_CHECK`] the connection checks its token against the clock and
//! the denylist.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot, watch};

use super::bodies::{format_cursor, parse_cursor};
use crate::revocation::{FeedRead, RevocationEntry};
use crate::{AccessClaims, Error, WalletAuth};

/// Events one connection may have queued; past it the connection is
/// dropped as too slow.
pub const STREAM_BUFFER: usize = 256;

/// How often a connection checks that its token is still valid.
pub const TOKEN_CHECK: Duration = Duration::from_secs(1);

/// Entries read from the feed at once (by the hub, and by a replay).
const PAGE: usize = 256;

/// Pause after a failed feed read before the hub tries again.
const RETRY: Duration = Duration::from_millis(500);

/// What the hub queues for a connection.
#[derive(Clone)]
enum Item {
    /// A revocation: its number and its JSON.
    Revoked { seq: u64, data: Arc<str> },
    /// The feed lost its place: refetch the full list.
    Reset { position: u64 },
}

/// Why the hub closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// Its reader fell [`STREAM_BUFFER`] events behind: the connection is
    /// aborted, not ended cleanly.
    TooSlow,
}

/// The error that aborts a slow reader's connection.
#[derive(Debug, thiserror::Error)]
#[error("revocation stream dropped: the reader is too slow")]
struct TooSlow;

struct Sub {
    tx: mpsc::Sender<Item>,
    /// Fired (or dropped, with the subscription) to close the connection
    /// at once.
    kill: Option<oneshot::Sender<Closed>>,
    /// The jti of the caller's token: its revocation closes the stream.
    jti: String,
}

#[derive(Default)]
struct HubState {
    /// The feed position every live event up to has been queued.
    position: u64,
    started: bool,
    next_id: u64,
    subs: HashMap<u64, Sub>,
}

/// The fan-out of one router's event streams.
pub(super) struct Hub {
    state: Mutex<HubState>,
    /// Held while the hub lives; the hub task stops when it is dropped.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    max_streams: usize,
    keep_alive: Duration,
}

impl Hub {
    pub(super) fn new(max_streams: usize, keep_alive: Duration) -> Self {
        Self {
            state: Mutex::default(),
            stop: Mutex::new(None),
            max_streams,
            keep_alive,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many streams are connected.
    #[cfg(test)]
    fn connected(&self) -> usize {
        self.lock().subs.len()
    }

    /// Registers a connection for `caller`; returns its queue and the
    /// position from which the queue carries every event.
    fn subscribe(
        self: &Arc<Self>,
        auth: &WalletAuth,
        feed: watch::Receiver<u64>,
        caller: &AccessClaims,
    ) -> Result<(Subscription, u64), Error> {
        let mut st = self.lock();
        if st.subs.len() >= self.max_streams {
            tracing::warn!(
                max = self.max_streams,
                "revocation stream refused: too many streams"
            );
            return Err(Error::Overloaded);
        }
        if !st.started {
            st.started = true;
            st.position = auth.revocation_feed_position().unwrap_or(0);
            let (stop, stopped) = oneshot::channel();
            *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
            tokio::spawn(run_hub(Arc::downgrade(self), auth.clone(), feed, stopped));
        }
        let id = st.next_id;
        st.next_id += 1;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (kill, killed) = oneshot::channel();
        st.subs.insert(
            id,
            Sub {
                tx,
                kill: Some(kill),
                jti: caller.jti.clone(),
            },
        );
        let sub = Subscription {
            rx,
            killed,
            _guard: SubGuard {
                hub: Arc::downgrade(self),
                id,
            },
        };
        Ok((sub, st.position))
    }

    /// Queues `entries` (oldest first) for every connection; drops the
    /// connections that cannot take them and those whose token is revoked.
    fn broadcast(&self, entries: Vec<(u64, RevocationEntry)>, position: u64) {
        let mut encoded = Vec::with_capacity(entries.len());
        for (seq, entry) in entries {
            match serde_json::to_string(&entry) {
                Ok(json) => encoded.push((seq, entry.jti, Arc::<str>::from(json))),
                Err(e) => {
                    tracing::error!(jti = %entry.jti, error = %e, "cannot encode a revocation")
                }
            }
        }
        let mut st = self.lock();
        for (seq, jti, data) in encoded {
            let item = Item::Revoked { seq, data };
            st.subs
                .retain(|_, sub| offer(sub, item.clone()) && sub.jti != jti);
        }
        st.position = st.position.max(position);
    }

    /// Tells every connection to refetch the full list.
    fn reset(&self, position: u64) {
        let mut st = self.lock();
        st.subs
            .retain(|_, sub| offer(sub, Item::Reset { position }));
        st.position = position;
    }
}

/// Queues `item` for `sub`; false when the connection must go (gone, or
/// too slow: its queue is full, and it is told so).
fn offer(sub: &mut Sub, item: Item) -> bool {
    match sub.tx.try_send(item) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::info!(
                buffer = STREAM_BUFFER,
                "revocation stream dropped: its reader is too slow"
            );
            if let Some(kill) = sub.kill.take() {
                let _ = kill.send(Closed::TooSlow);
            }
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// The hub's task: whenever the feed moves, read what is new and fan it
/// out. Stops with the hub.
async fn run_hub(
    hub: Weak<Hub>,
    auth: WalletAuth,
    mut feed: watch::Receiver<u64>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        loop {
            let Some(h) = hub.upgrade() else { return };
            let from = h.lock().position;
            match auth.revocation_feed(from, PAGE).await {
                Ok(FeedRead::Changes {
                    entries,
                    position,
                    more,
                }) => {
                    h.broadcast(entries, position);
                    if !more {
                        break;
                    }
                }
                Ok(_) => {
                    // The feed no longer knows our place (its store was
                    // replaced): every connection refetches.
                    h.reset(auth.revocation_feed_position().unwrap_or(0));
                    break;
                }
                Err(e) => {
                    drop(h);
                    tracing::warn!(error = %e, "revocation stream: feed read failed; retrying");
                    tokio::select! {
                        _ = &mut stopped => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            changed = feed.changed() => if changed.is_err() { return },
        }
    }
}

/// A connection's place in the hub.
struct Subscription {
    rx: mpsc::Receiver<Item>,
    killed: oneshot::Receiver<Closed>,
    _guard: SubGuard,
}

/// Leaves the hub when the connection ends (the client went away, or the
/// stream closed).
struct SubGuard {
    hub: Weak<Hub>,
    id: u64,
}

impl Drop for SubGuard {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.lock().subs.remove(&self.id);
        }
    }
}

/// One connection's stream of events.
struct Conn {
    auth: WalletAuth,
    sub: Subscription,
    /// The number of the last revocation sent.
    cursor: u64,
    /// While replaying: the position from which the queue takes over.
    replay_until: Option<u64>,
    ready: VecDeque<Event>,
    jti: String,
    exp: u64,
    check: tokio::time::Interval,
}

fn revoked_event(seq: u64, data: &str) -> Event {
    Event::default()
        .event("revoked")
        .id(format_cursor(seq))
        .data(data)
}

fn reset_event(position: u64) -> Event {
    let cursor = format_cursor(position);
    Event::default()
        .event("reset")
        .id(cursor.clone())
        .data(format!("{{\"cursor\":\"{cursor}\"}}"))
}

impl Conn {
    /// The next event; `None` ends the stream, an error aborts it.
    async fn next(&mut self) -> Option<Result<Event, TooSlow>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if let Some(until) = self.replay_until {
                self.replay_page(until).await?;
                continue;
            }
            tokio::select! {
                biased;
                closed = &mut self.sub.killed => {
                    return match closed {
                        Ok(Closed::TooSlow) => Some(Err(TooSlow)),
                        Err(_) => None,
                    };
                }
                _ = self.check.tick() => {
                    if !matches!(self.auth.still_authorized(&self.jti, self.exp).await, Ok(true)) {
                        return None;
                    }
                }
                item = self.sub.rx.recv() => match item? {
                    Item::Revoked { seq, data } => {
                        if seq > self.cursor {
                            self.cursor = seq;
                            return Some(Ok(revoked_event(seq, &data)));
                        }
                    }
                    Item::Reset { position } => {
                        self.cursor = position;
                        return Some(Ok(reset_event(position)));
                    }
                },
            }
        }
    }

    /// Reads the next page of what the client missed (up to `until`, where
    /// the queue takes over). `None` when the store cannot answer.
    async fn replay_page(&mut self, until: u64) -> Option<()> {
        match self.auth.revocation_feed(self.cursor, PAGE).await {
            Ok(FeedRead::Changes { entries, more, .. }) => {
                let mut done = !more;
                for (seq, entry) in entries {
                    if seq > until {
                        done = true;
                        break;
                    }
                    let json = serde_json::to_string(&entry).ok()?;
                    self.ready.push_back(revoked_event(seq, &json));
                    self.cursor = seq;
                }
                if done || self.cursor >= until {
                    self.replay_until = None;
                }
            }
            Ok(_) => {
                self.ready.push_back(reset_event(until));
                self.cursor = until;
                self.replay_until = None;
            }
            Err(_) => return None,
        }
        Some(())
    }
}

/// Opens a stream for `caller`, resuming after `resume` (the
/// `Last-Event-ID` header or the `since` parameter) when given.
pub(super) async fn open(
    hub: &Arc<Hub>,
    auth: &WalletAuth,
    caller: AccessClaims,
    resume: Option<&str>,
) -> Result<Response, Error> {
    let Some(feed) = auth.revocation_feed_watch() else {
        return Ok(super::error::detail(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "this revocation store keeps no change feed: poll /revoked-jtis",
        ));
    };
    let (sub, live_from) = hub.subscribe(auth, feed, &caller)?;
    let mut ready = VecDeque::new();
    let (cursor, replay_until) = match resume.map(parse_cursor) {
        None => (live_from, None),
        Some(None) => {
            ready.push_back(reset_event(live_from));
            (live_from, None)
        }
        Some(Some(after)) => match auth.revocation_feed(after, 0).await? {
            FeedRead::Changes { .. } if after < live_from => (after, Some(live_from)),
            FeedRead::Changes { .. } => (after, None),
            _ => {
                ready.push_back(reset_event(live_from));
                (live_from, None)
            }
        },
    };
    let start = tokio::time::Instant::now() + TOKEN_CHECK;
    let mut check = tokio::time::interval_at(start, TOKEN_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let conn = Conn {
        auth: auth.clone(),
        sub,
        cursor,
        replay_until,
        ready,
        jti: caller.jti,
        exp: caller.exp,
        check,
    };
    // After an error (a dropped slow reader) the stream ends.
    let events = futures_util::stream::unfold(Some(conn), |conn| async move {
        let mut conn = conn?;
        match conn.next().await? {
            Ok(event) => Some((Ok(event), Some(conn))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(hub.keep_alive))
        .into_response();
    // Proxies that buffer responses (nginx) would hold the events back.
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_the_spec_says() {
        // axum's framing, checked through the Debug-free path: the event
        // as a response body.
        let ev = revoked_event(42, "{\"jti\":\"a\"}");
        let text = format!("{ev:?}");
        assert!(text.contains("revoked") && text.contains("42"), "{text}");
        let reset = format!("{:?}", reset_event(7));
        assert!(
            reset.contains("reset") && reset.contains("cursor"),
            "{reset}"
        );
    }

    #[test]
    fn a_full_queue_drops_its_connection() {
        let hub = Hub::new(10, Duration::from_secs(15));
        let (tx, mut rx) = mpsc::channel(2);
        let (kill, mut killed) = oneshot::channel();
        hub.lock().subs.insert(
            0,
            Sub {
                tx,
                kill: Some(kill),
                jti: "mine".into(),
            },
        );
        let entry = |jti: &str| RevocationEntry {
            jti: jti.into(),
            revoked_at: 1.0,
            reason: String::new(),
            revoked_by: "op".into(),
            exp: None,
            kind: Default::default(),
        };
        hub.broadcast(vec![(1, entry("a")), (2, entry("b"))], 2);
        assert_eq!(hub.connected(), 1);
        hub.broadcast(vec![(3, entry("c"))], 3);
        assert_eq!(hub.connected(), 0, "a third event does not fit");
        assert_eq!(killed.try_recv(), Ok(Closed::TooSlow));
        assert!(rx.try_recv().is_ok());

        // The caller's own token revoked: closed.
        let (tx, _rx) = mpsc::channel(8);
        let (kill, _killed) = oneshot::channel();
        hub.lock().subs.insert(
            1,
            Sub {
                tx,
                kill: Some(kill),
                jti: "mine".into(),
            },
        );
        hub.broadcast(vec![(4, entry("mine"))], 4);
        assert_eq!(hub.connected(), 0);
    }
}
