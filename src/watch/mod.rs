//! Revisions, events, watchers, waiting, snapshots and restore (the registry's event log).
//!
//! The log itself, and the protocol that orders it, is in the raw core (`raw/log.rs`): every
//! commit (one per winning compare-and-swap) records its event there, once. This module is
//! the safe side: [`Filter`], [`Watcher`] (a blocking iterator and a `Stream`), the waits, and
//! [`Snapshot`] with restore.

mod event;
mod snapshot;
mod wait;
mod watcher;

use std::fmt;

pub use self::event::{Event, EventKind, Reason, Revision};
pub use self::snapshot::{Counters, RestoreError, SNAPSHOT_FORMAT, Snapshot, SnapshotEntry};
pub use self::watcher::Watcher;

/// Which names a watcher or a subscription sees.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Filter {
    kind: FilterKind,
}

#[derive(Clone, PartialEq, Eq, Debug, Default)]
enum FilterKind {
    #[default]
    All,
    Prefix(String),
    Name(String),
}

impl Filter {
    /// Every name.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Names that start with `prefix` (`""` is every name).
    pub fn prefix(prefix: impl Into<String>) -> Filter {
        Filter {
            kind: FilterKind::Prefix(prefix.into()),
        }
    }

    /// One name.
    pub fn name(name: impl Into<String>) -> Filter {
        Filter {
            kind: FilterKind::Name(name.into()),
        }
    }

    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        match &self.kind {
            FilterKind::All => true,
            FilterKind::Prefix(p) => name.starts_with(p.as_str()),
            FilterKind::Name(n) => name == n,
        }
    }
}

/// Why a watch, a subscription or a snapshot could not be served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum WatchError {
    /// The registry was built without events ([`Builder::events`](crate::Builder::events)).
    Disabled,
    /// The revisions asked for are no longer in the history: `watch(since)` with
    /// `since + 1 < oldest`. Start again from a [`subscribe`](crate::Registry::subscribe).
    Compacted {
        /// The first revision asked for.
        requested: Revision,
        /// The oldest revision the history still holds.
        oldest: Revision,
    },
    /// The watcher fell more than the history behind the writers: the event at `next` was
    /// overwritten before it was read. The watcher ends; resubscribe.
    Lagged {
        /// The revision the watcher was about to deliver.
        next: Revision,
        /// The oldest revision the history held when the watcher noticed.
        oldest: Revision,
    },
    /// A snapshot could not settle: writers kept overwriting the history it needed (make the
    /// history longer), or the calling thread holds a [`Pinned`](crate::Pinned) handle, which
    /// would keep the snapshot waiting forever (drop it first).
    Busy,
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Disabled => {
                f.write_str("the registry keeps no event log (build it with Builder::events)")
            }
            WatchError::Compacted { requested, oldest } => write!(
                f,
                "revision {requested} is no longer in the history (oldest kept: {oldest}); \
                 resubscribe"
            ),
            WatchError::Lagged { next, oldest } => write!(
                f,
                "the watcher fell behind: revision {next} was overwritten (oldest kept: \
                 {oldest}); resubscribe"
            ),
            WatchError::Busy => f.write_str(
                "the snapshot could not settle: writers outran the history, or this thread is \
                 pinned",
            ),
        }
    }
}

impl std::error::Error for WatchError {}
