//! [`Pinned`]: one epoch guard reused for many operations, and borrowed results.
//!
//! The registry's operations are written here once; [`Registry`]'s methods pin, call them, and
//! turn borrowed results into owned ones.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crossbeam_epoch::{Guard, LocalHandle};

use crate::discovery::Metadata;
use crate::error::{Error, Rejected};
use crate::name;
use crate::raw::node::{Extra, Node, Stored, StoredRef};
use crate::raw::{RawIter, Refused, Write, Written};
use crate::registration::{Ensured, Registration};
use crate::registry::Registry;
use crate::sync::Ordering;
use crate::tag::{InstanceId, Tag};
use crate::watch::Reason;

/// A registry handle with a pinned epoch guard: no re-pinning per call, and values borrowed
/// rather than cloned. Get one from [`Registry::pin`].
///
/// While it lives, memory removed from the registry (by anyone) cannot be freed, so keep it for
/// a loop, not forever, or call [`repin`](Self::repin) between batches. It is not `Send` and
/// must not be held across an `.await`.
pub struct Pinned<'r, V> {
    registry: &'r Registry<V>,
    // Field order: the guard is released before the thread's handle on an owned collector.
    guard: Guard,
    _local: Option<LocalHandle>,
}

/// A borrowed binding: valid while the [`Pinned`] handle that returned it is.
///
/// A thin view of the node (two words for an `Arc` value): the name, tag and value are read
/// from the node on demand, so a lookup returns it in registers.
pub struct EntryRef<'g, V> {
    node: &'g Node<V>,
    /// A weak binding's value, upgraded for the length of the borrow (`None` for strong ones).
    upgraded: Option<V>,
}

impl<'g, V> EntryRef<'g, V> {
    /// Builds a view of `node`, or `None` if a read does not see it (a weak binding whose
    /// owner died, an expired or condemned one: see `Node::is_visible`).
    #[inline]
    pub(crate) fn of(node: &'g Node<V>) -> Option<EntryRef<'g, V>> {
        let upgraded = match node.stored() {
            StoredRef::Strong(_) => None,
            StoredRef::Weak(w) => Some(w.upgrade()?),
        };
        // The liveness cell's check out of line (a plain node answers from its kind alone):
        // measured, inline it cost every hit 6% more instructions.
        if node.cell_says_dead() {
            return None;
        }
        Some(EntryRef { node, upgraded })
    }

    /// A view of a plain strong node (no weak value, metadata or cells): always visible.
    #[inline(always)]
    fn plain(node: &'g Node<V>) -> EntryRef<'g, V> {
        #[cfg(not(genreg_mutant = "read_unchecked"))]
        debug_assert!(node.plain_value().is_some());
        EntryRef {
            node,
            upgraded: None,
        }
    }

    /// The node it views.
    pub(crate) fn node(&self) -> &'g Node<V> {
        self.node
    }

    /// A view of `node`, just removed alive: `None` if it is a weak binding whose owner has
    /// died since (the value is gone: the removal was a purge).
    fn removed(node: &'g Node<V>) -> Option<EntryRef<'g, V>> {
        let upgraded = match node.stored() {
            StoredRef::Strong(_) => None,
            StoredRef::Weak(w) => Some(w.upgrade()?),
        };
        Some(EntryRef { node, upgraded })
    }

    /// The name.
    #[inline]
    pub fn name(&self) -> &'g str {
        self.node.name()
    }

    /// The binding's tag.
    #[inline]
    pub fn tag(&self) -> Tag {
        self.node.tag
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> &V {
        // A plain strong node first: the read path's common case, decided by the node's kind
        // (measured: a handle hit 145 instructions with it, 148.6 without).
        if let Some(v) = self.node.plain_value() {
            return v;
        }
        match (&self.upgraded, self.node.stored()) {
            (Some(v), _) | (None, StoredRef::Strong(v)) => v,
            (None, StoredRef::Weak(_)) => unreachable!("a weak view holds its upgrade"),
        }
    }

    /// The binding's metadata, if it was registered with some (see [`Metadata`]).
    #[inline]
    pub fn metadata(&self) -> Option<&'g Arc<Metadata>> {
        self.node.meta()
    }
}

impl<V> Deref for EntryRef<'_, V> {
    type Target = V;
    fn deref(&self) -> &V {
        self.value()
    }
}

