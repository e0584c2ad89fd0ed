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
///
/// A lease from a [`Pool`](super::Pool) handle borrows the handle (`Lease<'_, V>`: no shared
/// reference count moves per lease); one from the registry
/// ([`Registry::acquire`](crate::Registry::acquire)) or from a wait
/// ([`Acquire`](super::Acquire)) owns a reference to the pool (`Lease<'static, V>`).
pub struct Lease<'a, V> {
    kind: Kind<'a, V>,
}

/// The pool a slot lease is of: borrowed from a handle, or owned.
pub(crate) enum CoreRef<'a, V> {
    Borrowed(&'a Arc<PoolCore<V>>),
    Owned(Arc<PoolCore<V>>),
}

impl<V> Deref for CoreRef<'_, V> {
    type Target = PoolCore<V>;
    #[inline]
    fn deref(&self) -> &PoolCore<V> {
        match self {
            CoreRef::Borrowed(core) => core,
            CoreRef::Owned(core) => core,
        }
    }
}

enum Kind<'a, V> {
    /// Moved out by [`Lease::into_owned`] (never observed otherwise).
    Spent,
    Slot {
        core: CoreRef<'a, V>,
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

impl<'a, V> Lease<'a, V> {
    #[inline]
    pub(crate) fn slot(
        core: CoreRef<'a, V>,
        member: usize,
        bit: u32,
        hold: Option<Arc<Hold>>,
    ) -> Lease<'a, V> {
        Lease {
            kind: Kind::Slot {
                core,
                member,
                bit,
                hold,
            },
        }
    }

    pub(crate) fn task(load: Arc<Load>, value: V, name: &str, tag: Tag) -> Lease<'a, V> {
        Lease {
            kind: Kind::Task {
                load,
                value,
                name: name.into(),
                tag,
            },
        }
    }

    /// The same lease, owning a reference to its pool instead of borrowing the handle (to
    /// keep it past the handle, or send it to a task).
    pub fn into_owned(mut self) -> Lease<'static, V> {
        let kind = match std::mem::replace(&mut self.kind, Kind::Spent) {
            Kind::Slot {
                core,
                member,
                bit,
                hold,
            } => Kind::Slot {
                core: match core {
                    CoreRef::Borrowed(core) => CoreRef::Owned(Arc::clone(core)),
                    CoreRef::Owned(core) => CoreRef::Owned(core),
                },
                member,
                bit,
                hold,
            },
            Kind::Task {
                load,
                value,
                name,
                tag,
            } => Kind::Task {
                load,
                value,
                name,
                tag,
            },
            Kind::Spent => Kind::Spent,
        };
        Lease { kind }
    }

    /// The leased value.
    #[inline]
    pub fn value(&self) -> &V {
        match &self.kind {
            Kind::Spent => unreachable!("a spent lease is never read"),
            Kind::Slot { core, member, .. } => &core.members[*member].value,
            Kind::Task { value, .. } => value,
        }
    }

    /// The name of what is leased: the member's (`{pool}_{index}`) or the entry's.
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Spent => unreachable!("a spent lease is never read"),
            Kind::Slot { core, member, .. } => &core.members[*member].name,
            Kind::Task { name, .. } => name,
        }
    }

    /// The tag of the leased binding (the member's, or the entry's).
    pub fn tag(&self) -> Tag {
        match &self.kind {
            Kind::Spent => unreachable!("a spent lease is never read"),
            Kind::Slot { core, member, .. } => core.tags.get().expect("open").1[*member],
            Kind::Task { tag, .. } => *tag,
        }
    }

    /// The pool's name, for a lease on a pool's member.
    pub fn pool(&self) -> Option<&str> {
        match &self.kind {
            Kind::Slot { core, .. } => Some(&core.name),
            Kind::Task { .. } | Kind::Spent => None,
        }
    }

    /// The member's index in its pool, for a lease on a pool's member.
    pub fn index(&self) -> Option<usize> {
        match &self.kind {
            Kind::Slot { member, .. } => Some(*member),
            Kind::Task { .. } | Kind::Spent => None,
        }
    }

    /// The key it was acquired for ([`Pool::acquire_for`](super::Pool::acquire_for)).
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            Kind::Slot { hold, .. } => hold.as_deref().map(|h| &*h.key),
            Kind::Task { .. } | Kind::Spent => None,
        }
    }
}

impl<V> Deref for Lease<'_, V> {
    type Target = V;
    #[inline]
    fn deref(&self) -> &V {
        self.value()
    }
}

impl<V> Drop for Lease<'_, V> {
    #[inline]
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
            Kind::Spent => {}
        }
    }
}

impl<V> fmt::Debug for Lease<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name())
            .field("tag", &self.tag())
            .field("key", &self.key())
            .finish_non_exhaustive()
    }
}
