//! The denylist: revoking a token ([`WalletAuth::revoke`]), the list that
//! consumers poll ([`WalletAuth::revoked_jtis`]), and the mint audit's
//! listing with each mint's revocation status ([`WalletAuth::mints`]).
//!
//! The domain returns data; `crate::http` turns it into bytes (and caches
//! them, keyed by [`RevokedJtis::version`] and [`RevokedJtis::valid_until`]).

use std::sync::Arc;

use serde::Serialize;

use super::{check_len, WalletAuth, MAX_TEXT_LEN};
use crate::audit::MintRecord;
use crate::revocation::{FeedRead, RevocationEntry, RevocationKind};
use crate::token::AccessClaims;
use crate::Error;

/// Most entries one delta poll serves: a consumer further behind gets the
/// full list (one cached, gzip-able body) instead.
pub const MAX_DELTA: usize = 10_000;

/// A mint record with its revocation status, as `/mints` serves it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MintView {
    /// The record.
    #[serde(flatten)]
    pub record: MintRecord,
    /// Whether its jti is on the denylist now.
    pub revoked: bool,
}

/// What `/revoked-jtis` serves: the operator revocations whose token has not
/// expired, newest first, as of one version of the denylist.
#[derive(Debug, Clone)]
pub struct RevokedJtis {
    /// The denylist's [`version`](crate::RevocationStore::version) when it
    /// was read.
    pub version: u64,
    /// The earliest `exp` among the items (epoch seconds), `u64::MAX` when
    /// none has one: from then on the list is out of date.
    pub valid_until: u64,
    /// The feed position the list is complete up to (SPEC 7: every entry
    /// numbered at or below it is listed); `None` when the store keeps no
    /// feed.
    pub cursor: Option<u64>,
    all: Arc<Vec<RevocationEntry>>,
    now: u64,
}

impl RevokedJtis {
    /// The entries served, newest first.
    pub fn items(&self) -> impl Iterator<Item = &RevocationEntry> {
        let now = self.now;
        self.all
            .iter()
            .filter(|e| e.kind.is_served())
            .filter(move |e| e.exp.is_none_or(|exp| exp > now))
    }
}

impl WalletAuth {
    /// Adds a jti to the denylist on behalf of `caller` (idempotent). `exp`,
    /// when the caller knows the token's expiry, lets the entry drop out of
    /// `/revoked-jtis` once the token is dead anyway (the file keeps it).
    ///
    /// # Errors
    /// `JtiRequired`, `FieldTooLong`, `ExpInPast` when `exp` is at or
    /// before now (nothing is stored: the entry would never reach
    /// consumers), `Unavailable` when it cannot be made durable.
    pub async fn revoke(
        &self,
        caller: &AccessClaims,
        jti: &str,
        reason: &str,
        exp: Option<u64>,
    ) -> Result<RevocationEntry, Error> {
        if jti.is_empty() {
            return Err(Error::JtiRequired);
        }
        check_len("jti", jti, MAX_TEXT_LEN)?;
        check_len("reason", reason, MAX_TEXT_LEN)?;
        // Served while `exp > now` (`RevokedJtis::items`): an entry with
        // `exp <= now` would be stored and never served.
        if exp.is_some_and(|exp| exp <= self.inner.clock.now_secs()) {
            return Err(Error::ExpInPast);
        }
        let entry = RevocationEntry {
            jti: jti.to_string(),
            revoked_at: self.inner.clock.now_f64(),
            reason: reason.to_string(),
            revoked_by: caller.sub.clone(),
            exp,
            kind: RevocationKind::Token,
        };
        let stored = self.inner.revocations.revoke(entry).await?;
        if let Some(m) = &self.inner.metrics {
            m.revoked();
        }
        tracing::info!(jti = %stored.jti, by = %caller.sub, "revoked");
        Ok(stored)
    }

    /// The list `/revoked-jtis` serves: operator revocations whose token
    /// has not expired, newest first.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revoked_jtis(&self) -> Result<RevokedJtis, Error> {
        let now = self.inner.clock.now_secs();
        // The version is read before the list: a change in between makes
        // the result look stale, never a stale result look current.
        let version = self.inner.revocations.version();
        // The cursor too: an entry numbered at or below it is in the list.
        let cursor = self.inner.revocations.feed_position();
        let all = self.inner.revocations.list().await?;
        let mut list = RevokedJtis {
            version,
            valid_until: u64::MAX,
            cursor,
            all,
            now,
        };
        list.valid_until = list.items().filter_map(|e| e.exp).min().unwrap_or(u64::MAX);
        Ok(list)
    }

    /// Whether a list [`revoked_jtis`](Self::revoked_jtis) returned with
    /// this `version` and `valid_until` is still what it would return now
    /// (one atomic load and a clock read: cheap enough for every poll).
    pub fn revoked_jtis_current(&self, version: u64, valid_until: u64) -> bool {
        let now = self.inner.clock.now_secs();
        version == self.inner.revocations.version() && now < valid_until
    }

    /// What a delta poll after cursor `after` serves (SPEC 7): the
    /// operator revocations added since, oldest first, and the cursor to
    /// continue from; `None` when the caller must take the full list
    /// instead (the cursor is unknown, or more than [`MAX_DELTA`] entries
    /// behind, or the store keeps no feed).
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revoked_since(
        &self,
        after: u64,
    ) -> Result<Option<(Vec<RevocationEntry>, u64)>, Error> {
        if self.inner.revocations.feed_is_at(after) {
            return Ok(Some((Vec::new(), after)));
        }
        Ok(match self.revocation_feed(after, MAX_DELTA).await? {
            FeedRead::Changes {
                entries,
                position,
                more: false,
            } => Some((entries.into_iter().map(|(_, e)| e).collect(), position)),
            _ => None,
        })
    }

    /// The served entries of the change feed after `after` (see
    /// [`RevocationStore::feed_after`](crate::RevocationStore::feed_after)).
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer.
    pub async fn revocation_feed(&self, after: u64, limit: usize) -> Result<FeedRead, Error> {
        Ok(self.inner.revocations.feed_after(after, limit).await?)
    }

    /// The change feed's position; `None` when the store keeps no feed.
    pub fn revocation_feed_position(&self) -> Option<u64> {
        self.inner.revocations.feed_position()
    }

    /// A receiver that sees the change feed's position move.
    pub fn revocation_feed_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.revocations.feed_watch()
    }

    /// Whether a Bearer token that was valid when a stream opened still is:
    /// not expired at the router's clock, not revoked.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot answer (the caller closes).
    pub async fn still_authorized(&self, jti: &str, exp: u64) -> Result<bool, Error> {
        if exp <= self.inner.clock.now_secs() {
            return Ok(false);
        }
        Ok(self.inner.revocations.get(jti).await?.is_none())
    }

    /// The newest `limit` audited mints with their revocation status.
    ///
    /// # Errors
    /// `Unavailable` when a store cannot answer.
    pub async fn mints(&self, limit: Option<i64>) -> Result<Vec<MintView>, Error> {
        let max = self.inner.config.mint_audit_max_in_memory;
        let limit = limit
            .unwrap_or(200)
            .clamp(1, max.min(i64::MAX as usize) as i64) as usize;
        let records = self.inner.audit.recent(limit).await?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let revoked =
                !record.jti.is_empty() && self.inner.revocations.get(&record.jti).await?.is_some();
            out.push(MintView { record, revoked });
        }
        Ok(out)
    }
}
