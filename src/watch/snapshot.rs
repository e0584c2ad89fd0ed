//! [`Snapshot`]: the registry's bindings at one revision; [`Registry::restore`] rebuilds them.
//!
//! # How a snapshot is consistent at one revision
//! A walk of the table alone is only weakly consistent: each name is read at its own instant.
//! The snapshot makes it exact with the event log:
//! 1. `h0` = the next revision to be drawn; then a grace period: every thread pinned at that
//!    moment unpins. Writers draw their revision and commit inside one pinned section, so
//!    every commit with a revision below `h0` has landed in the table.
//! 2. The walk: each name's binding at the instant its slot is read.
//! 3. `h1` = the next revision to be drawn, then a second grace period: every commit below
//!    `h1` has landed and its event is published. A commit with a revision at or above `h1`
//!    cannot have been seen by the walk (it drew its revision after our read of `h1`, and its
//!    CAS came after its draw).
//! 4. The events `h0 .. h1` are applied over the walk, in revision order. For a name the walk
//!    read mid-way through them, the last of them decides its state whichever prefix the walk
//!    saw; for the others the walk's state was the state throughout. The result is the state
//!    at revision `h1 - 1`, exactly.
//!
//! The snapshot reads the events from `h0` on as they are published, all along (between the
//! passes of the grace periods and every 256 bindings of the walk), so the history must hold
//! only what writers publish between two such reads. If it did not (writers outran it), the
//! snapshot starts again, up to 16 times, then reports [`WatchError::Busy`]; also if a grace
//! period does not end within 2 seconds (a thread that stays pinned, such as the caller's own
//! [`Pinned`](crate::Pinned) handle on a registry with an owned collector).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crossbeam_epoch::Guard;

use super::{Event, EventKind, Filter, Revision, WatchError, Watcher};
use crate::discovery::Metadata;
use crate::name::{self, InvalidNameReason};
use crate::raw::log::{Log, Read};
use crate::raw::node::{Extra, Stored, StoredRef};
use crate::registry::Registry;
use crate::sync::Ordering;
use crate::tag::{InstanceId, Tag};

/// A binding as a snapshot assembles it: tag, value (if read yet), metadata.
type Bound<V> = (Tag, Option<V>, Option<Arc<Metadata>>);

/// The snapshot format this version writes and reads. [`Registry::restore`] refuses others.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// How many times a snapshot starts again before it reports [`WatchError::Busy`].
const ATTEMPTS: usize = 16;

/// The registry's counters at a snapshot: restore moves a registry's counters past them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    /// The registry's next generation (every generation minted so far is below it).
    pub generation: u64,
    /// The next number [`register_auto`](Registry::register_auto) would use.
    pub auto_name: u64,
    /// The process's next fresh [`InstanceId`].
    pub instance: u64,
}

/// One binding of a [`Snapshot`].
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotEntry<V> {
    /// The name.
    pub name: String,
    /// Its tag: [`Registry::restore`] binds it with this very tag.
    pub tag: Tag,
    /// The value (or, after [`Snapshot::map_values`], the caller's descriptor of it).
    pub value: V,
    /// The binding's metadata, if it carries any; [`Registry::restore`] binds it with it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub metadata: Option<Arc<Metadata>>,
}

/// The registry's bindings at one revision, with its counters.
///
/// From [`Registry::snapshot`] or [`Registry::subscribe`]. With the `serde` feature a
/// `Snapshot<D>` is serialisable: turn the values into descriptors first
/// ([`map_values`](Snapshot::map_values)), as MARSYS saves an agent's type and configuration
/// rather than the agent. Weak bindings are included with a strong value (the snapshot keeps
/// their owners alive while it lives) and restored as strong bindings.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot<V> {
    format: u32,
    revision: Revision,
    counters: Counters,
    entries: Vec<SnapshotEntry<V>>,
}

impl<V> Snapshot<V> {
    /// The largest counter, revision, generation or instance id a restore accepts: 2^62. A
    /// registry counts far below it in practice; the limit leaves room to count on after a
    /// restore (and keeps a corrupt snapshot from exhausting the process's instance ids).
    pub const MAX_COUNTER: u64 = 1 << 62;

    /// A snapshot from its parts, as read back from storage of the caller's own (with the
    /// `serde` feature, deserialising does this). Nothing is checked here:
    /// [`Registry::restore`] validates everything before it changes anything.
    pub fn from_parts(
        format: u32,
        revision: Revision,
        counters: Counters,
        entries: Vec<SnapshotEntry<V>>,
    ) -> Snapshot<V> {
        Snapshot {
            format,
            revision,
            counters,
            entries,
        }
    }

