//! The denylist's change feed (SPEC 7): sequence numbers, what a read after
//! a cursor returns, and the watermark that keeps the feed gap-free while
//! writes complete out of order.
//!
//! # Sequence numbers
//! Every served entry (an operator revocation) gets a sequence number when it
//! is added; a consumer's cursor is the number of the last entry it has. The
//! memory and JSON Lines stores number entries from a hybrid clock: one more
//! than the last number, or the current time in microseconds when that is
//! larger. So numbers only grow, also across a restart that forgot the last
//! one (a memory store, or a file whose newest line was compacted away): a
//! cursor at or below the current time that is past the feed's position
//! names a point after which nothing was added. The Redis store numbers
//! entries with one `INCR` shared by every instance instead.
//!
//! # The watermark
//! A JSON Lines write takes its number before its line is appended (the
//! number is in the line), and writes finish in any order. The feed's
//! position only moves to `n` once every write numbered `n` or lower has
//! finished (entered the index, or failed), so a consumer that has read up
//! to the position can never later miss a lower number.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::RevocationEntry;

/// What a store's feed holds after a cursor
/// ([`RevocationStore::feed_after`](super::RevocationStore::feed_after)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FeedRead {
    /// The served entries after the cursor, oldest first, each with its
    /// sequence number.
    Changes {
        /// At most the `limit` asked for.
        entries: Vec<(u64, RevocationEntry)>,
        /// Where the next read continues: the last entry's number when
        /// `more` is set, else the feed's position (or the cursor itself,
        /// when that is ahead of a position that has nothing after it).
        position: u64,
        /// Whether entries beyond `limit` follow.
        more: bool,
    },
    /// The cursor is not one this feed can continue from (from another
    /// feed, or from its future): the caller refetches the full list.
    Unknown,
}

/// The next clock-based sequence number after `last` (see the module docs).
pub(crate) fn next_clock_seq(last: u64, now_millis: u64) -> u64 {
    last.saturating_add(1).max(now_millis.saturating_mul(1000))
}

/// Whether `after`, past a clock-numbered feed's `position`, still names a
/// point of that feed with nothing after it (it is not from the future).
pub(crate) fn clock_cursor_is_past(after: u64, position: u64, now_millis: u64) -> bool {
    after > position && after <= now_millis.saturating_mul(1000).max(position)
}

#[derive(Debug, Default)]
struct Allocation {
    last: u64,
    pending: BTreeSet<u64>,
}

/// Hands out clock-based sequence numbers to writes that finish out of
/// order, and says how far the feed may advance (the watermark).
#[derive(Debug, Default)]
pub(crate) struct SeqAllocator {
    inner: Mutex<Allocation>,
}

impl SeqAllocator {
    /// An allocator whose numbers continue after `last`.
    pub(crate) fn after(last: u64) -> Self {
        Self {
            inner: Mutex::new(Allocation {
                last,
                pending: BTreeSet::new(),
            }),
        }
    }

    /// A new number, pending until [`finish`](Self::finish).
    pub(crate) fn allocate(&self, now_millis: u64) -> u64 {
        let mut a = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = next_clock_seq(a.last, now_millis);
        a.last = seq;
        a.pending.insert(seq);
        seq
    }

    /// Ends the write numbered `seq` (it entered the index, or failed);
    /// returns the new watermark: every number at or below it is finished.
    pub(crate) fn finish(&self, seq: u64) -> u64 {
        let mut a = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        a.pending.remove(&seq);
        match a.pending.first() {
            Some(&first) => first - 1,
            None => a.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_grow_with_the_clock_and_past_it() {
        assert_eq!(next_clock_seq(0, 5), 5000);
        assert_eq!(next_clock_seq(5000, 5), 5001);
        assert_eq!(next_clock_seq(9000, 6), 9001);
        assert_eq!(next_clock_seq(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn the_watermark_waits_for_the_lowest_pending_write() {
        let alloc = SeqAllocator::after(10);
        let a = alloc.allocate(0);
        let b = alloc.allocate(0);
        let c = alloc.allocate(0);
        assert_eq!((a, b, c), (11, 12, 13));
        assert_eq!(alloc.finish(c), 10, "11 and 12 still pending");
        assert_eq!(alloc.finish(a), 11);
        assert_eq!(alloc.finish(b), 13);
    }

    #[test]
    fn a_cursor_past_the_position_is_known_only_up_to_now() {
        // now = 2 s: cursors up to 2,000,000 are past, not future.
        assert!(clock_cursor_is_past(1_500_000, 1_000_000, 2000));
        assert!(!clock_cursor_is_past(2_000_001, 1_000_000, 2000));
        assert!(!clock_cursor_is_past(1_000_000, 1_000_000, 2000));
        // A frozen test clock: numbered past now, still known up to the position.
        assert!(!clock_cursor_is_past(2_000_005, 2_000_005, 2000));
    }
}