impl<V: fmt::Debug> fmt::Debug for EntryRef<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryRef")
            .field("name", &self.name())
            .field("tag", &self.tag())
            .field("value", self.value())
            .finish()
    }
}

impl<V> fmt::Debug for Pinned<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned").finish_non_exhaustive()
    }
}

pub(crate) fn invalid(name: &str) -> Result<(), Error> {
    name::validate(name).map_err(|reason| Error::InvalidName {
        name: name.into(),
        reason,
    })
}

/// A refused strong registration, its value handed back.
pub(crate) fn strong_refused<V>((error, stored): (Error, Stored<V>)) -> Rejected<V> {
    match stored {
        Stored::Strong(v) => Rejected::new(error, v),
        Stored::Weak(_) => unreachable!("stored strong"),
    }
}

/// The refusal for a name that is not bound: `InvalidName` if it could never be.
#[cold]
pub(crate) fn not_found(name: &str) -> Error {
    match invalid(name) {
        Err(e) => e,
        Ok(()) => Error::NotFound { name: name.into() },
    }
}

/// The per-call read path, written once for [`Registry::get`] and [`Registry::read`]: `f` runs
/// on `name`'s binding, borrowed under `guard`.
///
/// A plain strong binding (the common case) is answered in line; anything else (a weak value,
/// metadata, a liveness or load cell, a pool's name) goes through [`read_ext`], out of line, on
/// the same guard.
#[inline(always)]
pub(crate) fn read_in<'g, V: Send + Sync + 'static, R>(
    registry: &Registry<V>,
    name: &str,
    guard: &'g Guard,
    f: impl FnOnce(EntryRef<'g, V>) -> R,
) -> Option<R> {
    let map = &registry.inner.map;
    let node = map.get(map.hash(name), name, guard)?;
    #[cfg(not(genreg_mutant = "read_unchecked"))]
    let plain = node.plain_value().is_some();
    // The planted bug (ci/mutants.sh): any strong value takes the fast path, whatever cells
    // the node carries, so an expired or condemned binding reads as bound.
    #[cfg(genreg_mutant = "read_unchecked")]
    let plain = matches!(node.stored(), StoredRef::Strong(_));
    if plain {
        return Some(f(EntryRef::plain(node)));
    }
    read_ext(registry, node, guard, f)
}

/// [`read_in`] for a node that is more than a plain strong value: visible or purged, as
/// [`Pinned::get`] does.
#[cold]
#[inline(never)]
fn read_ext<'g, V: Send + Sync + 'static, R>(
    registry: &Registry<V>,
    node: &'g Node<V>,
    guard: &'g Guard,
    f: impl FnOnce(EntryRef<'g, V>) -> R,
) -> Option<R> {
    match EntryRef::of(node) {
        Some(entry) => Some(f(entry)),
        None => {
            purge(registry, node, guard);
            None
        }
    }
}

/// Removes `node` if it is dead (a weak binding whose owner died, an expired or condemned one),
/// by its tag: never a newer binding. Whether it removed it.
fn purge<V: Send + Sync + 'static>(registry: &Registry<V>, node: &Node<V>, guard: &Guard) -> bool {
    let Some(reason) = node.bury() else {
        return false;
    };
    let tag = node.tag;
    matches!(
        registry.inner.map.write_if(
            node.hash,
            node.name(),
            |n| (n.tag == tag).then_some(Write::Remove(reason)),
            guard
        ),
        Written::Done(_)
    )
}

impl<'r, V: Send + Sync + 'static> Pinned<'r, V> {
    #[inline(always)]
    pub(crate) fn new(registry: &'r Registry<V>) -> Self {
        let (guard, local) = registry.inner.pin();
        Pinned {
            registry,
            guard,
            _local: local,
        }
    }

    /// The binding of `name`, borrowed. A weak binding whose owner died is purged and `None`
    /// is returned.
    // Always inlined: the body is a hash, a probe loop and a branch, and a call would cost the
    // lookup a fifth of its time in saved registers (BENCHMARKS.md).
    #[inline(always)]
    pub fn get(&self, name: &str) -> Option<EntryRef<'_, V>> {
        let map = &self.registry.inner.map;
        let hash = map.hash(name);
        let node = map.get(hash, name, &self.guard)?;
        let entry = EntryRef::of(node);
        if entry.is_none() {
            self.purge(node);
        }
        entry
    }

    /// Whether `name` is bound (a pool's name included, which [`get`](Self::get) reads as
    /// no value).
    pub fn contains(&self, name: &str) -> bool {
        let map = &self.registry.inner.map;
        let Some(node) = map.get(map.hash(name), name, &self.guard) else {
            return false;
        };
        EntryRef::of(node).is_some() || self.pool_name_or_purge(node)
    }

    /// Whether `node`, which reads as no value, is a pool's name; else purges it (a dead
    /// binding).
    #[cold]
    fn pool_name_or_purge(&self, node: &Node<V>) -> bool {
        if node.pool().is_some() && node.is_visible() {
            return true;
        }
        self.purge(node);
        false
    }

    /// Every binding, weakly consistent: each binding present for the whole walk is seen
    /// exactly once, none that was removed and freed is ever seen, and writers are never
    /// blocked. (A migration in progress when the walk starts is finished first.)
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            raw: self.registry.inner.map.iter(&self.guard),
        }
    }

    /// The epoch guard this handle holds.
    #[inline]
    pub(crate) fn registry(&self) -> &'r Registry<V> {
        self.registry
    }

    pub(crate) fn guard(&self) -> &Guard {
        &self.guard
    }

    /// See [`Registry::register`].
    pub fn register(&self, name: &str, value: V) -> Result<Registration<V>, Rejected<V>> {
        self.register_as(name, InstanceId::fresh(), value)
    }

    /// See [`Registry::register_detached`].
    pub fn register_detached(&self, name: &str, value: V) -> Result<Tag, Rejected<V>> {
        self.bind(
            name,
            InstanceId::fresh(),
            Stored::Strong(value),
            Extra::default(),
        )
        .map_err(strong_refused)
    }

    /// See [`Registry::register_as`].
    pub fn register_as(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Registration<V>, Rejected<V>> {
        self.register_stored(name, instance, Stored::Strong(value), Extra::default())
            .map_err(strong_refused)
    }

    /// See [`Registry::ensure_registered`].
    pub fn ensure_registered(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Ensured<V>, Rejected<V>> {
        Ensured::from_registration(self.register_as(name, instance, value), instance)
    }

    /// See [`Registry::register_auto`].
    pub fn register_auto(&self, prefix: &str, value: V) -> Result<Registration<V>, Rejected<V>> {
        self.register_auto_with(prefix, value, Extra::default())
    }

    /// [`register_auto`](Self::register_auto) with metadata.
    pub(crate) fn register_auto_with(
        &self,
        prefix: &str,
        value: V,
        extra: Extra,
    ) -> Result<Registration<V>, Rejected<V>> {
        if let Err(reason) = name::validate_prefix(prefix) {
            let error = Error::InvalidName {
                name: prefix.into(),
                reason,
            };
            return Err(Rejected::new(error, value));
        }
        let mut value = value;
        loop {
            // Relaxed: only uniqueness of the number matters.
            let n = self.registry.inner.auto.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}-{n}");
            let fresh = InstanceId::fresh();
            let registered = self
                .register_stored(&name, fresh, Stored::Strong(value), extra.clone())
                .map_err(strong_refused);
            match registered {
                Ok(reg) => return Ok(reg),
                Err(rejected) => match rejected.error() {
                    // Taken by a name chosen by hand: skip the number.
                    Error::AlreadyRegistered { .. } => value = rejected.into_value(),
                    _ => return Err(rejected),
                },
            }
        }
    }

    /// Binds a prepared value under a guard; on refusal hands it back.
    pub(crate) fn register_stored(
        &self,
        name: &str,
        instance: InstanceId,
        value: Stored<V>,
        extra: Extra,
    ) -> Result<Registration<V>, (Error, Stored<V>)> {
        let live = extra.live.clone();
        let tag = self.bind(name, instance, value, extra)?;
        Ok(Registration::new(self.registry.clone(), name, tag).with_live(live))
    }

    /// Binds a prepared value and returns its tag; on refusal hands it back.
    pub(crate) fn bind(
        &self,
        name: &str,
        instance: InstanceId,
        value: Stored<V>,
        extra: Extra,
    ) -> Result<Tag, (Error, Stored<V>)> {
        if let Err(e) = invalid(name) {
            return Err((e, value));
        }
        let inner = &self.registry.inner;
        if let Some(reserved) = &inner.reserved {
            if reserved.contains(name) {
                return Err((reserved.error(name), value));
            }
        }
        let tag = Tag::new(instance, inner.generations.next());
        let hash = inner.map.hash(name);
        let map = &inner.map;
        if extra.live.is_some() {
            map.note_mortal();
        }
        match map.bind(hash, name, tag, value, extra.clone(), &self.guard) {
            Ok(()) => Ok(tag),
            Err((Refused::Full, value)) => self.bind_when_full(name, hash, tag, value, extra),
            Err((refused, value)) => Err((self.refusal(name, refused), value)),
        }
    }

    /// The error for a refused binding of `name`.
    fn refusal(&self, name: &str, refused: Refused<'_, V>) -> Error {
        match refused {
            Refused::Exists(current) => Error::AlreadyRegistered {
                name: name.into(),
                current: current.tag,
            },
            Refused::Full => Error::Full {
                name: name.into(),
                capacity: self.registry.max_entries().unwrap_or(0),
            },
        }
    }

    /// At the bound: dead bindings (weak ones whose owner died, expired or condemned ones, the
    /// members of a removed pool) still hold their places until purged, so purge them and try
    /// once more before refusing.
    ///
    /// The retry does not depend on how many this call's purge removed: a dead binding can be
    /// removed, its place freed, by someone else first. The purge's own walk finishes a
    /// migration in progress before it looks, and a migration drops the dead bindings it meets
    /// (see `raw/migrate.rs`), so this call's purge then finds nothing left to remove although
    /// places were freed; a read or another writer may purge one meanwhile too.
    #[cold]
    fn bind_when_full(
        &self,
        name: &str,
        hash: u64,
        tag: Tag,
        value: Stored<V>,
        extra: Extra,
    ) -> Result<Tag, (Error, Stored<V>)> {
        let map = &self.registry.inner.map;
        let retried = if map.mortal_used() {
            self.purge_dead();
            map.bind(hash, name, tag, value, extra, &self.guard)
        } else {
            Err((Refused::Full, value))
        };
        retried
            .map(|()| tag)
            .map_err(|(refused, value)| (self.refusal(name, refused), value))
    }

    /// Binds a validated name with a given tag (restore); on refusal, the current tag (`None`:
    /// the registry is at its bound).
    pub(crate) fn bind_tagged(
        &self,
        name: &str,
        tag: Tag,
        value: Stored<V>,
        extra: Extra,
    ) -> Result<(), Option<Tag>> {
        let map = &self.registry.inner.map;
        let hash = map.hash(name);
        map.bind(hash, name, tag, value, extra, &self.guard)
            .map_err(|(refused, _value)| match refused {
                Refused::Exists(current) => Some(current.tag),
                Refused::Full => None,
            })
    }

    /// See [`Registry::unregister_if_same`]; the removed binding stays readable through the
    /// returned reference while this handle lives.
    pub fn unregister_if_same(&self, name: &str, tag: Tag) -> Result<EntryRef<'_, V>, Error> {
        self.remove(name, Some(tag), Reason::IfSame)
    }

    /// See [`Registry::unregister`].
    pub fn unregister(&self, name: &str) -> Result<EntryRef<'_, V>, Error> {
        self.remove(name, None, Reason::Explicit)
    }

    /// Removes `name` if it carries `expected` (or unconditionally); never a pool's name or
    /// member (see `pool/`).
    pub(crate) fn remove(
        &self,
        name: &str,
        expected: Option<Tag>,
        reason: Reason,
    ) -> Result<EntryRef<'_, V>, Error> {
        let n = self.remove_binding(name, expected, reason, false)?;
        EntryRef::removed(n).ok_or_else(|| not_found(name))
    }

    /// Removes `name` if it carries `expected` (or unconditionally), and returns the binding
    /// removed. A pool's name or member only if `pooled` (their pool's removal, or a clear).
    pub(crate) fn remove_binding(
        &self,
        name: &str,
        expected: Option<Tag>,
        reason: Reason,
        pooled: bool,
    ) -> Result<&Node<V>, Error> {
        // No validation up front: an invalid name is never bound, so the probe cannot find
        // it, and `not_found` tells the two apart only on that (rare) path.
        let map = &self.registry.inner.map;
        let hash = map.hash(name);
        // A dead binding is buried before it is removed (see `Node::bury`): its removal is a
        // purge, reported as not found. One that is not buried when its CAS wins was removed
        // alive, and is reported so even if its deadline passes right after.
        // The decision is the judge: the clock may pass the deadline after the CAS.
        let buried = std::cell::Cell::new(false);
        let decide = |n: &Node<V>| {
            if !pooled && n.pool().is_some() {
                return None;
            }
            expected.is_none_or(|t| n.tag.matches(t)).then(|| {
                let death = n.bury();
                buried.set(death.is_some());
                Write::Remove(death.unwrap_or(reason))
            })
        };
        let not_found = || not_found(name);
        match map.write_if(hash, name, decide, &self.guard) {
            Written::Done(_) if buried.get() => Err(not_found()),
            Written::Done(n) => Ok(n),
            Written::Refused(n) if !n.is_visible() => {
                self.purge(n);
                Err(not_found())
            }
            Written::Refused(n) if !pooled && n.pool().is_some() => {
                Err(crate::pool::pooled(name, &n.pool().expect("pooled")))
            }
            Written::Refused(n) => Err(Error::TagMismatch {
                name: name.into(),
                // `expected` is Some: the unconditional predicate never refuses.
                expected: expected.unwrap_or(n.tag),
                current: n.tag,
            }),
            Written::NotFound => Err(not_found()),
        }
    }

    /// Removes a member of a closed pool (dead: see `pool/`) if `name` still binds it, with
    /// `reason`; whether this call removed it (someone who met it may have
    /// first).
    pub(crate) fn remove_member(&self, name: &str, tag: Tag, reason: Reason) -> bool {
        let map = &self.registry.inner.map;
        let decide = |n: &Node<V>| (n.tag == tag).then_some(Write::Remove(reason));
        matches!(
            map.write_if(map.hash(name), name, decide, &self.guard),
            Written::Done(_)
        )
    }

    /// See [`Registry::replace_if_same`].
    pub fn replace_if_same(&self, name: &str, tag: Tag, value: V) -> Result<Tag, Rejected<V>> {
        // Validated only if not found (see `remove`).
        let inner = &self.registry.inner;
        let hash = inner.map.hash(name);
        let new_tag = Tag::new(
            tag.instance(),
            inner.generations.next_after(tag.generation()),
        );
        let accept = |n: &Node<V>| n.tag.matches(tag) && n.is_visible() && n.pool().is_none();
        let (refused, value) =
            match inner
                .map
                .replace_if(hash, name, new_tag, value, accept, &self.guard)
            {
                Ok(()) => return Ok(new_tag),
                Err(refusal) => refusal,
            };
        let error = match refused {
            Some(n) if n.is_visible() && n.pool().is_some() => {
                crate::pool::pooled(name, &n.pool().expect("pooled"))
            }
            Some(n) if n.is_visible() => Error::TagMismatch {
                name: name.into(),
                expected: tag,
                current: n.tag,
            },
            // A writer that meets a dead binding removes it.
            Some(n) => {
                self.purge(n);
                not_found(name)
            }
            None => not_found(name),
        };
        Err(Rejected::new(error, value))
    }

    /// See [`Registry::unregister_instance`].
    pub fn unregister_instance(&self, instance: InstanceId) -> Vec<(String, Tag)> {
        let mine: Vec<(&str, Tag)> = self
            .registry
            .inner
            .map
            .iter(&self.guard)
            .filter(|n| n.tag.instance() == instance)
            .map(|n| (n.name(), n.tag))
            .collect();
        mine.into_iter()
            .filter_map(|(name, tag)| {
                self.remove(name, Some(tag), Reason::IfSame)
                    .ok()
                    .map(|_| (name.to_owned(), tag))
            })
            .collect()
    }

    /// See [`Registry::clear`].
    pub fn clear(&self) -> usize {
        // A pool goes whole: its name (which closes it), then its members by their tags. A
        // member is never removed on its own: one whose pool's name this walk did not see
        // (a pool registered meanwhile) stays with its pool (see `pool/`).
        let all: Vec<(&str, Tag, Option<Option<usize>>)> = self
            .registry
            .inner
            .map
            .iter(&self.guard)
            .map(|n| (n.name(), n.tag, n.pool().map(|t| t.member)))
            .collect();
        all.into_iter()
            .map(|(name, tag, pool)| match pool {
                None => usize::from(
                    self.remove_binding(name, Some(tag), Reason::Cleared, false)
                        .is_ok(),
                ),
                Some(None) => self.remove_pool(name, Some(tag), Reason::Cleared, Reason::Cleared),
                // A member: with its pool.
                Some(Some(_)) => 0,
            })
            .sum()
    }

    /// Removes the pool bound to `name` (if it carries `expected`): its name, which closes
    /// it, then each member by its tag (`members_reason`). Returns how many bindings went:
    /// the name and every member (each removed here, or, once the pool was closed, by a read
    /// that met it first); 0 if the name was not removed.
    pub(crate) fn remove_pool(
        &self,
        name: &str,
        expected: Option<Tag>,
        reason: Reason,
        members_reason: Reason,
    ) -> usize {
        let Ok(node) = self.remove_binding(name, expected, reason, true) else {
            return 0;
        };
        let Some(tie) = node.pool() else {
            return 1;
        };
        // The commit point closed the pool. Its members are dead: remove each that is still
        // bound (an open pool has every member's tag; one that never opened removes its
        // own members).
        let core = tie.core;
        let Some((_, tags)) = core.tags.get() else {
            return 1;
        };
        for (i, tag) in tags.iter().enumerate() {
            self.remove_member(&core.members[i].name, *tag, members_reason);
        }
        1 + tags.len()
    }

    /// See [`Registry::purge_dead`].
    pub fn purge_dead(&self) -> usize {
        let dead: Vec<&Node<V>> = self
            .registry
            .inner
            .map
            .iter(&self.guard)
            .filter(|n| !n.is_visible())
            .collect();
        dead.into_iter().filter(|n| self.purge(n)).count()
    }

    /// Removes a dead binding (a weak one whose owner died, an expired or condemned one) if
    /// it is still the one bound (identity-safe), burying it first (see `Node::bury`): one that
    /// a keepalive renewed in time is left alone. Returns whether this call removed it.
    #[cold]
    #[inline(never)]
    pub(crate) fn purge(&self, node: &Node<V>) -> bool {
        purge(self.registry, node, &self.guard)
    }

    /// Pushes this thread's deferred frees to the global queue and tries to collect.
    pub fn flush(&self) {
        self.guard.flush();
    }

    /// Unpins and pins again, letting memory retired so far be reclaimed. Borrowed entries
    /// cannot outlive this call (the borrow checker enforces it).
    pub fn repin(&mut self) {
        self.guard.repin();
    }
}

/// Iterator over a [`Pinned`] handle's bindings.
pub struct Iter<'g, V> {
    raw: RawIter<'g, V>,
}

impl<'g, V> Iterator for Iter<'g, V> {
    type Item = EntryRef<'g, V>;

    fn next(&mut self) -> Option<EntryRef<'g, V>> {
        self.raw.by_ref().find_map(EntryRef::of)
    }
}

impl<V> fmt::Debug for Iter<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