    /// The revision the snapshot is exact at: every change up to it, none after it.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The format version ([`SNAPSHOT_FORMAT`] when made by this version).
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The counters at the snapshot.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The bindings (sorted by name in a snapshot made by [`Registry::snapshot`]).
    pub fn entries(&self) -> &[SnapshotEntry<V>] {
        &self.entries
    }

    /// The bindings, owned.
    pub fn into_entries(self) -> Vec<SnapshotEntry<V>> {
        self.entries
    }

    /// How many bindings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The binding of `name` (a linear search: a snapshot read back from storage need not be
    /// sorted).
    pub fn get(&self, name: &str) -> Option<&SnapshotEntry<V>> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The same snapshot with each value turned into something else (a descriptor to save, or
    /// an instance rebuilt from one).
    pub fn map_values<D>(self, mut f: impl FnMut(&str, V) -> D) -> Snapshot<D> {
        self.try_map_values(|name, v| Ok::<D, std::convert::Infallible>(f(name, v)))
            .unwrap_or_else(|never| match never {})
    }

    /// As [`map_values`](Snapshot::map_values), stopping at the first error.
    pub fn try_map_values<D, E>(
        self,
        mut f: impl FnMut(&str, V) -> Result<D, E>,
    ) -> Result<Snapshot<D>, E> {
        let entries = self
            .entries
            .into_iter()
            .map(|e| {
                Ok(SnapshotEntry {
                    value: f(&e.name, e.value)?,
                    name: e.name,
                    tag: e.tag,
                    metadata: e.metadata,
                })
            })
            .collect::<Result<_, E>>()?;
        Ok(Snapshot {
            format: self.format,
            revision: self.revision,
            counters: self.counters,
            entries,
        })
    }
}

/// Why [`Registry::restore`] refused a snapshot.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RestoreError {
    /// Restore rebuilds a registry from nothing: this one has bindings.
    NotEmpty {
        /// How many it has.
        len: usize,
    },
    /// The snapshot was written in another format.
    UnsupportedFormat {
        /// The snapshot's format.
        found: u32,
        /// The format this version reads ([`SNAPSHOT_FORMAT`]).
        supported: u32,
    },
    /// A name in the snapshot is not a valid name.
    InvalidName {
        /// The name (as found, possibly very long).
        name: String,
        /// What is wrong with it.
        reason: InvalidNameReason,
    },
    /// A name the registry reserves ([`Builder::reserved_names`](crate::Builder::reserved_names)).
    Reserved {
        /// The name.
        name: String,
    },
    /// A name appears twice.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A tag no registry mints: generation 0, or a generation or instance id above
    /// [`Snapshot::MAX_COUNTER`].
    InvalidTag {
        /// The name it is bound to.
        name: String,
        /// The tag.
        tag: Tag,
    },
    /// A counter (or the revision) above [`Snapshot::MAX_COUNTER`]: restoring it would leave
    /// the registry, or the process's instance ids, with no room to count on.
    CounterOutOfRange {
        /// Which: `"generation"`, `"auto_name"`, `"instance"` or `"revision"`.
        counter: &'static str,
        /// Its value.
        value: u64,
    },
    /// A concurrent registration took a name while the restore ran. Names restored before it
    /// stay bound.
    Conflict {
        /// The name.
        name: String,
        /// The binding found there.
        current: Tag,
    },
    /// The snapshot holds more bindings than the registry's bound
    /// ([`Builder::max_entries`](crate::Builder::max_entries)), or concurrent registrations
    /// filled the registry while the restore ran (names restored before stay bound).
    Full {
        /// The bound.
        capacity: usize,
        /// The bindings the snapshot holds.
        entries: usize,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |n: &str| name::for_display(n).to_string();
        match self {
            RestoreError::NotEmpty { len } => {
                write!(
                    f,
                    "restore needs an empty registry; this one has {len} bindings"
                )
            }
            RestoreError::UnsupportedFormat { found, supported } => write!(
                f,
                "snapshot format {found} is not supported (this version reads format {supported})"
            ),
            RestoreError::InvalidName { name, reason } => {
                write!(
                    f,
                    "snapshot holds an invalid name {}: {reason}",
                    shown(name)
                )
            }
            RestoreError::Reserved { name } => {
                write!(f, "snapshot binds {}, a reserved name", shown(name))
            }
            RestoreError::DuplicateName { name } => {
                write!(f, "snapshot binds {} twice", shown(name))
            }
            RestoreError::InvalidTag { name, tag } => {
                write!(
                    f,
                    "snapshot binds {} with tag {tag}, which no registry mints",
                    shown(name)
                )
            }
            RestoreError::CounterOutOfRange { counter, value } => write!(
                f,
                "snapshot's {counter} counter is {value}, above the largest a restore accepts ({})",
                Snapshot::<()>::MAX_COUNTER
            ),
            RestoreError::Full { capacity, entries } => write!(
                f,
                "snapshot of {entries} bindings does not fit: the registry's bound is \
                 {capacity} bindings"
            ),
            RestoreError::Conflict { name, current } => write!(
                f,
                "{} was registered (as {current}) while the restore ran",
                shown(name)
            ),
        }
    }
}

