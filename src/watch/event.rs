//! What the event log carries: [`Revision`], [`Event`], [`EventKind`] and [`Reason`].

use std::fmt;
use std::sync::Arc;

use crate::discovery::Metadata;
use crate::name::Name;
use crate::tag::Tag;

/// The position of a committed change in the registry's event log.
///
/// Every committed change (a registration, a replacement, a removal) gets one, from a
/// registry-wide counter that only increases. For any one name, revision order **is** commit
/// order, so replaying events in revision order rebuilds the exact state. Revisions are not
/// dense: a writer that draws one and then loses its compare-and-swap leaves a gap.
///
/// `Revision::ZERO` is "before every change": `watch(filter, Revision::ZERO)` asks for
/// everything still in the history.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Revision(u64);

impl Revision {
    /// Before every change.
    pub const ZERO: Revision = Revision(0);

    /// The revision as a number.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// A revision from a number (one read back from storage).
    pub const fn from_raw(raw: u64) -> Revision {
        Revision(raw)
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Revision({})", self.0)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Why a binding was removed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Reason {
    /// [`Registry::unregister`](crate::Registry::unregister): unconditional, not identity-safe.
    Explicit,
    /// A tag-checked removal: [`Registry::unregister_if_same`](crate::Registry::unregister_if_same),
    /// [`Registration::unregister`](crate::Registration::unregister),
    /// [`Registry::unregister_instance`](crate::Registry::unregister_instance).
    IfSame,
    /// A [`Registration`](crate::Registration) guard was dropped while still current.
    GuardDropped,
    /// A weak binding whose owner had died was purged (by a read, a write, a migration of the
    /// table or [`Registry::purge_dead`](crate::Registry::purge_dead)).
    WeakOwnerDead,
    /// [`Registry::clear`](crate::Registry::clear).
    Cleared,
    /// The binding's time to live passed without a keepalive (see
    /// [`Registry::with_ttl`](crate::Registry::with_ttl)); removed by a reaper, a purge, or a
    /// read or write that met it.
    Expired,
    /// The binding had been critical for longer than
    /// [`Builder::remove_critical_after`](crate::Builder::remove_critical_after).
    Critical,
    /// The binding was a pool's member, removed with its pool
    /// ([`Registry::unregister_pool`](crate::Registry::unregister_pool), the pool's guard
    /// dropped, or a registration of the pool that failed and unbound what it had bound).
    PoolRemoved,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Explicit => "unregistered",
            Reason::IfSame => "unregistered by tag",
            Reason::GuardDropped => "guard dropped",
            Reason::WeakOwnerDead => "weak owner dead",
            Reason::Cleared => "cleared",
            Reason::Expired => "expired",
            Reason::Critical => "critical for too long",
            Reason::PoolRemoved => "removed with its pool",
        })
    }
}

/// What a committed change did.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum EventKind<V> {
    /// The name was free and is now bound to `tag`.
    Registered {
        /// The new binding's tag.
        tag: Tag,
        /// The bound value; `None` for a weak binding (the history must not keep its owner
        /// alive: fetch it with [`Registry::get_if`](crate::Registry::get_if)).
        value: Option<V>,
    },
    /// The binding `old` was replaced by `tag` (one compare-and-swap).
    Replaced {
        /// The binding that was replaced.
        old: Tag,
        /// The new binding's tag.
        tag: Tag,
        /// The new value; `None` for a weak binding.
        value: Option<V>,
    },
    /// The metadata of the binding `tag` was changed (by
    /// [`Registry::update_metadata`](crate::Registry::update_metadata)); the binding and its
    /// value are the same. The new metadata is [`Event::metadata`].
    MetadataUpdated {
        /// The binding's tag (unchanged).
        tag: Tag,
    },
    /// The binding `tag` was removed.
    Unregistered {
        /// The removed binding's tag.
        tag: Tag,
        /// Why.
        reason: Reason,
    },
}

/// One committed change, as [`Registry::watch`](crate::Registry::watch) delivers it.
#[derive(Clone, PartialEq, Eq)]
pub struct Event<V> {
    pub(crate) revision: Revision,
    pub(crate) name: Name,
    pub(crate) kind: EventKind<V>,
    pub(crate) metadata: Option<Arc<Metadata>>,
}

impl<V> Event<V> {
    /// The change's position in the log.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The name that changed.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// What happened.
    pub fn kind(&self) -> &EventKind<V> {
        &self.kind
    }

    /// What happened, owned.
    pub fn into_kind(self) -> EventKind<V> {
        self.kind
    }

    /// The metadata of the binding after this change (`None` for a removal, or a binding
    /// registered without metadata).
    pub fn metadata(&self) -> Option<&Arc<Metadata>> {
        self.metadata.as_ref()
    }

    /// The tag bound after this change, or `None` if the change removed the binding.
    pub fn bound(&self) -> Option<Tag> {
        match &self.kind {
            EventKind::Registered { tag, .. }
            | EventKind::Replaced { tag, .. }
            | EventKind::MetadataUpdated { tag } => Some(*tag),
            EventKind::Unregistered { .. } => None,
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for Event<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("revision", &self.revision)
            .field("name", &self.name.as_str())
            .field("kind", &self.kind)
            .field("metadata", &self.metadata)
            .finish()
    }
}
