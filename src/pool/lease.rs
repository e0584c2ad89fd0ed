//! [`Lease`]: a slot of a pool's member, or a task on a single entry, released on drop.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::core::PoolCore;
use super::keyed::Hold;
use super::load::Load;
use crate::tag::Tag;

/// A lease: a member of a pool handed out for a while (from [`Pool::acquire`](super::Pool::acquire)
/// and its kin), or a task counted on a single entry ([`Registry::acquire`](crate::Registry::acquire)
/// on an agent's name). It dereferences to the value; dropping it releases the slot (and wakes
/// one waiter) or ends the task.
///
/// A lease stays usable if its pool is removed meanwhile; its release is then harmless.
pub struct Lease<V> {
    kind: Kind<V>,
}

enum Kind<V> {
    Slot {
        core: Arc<PoolCore<V>>,
        member: usize,
        bit: u32,
        /// The key's hold, for a lease from `acquire_for`.
        hold: Option<Arc<Hold>>,
    },
    Task {
        load: Arc<Load>,
        value: V,
        name: Box<str>,
        tag: Tag,
    },
}

impl<V> Lease<V> {
    pub(crate) fn slot(
        core: Arc<PoolCore<V>>,
        member: usize,
        bit: u32,
        hold: Option<Arc<Hold>>,
    ) -> Lease<V> {
        Lease {
            kind: Kind::Slot {
                core,
                member,
                bit,
                hold,
            },
        }
    }

    pub(crate) fn task(load: Arc<Load>, value: V, name: &str, tag: Tag) -> Lease<V> {
        Lease {
            kind: Kind::Task {
                load,
                value,
                name: name.into(),
                tag,
            },
        }
    }

    /// The leased value.
    pub fn value(&self) -> &V {
        match &self.kind {
            Kind::Slot { core, member, .. } => &core.members[*member].value,
            Kind::Task { value, .. } => value,
        }
    }

    /// The name of what is leased: the member's (`{pool}_{index}`) or the entry's.
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Slot { core, member, .. } => &core.members[*member].name,
            Kind::Task { name, .. } => name,
        }
    }

    /// The tag of the leased binding (the member's, or the entry's).
    pub fn tag(&self) -> Tag {
        match &self.kind {
            Kind::Slot { core, member, .. } => core.tags.get().expect("open").1[*member],
            Kind::Task { tag, .. } => *tag,
        }
    }

    /// The pool's name, for a lease on a pool's member.
    pub fn pool(&self) -> Option<&str> {
        match &self.kind {
            Kind::Slot { core, .. } => Some(&core.name),
            Kind::Task { .. } => None,
        }
    }

    /// The member's index in its pool, for a lease on a pool's member.
    pub fn index(&self) -> Option<usize> {
        match &self.kind {
            Kind::Slot { member, .. } => Some(*member),
            Kind::Task { .. } => None,
        }
    }

    /// The key it was acquired for ([`Pool::acquire_for`](super::Pool::acquire_for)).
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            Kind::Slot { hold, .. } => hold.as_deref().map(|h| &*h.key),
            Kind::Task { .. } => None,
        }
    }
}

impl<V> Deref for Lease<V> {
    type Target = V;
    fn deref(&self) -> &V {
        self.value()
    }
}

impl<V> Drop for Lease<V> {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Slot {
                core,
                member,
                bit,
                hold,
            } => match hold {
                Some(hold) => core.release_hold(hold),
                None => core.release(*member, *bit),
            },
            Kind::Task { load, .. } => load.end(),
        }
    }
}

impl<V> fmt::Debug for Lease<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name())
            .field("tag", &self.tag())
            .field("key", &self.key())
            .finish_non_exhaustive()
    }
}