impl std::error::Error for RestoreError {}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// The latest revision drawn (a change at it may still be committing; see
    /// [`subscribe`](Registry::subscribe) for an exact starting point). `Revision::ZERO` if
    /// the registry keeps no event log or nothing has changed.
    pub fn revision(&self) -> Revision {
        match &self.inner.map.log {
            Some(log) => Revision::from_raw(log.head() - 1),
            None => Revision::ZERO,
        }
    }

    /// The events after `since` whose names pass `filter`, in revision order, each once.
    ///
    /// `since` is a revision already seen: `Revision::ZERO` for everything the history still
    /// holds, an event's [`revision`](super::Event::revision) or a watcher's
    /// [`revision`](Watcher::revision) to resume after it, a snapshot's to continue from it.
    /// Refused with [`WatchError::Compacted`] if the history no longer holds the revision
    /// after `since` (then [`subscribe`](Registry::subscribe) again), and with
    /// [`WatchError::Disabled`] if the registry keeps no event log.
    pub fn watch(&self, filter: Filter, since: Revision) -> Result<Watcher<V>, WatchError> {
        let log = self.inner.map.log.as_ref().ok_or(WatchError::Disabled)?;
        let requested = since.as_raw().saturating_add(1);
        let oldest = log.oldest();
        if requested < oldest {
            return Err(WatchError::Compacted {
                requested: Revision::from_raw(requested),
                oldest: Revision::from_raw(oldest),
            });
        }
        Ok(Watcher::new(self.clone(), filter, since))
    }

    /// The bindings whose names pass `filter` at a revision R, and a watcher of every change
    /// after R: together, the registry's state and its changes with no gap and no duplicate
    /// (list-then-watch, done right).
    pub fn subscribe(&self, filter: Filter) -> Result<(Snapshot<V>, Watcher<V>), WatchError> {
        let snapshot = self.snapshot_filtered(&filter)?;
        let watcher = Watcher::new(self.clone(), filter, snapshot.revision);
        Ok((snapshot, watcher))
    }

    /// Every binding at one revision, exactly (not a weakly consistent walk), with the
    /// counters; see [`Snapshot`]. Pools (their names and members) are left out: a pool is
    /// runtime structure, registered again after a restore.
    ///
    /// Needs the event log ([`WatchError::Disabled`] without it). It waits for two grace
    /// periods of the epoch collector (every thread pinned when it asks must unpin), so it
    /// must not be called from a thread that holds a [`Pinned`](crate::Pinned) handle of a
    /// registry on the same collector ([`WatchError::Busy`] when that can be detected),
    /// and a thread that stays pinned elsewhere delays it.
    pub fn snapshot(&self) -> Result<Snapshot<V>, WatchError> {
        self.snapshot_filtered(&Filter::all())
    }

    fn snapshot_filtered(&self, filter: &Filter) -> Result<Snapshot<V>, WatchError> {
        let inner = &self.inner;
        let log = inner.map.log.as_ref().ok_or(WatchError::Disabled)?;
        if !inner.has_own_collector() && crate::sync::is_pinned() {
            return Err(WatchError::Busy);
        }
        'attempt: for _ in 0..ATTEMPTS {
            let h0 = log.head();
            // Events from `h0` on are read as they are published, all along (so the history
            // has to hold only what is written between two reads, not the whole snapshot).
            let mut tail = Tail {
                next: h0,
                events: Vec::new(),
            };
            if !inner
                .grace_period(|guard| tail.pump(log, filter, guard))
                .ok_or(WatchError::Busy)?
            {
                continue;
            }
            // The walk: each visible binding with its value (a weak one's owner, upgraded).
            let mut state: HashMap<String, Bound<V>> = HashMap::new();
            {
                let (guard, _local) = inner.pin();
                for (i, n) in inner.map.iter(&guard).enumerate() {
                    if i % 256 == 255 && !tail.pump(log, filter, &guard) {
                        continue 'attempt;
                    }
                    // Not a pool's names: a pool is runtime structure, registered again
                    // after a restore (see `Registry::snapshot`).
                    if !filter.matches(n.name()) || n.pool().is_some() {
                        continue;
                    }
                    // Not an expired or condemned one (invisible; its removal's event may
                    // follow, for a name the snapshot does not hold, as for a dead weak one).
                    let value = match n.visible_stored() {
                        Some(StoredRef::Strong(v)) => Some(v.clone()),
                        Some(StoredRef::Weak(w)) => w.upgrade(),
                        None => None,
                    };
                    if let Some(v) = value {
                        let meta = n.meta().cloned();
                        state.insert(n.name().to_owned(), (n.tag, Some(v), meta));
                    }
                }
            }
            let h1 = log.head();
            if !inner
                .grace_period(|guard| tail.pump(log, filter, guard))
                .ok_or(WatchError::Busy)?
            {
                continue;
            }
            {
                // Every revision below `h1` is published now (or was overwritten).
                let (guard, _local) = inner.pin();
                if !tail.pump(log, filter, &guard) || tail.next < h1 {
                    continue 'attempt;
                }
            }
            for event in tail.events.iter().filter(|e| e.revision.as_raw() < h1) {
                match &event.kind {
                    EventKind::Registered { tag, value }
                    | EventKind::Replaced { tag, value, .. } => {
                        let name = event.name();
                        let kept = match (value, state.get(name)) {
                            (Some(v), _) => Some(v.clone()),
                            // A weak binding's event has no value: the walk's, if it read this
                            // very binding; else fetched below.
                            (None, Some((t, v, _))) if t == tag => v.clone(),
                            (None, _) => None,
                        };
                        state.insert(name.to_owned(), (*tag, kept, event.metadata.clone()));
                    }
                    EventKind::MetadataUpdated { tag } => {
                        let name = event.name();
                        let meta = event.metadata.clone();
                        match state.get_mut(name) {
                            Some((t, _, m)) if t == tag => *m = meta,
                            // Not read by the walk: its value is fetched below.
                            _ => {
                                state.insert(name.to_owned(), (*tag, None, meta));
                            }
                        }
                    }
                    EventKind::Unregistered { .. } => {
                        state.remove(event.name());
                    }
                }
            }
            let mut entries: Vec<SnapshotEntry<V>> = Vec::with_capacity(state.len());
            for (name, (tag, value, metadata)) in state {
                // A binding whose event carried no value (a weak one, or events without
                // values) and that the walk did not read: its value now, if it is still that
                // binding. If it is not, the name changed after `h1`: start again (the next
                // walk reads it, or it is gone, as a weak binding whose owner died).
                let value = match value {
                    Some(v) => v,
                    None => match self.fetch(&name, tag) {
                        Fetched::Value(v) => v,
                        // A pool's name or member (registered during the walk): left out.
                        Fetched::Pool => continue,
                        Fetched::Gone => continue 'attempt,
                    },
                };
                entries.push(SnapshotEntry {
                    name,
                    tag,
                    value,
                    metadata,
                });
            }
            entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            return Ok(Snapshot {
                format: SNAPSHOT_FORMAT,
                revision: Revision::from_raw(h1 - 1),
                counters: Counters {
                    generation: inner.generations.peek(),
                    auto_name: inner.auto.load(Ordering::Relaxed),
                    instance: InstanceId::peek_next(),
                },
                entries,
            });
        }
        Err(WatchError::Busy)
    }
}

