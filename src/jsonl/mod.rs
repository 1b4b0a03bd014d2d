//! The one JSON Lines writer and loader of the crate.
//!
//! - [`JsonlWriter`] appends lines durably with group commit: one OS thread
//!   owns the file, drains every request already queued, writes the batch
//!   with one `write_all`, calls `sync_data` once and then answers every
//!   caller of the batch. A caller's `append` returns `Ok` only after its
//!   lines are fsync'd. A caller that knows it will append shortly (a mint
//!   whose signature is being computed) can [`announce`](JsonlWriter::announce)
//!   it: while more appends are announced than are queued, a batch waits
//!   for them (at most [`MAX_LINGER`]) so that they share its fsync.
//!   After a failed batch the next one reopens the file and tries again, so
//!   appends recover by themselves; [`rewrite`](JsonlWriter::rewrite)
//!   replaces the file crash-safely (compaction).
//! - [`load`] and [`load_last`] read a file written by this crate or by
//!   pico-server-auth: blank lines are skipped, a malformed line is skipped
//!   with a warning (line number only, never its contents), and a torn last
//!   line (a crash mid-append) is survived.
//!
//! The module is in three parts: [`writer`] (the file and its thread),
//! [`batch`] (the group-commit and announcement protocol) and [`load`].

mod batch;
mod load;
mod writer;

pub use self::batch::{Announcement, MAX_LINGER};
pub use self::load::{load, load_last};
pub(crate) use self::writer::serialize_lines;
pub use self::writer::{
    rewrite_temp_path, AppendDone, FsyncStats, HealthProbe, JsonlWriter, KeepLine, RewriteStats,
};

/// Records and fake journals shared by the tests of the three parts.
#[cfg(test)]
pub(crate) mod test_support {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Rec {
        pub(crate) id: u32,
    }

    pub(crate) fn recs(ids: &[u32]) -> Vec<Rec> {
        ids.iter().map(|&id| Rec { id }).collect()
    }
}