/// The events a snapshot has read so far, from its `h0` on.
struct Tail<V> {
    next: u64,
    events: Vec<Event<V>>,
}

impl<V: Clone> Tail<V> {
    /// Reads every record published from `next` on; false if one was overwritten first.
    fn pump(&mut self, log: &Log<V>, filter: &Filter, guard: &Guard) -> bool {
        loop {
            match log.read(self.next, guard) {
                Read::Pending => return true,
                Read::Overwritten => return false,
                Read::Got(record) => {
                    self.next += 1;
                    if let Some(e) = &record.event {
                        if filter.matches(e.name()) {
                            self.events.push(e.clone());
                        }
                    }
                }
            }
        }
    }
}

/// A binding's value fetched for a snapshot.
enum Fetched<V> {
    Value(V),
    /// A pool's name or member: snapshots leave pools out.
    Pool,
    /// Not bound with that tag any more (or not visible).
    Gone,
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    fn fetch(&self, name: &str, tag: Tag) -> Fetched<V> {
        let pinned = self.pin();
        let map = &self.inner.map;
        match map.get(map.hash(name), name, pinned.guard()) {
            Some(n) if n.tag == tag && n.pool().is_some() => Fetched::Pool,
            Some(n) if n.tag == tag => match pinned.get(name) {
                Some(e) if e.tag() == tag => Fetched::Value(e.value().clone()),
                _ => Fetched::Gone,
            },
            _ => Fetched::Gone,
        }
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// Rebuilds a snapshot's bindings, **with their original tags**, into this registry, which
    /// must be empty; returns how many were bound.
    ///
    /// First every counter moves past the snapshot's: generations (and every generation a
    /// thread of this process had reserved for this registry is given up), fresh instance ids,
    /// `register_auto` numbers, and revisions. So a tag held from before a restart matches
    /// its own restored binding or nothing, never a newer one, and the restored bindings'
    /// events come after the snapshot's revision.
    ///
    /// Validated before anything changes: format version, names, duplicates, tags. A
    /// concurrent registration of a snapshot's name during the restore is reported as
    /// [`RestoreError::Conflict`] (bindings restored before it stay). Values whose bindings
    /// were not made are dropped.
    pub fn restore(&self, snapshot: Snapshot<V>) -> Result<usize, RestoreError> {
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(RestoreError::UnsupportedFormat {
                found: snapshot.format,
                supported: SNAPSHOT_FORMAT,
            });
        }
        let inner = &self.inner;
        let mut seen = HashSet::with_capacity(snapshot.entries.len());
        let (mut max_generation, mut max_instance) = (0u64, 0u64);
        for e in &snapshot.entries {
            if let Err(reason) = name::validate(&e.name) {
                return Err(RestoreError::InvalidName {
                    name: e.name.clone(),
                    reason,
                });
            }
            if inner.reserved.as_ref().is_some_and(|r| r.contains(&e.name)) {
                return Err(RestoreError::Reserved {
                    name: e.name.clone(),
                });
            }
            if !seen.insert(e.name.as_str()) {
                return Err(RestoreError::DuplicateName {
                    name: e.name.clone(),
                });
            }
            let (g, i) = (e.tag.generation().as_raw(), e.tag.instance().as_raw());
            if g == 0 || g > Snapshot::<V>::MAX_COUNTER || i > Snapshot::<V>::MAX_COUNTER {
                return Err(RestoreError::InvalidTag {
                    name: e.name.clone(),
                    tag: e.tag,
                });
            }
            max_generation = max_generation.max(e.tag.generation().as_raw());
            max_instance = max_instance.max(e.tag.instance().as_raw());
        }
        let c = snapshot.counters;
        for (counter, value) in [
            ("generation", c.generation),
            ("auto_name", c.auto_name),
            ("instance", c.instance),
            ("revision", snapshot.revision.as_raw()),
        ] {
            if value > Snapshot::<V>::MAX_COUNTER {
                return Err(RestoreError::CounterOutOfRange { counter, value });
            }
        }
        let inner = &self.inner;
        let len = {
            let (guard, _local) = inner.pin();
            inner.map.iter(&guard).filter(|n| n.is_visible()).count()
        };
        if len != 0 {
            return Err(RestoreError::NotEmpty { len });
        }
        let capacity = inner
            .map
            .capacity
            .as_ref()
            .map_or(usize::MAX, |c| c.limit());
        if snapshot.entries.len() > capacity {
            let entries = snapshot.entries.len();
            return Err(RestoreError::Full { capacity, entries });
        }
        inner
            .generations
            .advance_past(c.generation.saturating_sub(1).max(max_generation));
        InstanceId::advance_past(c.instance.saturating_sub(1).max(max_instance));
        inner.auto.fetch_max(c.auto_name, Ordering::Relaxed);
        if let Some(log) = &inner.map.log {
            let (guard, _local) = inner.pin();
            log.advance_past(snapshot.revision.as_raw(), &guard);
        }
        let mut bound = 0;
        let pinned = self.pin();
        let entries = snapshot.entries.len();
        for e in snapshot.entries {
            match pinned.bind_tagged(
                &e.name,
                e.tag,
                Stored::Strong(e.value),
                Extra::meta(e.metadata),
            ) {
                Ok(()) => bound += 1,
                Err(Some(current)) => {
                    return Err(RestoreError::Conflict {
                        name: e.name,
                        current,
                    });
                }
                Err(None) => return Err(RestoreError::Full { capacity, entries }),
            }
        }
        Ok(bound)
    }
}
