//! Pools and load: MARSYS's `AgentPool` and its load balancing, lock-free.
//!
//! A pool binds a name and its members' names (`{name}_{i}`) in the registry's one namespace,
//! all or nothing, and hands its members out as [`Lease`]s chosen by load. See
//! [`Registry::register_pool`] and [`Pool`]; the crate docs ("Pools and load") state every
//! promise.
//!
//! # How a pool lives in the table
//!
//! Every name of a pool is an ordinary binding whose value comes from the pool rather than
//! from the node (the same seam as a weak binding's: `Stored::Weak` with a `PoolTie`): the
//! pool's name reads as no value, a member's name reads as the member's value while the pool is
//! open. So every read, the event log, the bound, migrations and the index treat them like
//! any binding; the facade's writers refuse to remove or replace them one by one; and the one
//! commit point closes the pool when its name's binding goes, however it goes.

mod core;
mod keyed;
mod lease;
pub(crate) mod load;
mod wait;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use self::core::NoSlot;
pub(crate) use self::core::PoolCore;
pub use self::core::{MAX_IN_FLIGHT, MAX_MEMBERS};
use self::lease::CoreRef;
pub use self::lease::Lease;
pub(crate) use self::load::Load;
pub use self::wait::Acquire;
use crate::error::{Error, Rejected};
use crate::pinned::Pinned;
use crate::raw::node::{Extra, Node, Stored, WeakRef};
use crate::registry::Registry;
use crate::tag::{InstanceId, Tag};
use crate::watch::Reason;

/// How a pool picks the member to lease.
///
/// Either way, an acquire first tries the member its thread released last, if that member is
/// idle (no member is less loaded than an idle one): one compare-and-swap, and a thread that
/// keeps to its member keeps that member's cache line to itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum Selection {
    /// The member with the fewest leases (ties: the first from a random start), found by a
    /// scan of every member's load. Exact at quiescence; the default.
    #[default]
    LeastLoaded,
    /// Power of two choices: two members at random, the less loaded of the two (a full scan
    /// only if both are full). Reads two loads instead of all of them: for large pools.
    PowerOfTwo,
}

/// Options of a pool: [`Registry::register_pool_with`].
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    max_in_flight: usize,
    selection: Selection,
    timing: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_in_flight: 1,
            selection: Selection::LeastLoaded,
            timing: true,
        }
    }
}

impl PoolOptions {
    /// The defaults: exclusive members (`max_in_flight = 1`, as MARSYS), least loaded first.
    pub fn new() -> PoolOptions {
        PoolOptions::default()
    }

    /// How many leases a member may have at once: 1 (exclusive, the default) to
    /// [`MAX_IN_FLIGHT`]. Anything else is refused by the registration
    /// ([`Error::InvalidPool`]).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// How the member to lease is picked.
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Whether the pool times its leases (on by default): the holders' durations and the peak
    /// in [`PoolStats`] (MARSYS's `get_statistics` has both). It costs every lease a read of
    /// the registry's clock and two updates of a counter all acquirers share; off, a lease is
    /// a compare-and-swap to take and a `fetch_and` to release, and the statistics give
    /// `None` for the peak and the durations (the counts, waits and holders stay).
    pub fn timing(mut self, on: bool) -> Self {
        self.timing = on;
        self
    }
}

/// What a name is bound to: [`Registry::kind`].
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Kind {
    /// A single entry (an agent).
    Agent,
    /// A pool's name.
    Pool {
        /// How many members it has.
        members: usize,
    },
    /// A member of a pool.
    Member {
        /// The pool's name.
        pool: String,
        /// Its index in the pool (its name is `{pool}_{index}`).
        index: usize,
    },
}

/// A pool's statistics: [`Pool::stats`] (MARSYS's `get_statistics`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Members.
    pub total: usize,
    /// Leases a member may have at once.
    pub max_in_flight: usize,
    /// Members with a free slot.
    pub available: usize,
    /// Leases out now (MARSYS's `allocated`).
    pub in_use: usize,
    /// Leases handed out since the pool was made or its statistics reset.
    pub allocations: u64,
    /// Leases released since then.
    pub releases: u64,
    /// The most leases out at once since then (`None` with [`PoolOptions::timing`] off).
    pub peak: Option<usize>,
    /// Acquisitions that had to wait for a release.
    pub waited: u64,
    /// Time waited, averaged over every allocation (those that did not wait count as zero).
    pub average_wait: Duration,
    /// Acquirers waiting now.
    pub waiting: usize,
    /// Every lease out: which member, for which key, for how long.
    pub holders: Vec<Holder>,
}

/// One lease out: in [`PoolStats::holders`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The member's index.
    pub member: usize,
    /// The member's name.
    pub name: String,
    /// The key it was acquired for, if any ([`Pool::acquire_for`]).
    pub key: Option<String>,
    /// How long it has been held, by the registry's clock (`None` with
    /// [`PoolOptions::timing`] off).
    pub held_for: Option<Duration>,
}

/// A pool's name or member, as a node sees it (see the module docs).
pub(crate) struct PoolTie<'a, V> {
    pub(crate) core: &'a Arc<PoolCore<V>>,
    /// `None` for the pool's own name.
    pub(crate) member: Option<usize>,
}

/// The value source of a pool's name: no value.
struct PoolAnchor<V> {
    core: Arc<PoolCore<V>>,
    member: Option<usize>,
}

impl<V: Clone + Send + Sync + 'static> WeakRef<V> for PoolAnchor<V> {
    fn upgrade(&self) -> Option<V> {
        let i = self.member?;
        self.core
            .is_open()
            .then(|| self.core.members[i].value.clone())
    }
    fn is_alive(&self) -> bool {
        // A pool's name goes only by its own removal. Its members are dead once the pool is
        // closed (its name removed, or its registration failed): invisible, never blocking
        // their names, removed by whoever meets them (as dead weak bindings are), so that none
        // outlives its pool, whatever removed the pool's name.
        self.member.is_none() || !self.core.is_closed()
    }
    fn death(&self) -> Reason {
        Reason::PoolRemoved
    }
    fn rebind(&self, _owner: &V) -> Box<dyn WeakRef<V>> {
        // Same-tag rebuilds only (metadata): replacements of pool names are refused.
        Box::new(PoolAnchor {
            core: Arc::clone(&self.core),
            member: self.member,
        })
    }
    fn pool(&self) -> Option<PoolTie<'_, V>> {
        Some(PoolTie {
            core: &self.core,
            member: self.member,
        })
    }
}

/// The name of member `i` of pool `pool`.
pub(crate) fn member_name(pool: &str, i: usize) -> String {
    format!("{pool}_{i}")
}

/// The error for a pool's name or member that a writer may not touch one by one.
pub(crate) fn pooled<V>(name: &str, tie: &PoolTie<'_, V>) -> Error {
    match tie.member {
        None => Error::IsPool { name: name.into() },
        Some(index) => Error::PoolMember {
            name: name.into(),
            pool: (*tie.core.name).into(),
            index,
        },
    }
}

/// A pool: a handle from [`Registry::pool`] or [`PoolRegistration`]. Cheap to clone; leases
/// need no lookup of the registry.
pub struct Pool<V> {
    core: Arc<PoolCore<V>>,
}

impl<V> Clone for Pool<V> {
    fn clone(&self) -> Self {
        Pool {
            core: Arc::clone(&self.core),
        }
    }
}

impl<V> fmt::Debug for Pool<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name())
            .field("members", &self.size())
            .field("in_use", &self.in_use())
            .finish_non_exhaustive()
    }
}

/// The error for a slot not taken.
fn no_slot<V>(core: &PoolCore<V>, e: NoSlot) -> Error {
    match e {
        NoSlot::Full => Error::Exhausted {
            pool: (*core.name).into(),
            total: core.slots(),
            in_use: core.in_use(),
        },
        NoSlot::Closed => Error::NotFound {
            name: (*core.name).into(),
        },
    }
}

/// A lease on the member `core`'s selection picks.
#[inline]
fn acquire_in<V>(core: CoreRef<'_, V>) -> Result<Lease<'_, V>, Error> {
    let (member, bit) = core.take().map_err(|e| no_slot(&core, e))?;
    Ok(Lease::slot(core, member, bit, None))
}

/// A lease on member `i`.
fn acquire_member_in<V>(core: CoreRef<'_, V>, i: usize) -> Result<Lease<'_, V>, Error> {
    if i >= core.members.len() {
        return Err(Error::NotFound {
            name: member_name(&core.name, i).into(),
        });
    }
    let bit = core.take_member(i).map_err(|e| no_slot(&core, e))?;
    Ok(Lease::slot(core, i, bit, None))
}

/// A lease for `key` (see `keyed.rs`).
fn acquire_for_in<'a, V>(core: CoreRef<'a, V>, key: &str) -> Result<Lease<'a, V>, Error> {
    match core.acquire_for(key) {
        Ok((hold, _)) => {
            let (member, bit) = (hold.member, hold.bit);
            Ok(Lease::slot(core, member, bit, Some(hold)))
        }
        Err(Ok(e)) => Err(no_slot(&core, e)),
        Err(Err(e)) => Err(e),
    }
}

impl<V> Pool<V> {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The tag of the pool's name.
    pub fn tag(&self) -> Tag {
        self.core.tags.get().expect("a handle is of an open pool").0
    }

    /// How many members it has.
    pub fn size(&self) -> usize {
        self.core.members.len()
    }

    /// Leases a member may have at once.
    pub fn max_in_flight(&self) -> usize {
        self.core.max_in_flight
    }

    /// How it picks members.
    pub fn selection(&self) -> Selection {
        self.core.selection
    }

    /// Member `i`'s value (whether leased or not).
    pub fn member(&self, i: usize) -> Option<&V> {
        self.core.members.get(i).map(|m| &m.value)
    }

    /// Member `i`'s name (`{pool}_{i}`).
    pub fn member_name(&self, i: usize) -> Option<&str> {
        self.core.members.get(i).map(|m| &*m.name)
    }

    /// Leases held on member `i` now.
    pub fn load(&self, i: usize) -> Option<usize> {
        (i < self.size()).then(|| self.core.load(i))
    }

    /// Leases out now.
    pub fn in_use(&self) -> usize {
        self.core.in_use()
    }

    /// Members with a free slot now.
    pub fn available(&self) -> usize {
        self.core.available()
    }

    /// Whether the pool is still registered (once removed, nothing more is leased).
    pub fn is_open(&self) -> bool {
        self.core.is_open()
    }

    /// Leases a member, picked by the pool's [`Selection`], without waiting. Lock-free: a scan
    /// of the members' loads and one compare-and-swap, repeated only if another acquirer took
    /// the slot first.
    ///
    /// [`Error::Exhausted`] if every member was seen full; [`Error::NotFound`] if the pool was
    /// removed.
    #[inline]
    pub fn acquire(&self) -> Result<Lease<'_, V>, Error> {
        acquire_in(CoreRef::Borrowed(&self.core))
    }

    /// Leases member `i` (whichever is picked otherwise), without waiting.
    pub fn acquire_member(&self, i: usize) -> Result<Lease<'_, V>, Error> {
        acquire_member_in(CoreRef::Borrowed(&self.core), i)
    }

    /// Leases for `key` (MARSYS's `branch_id`): the member `key` holds already, if it holds
    /// one (sharing its slot: the slot is freed when the key's last lease drops), else a new
    /// one as [`acquire`](Self::acquire) picks it. Keys follow the rules for names.
    pub fn acquire_for(&self, key: &str) -> Result<Lease<'_, V>, Error> {
        acquire_for_in(CoreRef::Borrowed(&self.core), key)
    }

    /// The statistics (MARSYS's `get_statistics`): counts, the peak, waits, and every holder
    /// with how long it has held. Counters are read one by one while leases come and go: they
    /// add up at quiescence.
    pub fn stats(&self) -> PoolStats {
        self.core.stats(&self.core.keyed())
    }

    /// Resets the counters (allocations, releases, waits; the peak to the leases out now).
    /// Leases out are untouched, and their releases are counted after the reset.
    pub fn reset_stats(&self) {
        self.core.reset_stats();
    }
}

impl<V: 'static> Pool<V> {
    /// Waits for a lease, woken by a release (no polling): see [`Acquire`] for the order in
    /// which waiters are served and what cancelling does. Runtime-agnostic.
    pub fn acquire_async(&self) -> Acquire<V> {
        Acquire::new(Arc::clone(&self.core))
    }

    /// Waits for a lease for `key` (MARSYS's `acquire_instance_async(branch_id)`): the member
    /// `key` holds already, at once, if it holds one; else the first slot a release frees,
    /// as [`acquire_async`](Self::acquire_async) waits for it.
    pub fn acquire_for_async(&self, key: &str) -> Acquire<V> {
        Acquire::keyed(Arc::clone(&self.core), key)
    }

    /// Blocks the thread until a lease is free (woken by a release, no polling), or `timeout`
    /// passes: then [`Error::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Lease<'_, V>, Error> {
        wait::blocking(&self.core, timeout)
    }

    /// Waits for a lease for at most `timeout` (MARSYS's `acquire_instance_async(timeout)`),
    /// as a tokio task: [`Error::Timeout`] when it passes. Dropping the future is safe (see
    /// [`Acquire`]).
    #[cfg(feature = "tokio")]
    pub async fn acquire_within(&self, timeout: Duration) -> Result<Lease<'static, V>, Error> {
        match tokio::time::timeout(timeout, self.acquire_async()).await {
            Ok(out) => out,
            Err(_) => Err(Error::Timeout {
                name: (*self.core.name).into(),
                waited: timeout,
            }),
        }
    }
}

/// A registered pool: a guard that removes the pool (its name and every member) when dropped,
/// unless [`detach`](Self::detach)ed. Dereferences to the [`Pool`].
#[must_use = "dropping the guard removes the pool; call .detach() to keep it"]
pub struct PoolRegistration<V: Clone + Send + Sync + 'static> {
    registry: Registry<V>,
    pool: Pool<V>,
    armed: bool,
}

impl<V: Clone + Send + Sync + 'static> PoolRegistration<V> {
    /// Keeps the pool registered and returns its handle; remove it with
    /// [`Registry::unregister_pool`].
    pub fn detach(mut self) -> Pool<V> {
        self.armed = false;
        self.pool.clone()
    }

    /// Removes the pool now (by its tag: never a pool registered later under the name), with
    /// its members. Returns how many members were removed.
    pub fn unregister(mut self) -> Result<usize, Error> {
        self.armed = false;
        self.registry
            .unregister_pool_as(self.pool.name(), Some(self.pool.tag()), Reason::IfSame)
    }
}

impl<V: Clone + Send + Sync + 'static> std::ops::Deref for PoolRegistration<V> {
    type Target = Pool<V>;
    fn deref(&self) -> &Pool<V> {
        &self.pool
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for PoolRegistration<V> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.registry.unregister_pool_as(
                self.pool.name(),
                Some(self.pool.tag()),
                Reason::GuardDropped,
            );
        }
    }
}

impl<V: Clone + Send + Sync + 'static> fmt::Debug for PoolRegistration<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolRegistration")
            .field("pool", &self.pool)
            .field("armed", &self.armed)
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// Registers a pool: binds `name` and its members' names `{name}_0`, `{name}_1`, ... (as
    /// MARSYS), all or nothing, with the default [`PoolOptions`] (exclusive members). Returns
    /// a guard that removes the pool when dropped.
    ///
    /// On any collision (a name taken by an agent, a pool or a member), or a name that breaks
    /// the rules, nothing stays bound: the names bound so far are unbound before it returns,
    /// the error names the name that was refused, and the values are handed back. Readers
    /// never see a member's value before every name is bound (a member reads as no value
    /// until then), though watchers see the names come and go.
    pub fn register_pool<I: IntoIterator<Item = V>>(
        &self,
        name: &str,
        members: I,
    ) -> Result<PoolRegistration<V>, Rejected<Vec<V>>> {
        self.register_pool_with(name, members, PoolOptions::default())
    }

    /// [`register_pool`](Self::register_pool) with options.
    pub fn register_pool_with<I: IntoIterator<Item = V>>(
        &self,
        name: &str,
        members: I,
        options: PoolOptions,
    ) -> Result<PoolRegistration<V>, Rejected<Vec<V>>> {
        let values: Vec<V> = members.into_iter().collect();
        let invalid = |reason: &'static str| Error::InvalidPool {
            name: name.into(),
            reason,
        };
        let refused = if values.is_empty() {
            Some(invalid("a pool needs at least one member"))
        } else if values.len() > MAX_MEMBERS {
            Some(invalid("more members than MAX_MEMBERS"))
        } else if !(1..=MAX_IN_FLIGHT).contains(&options.max_in_flight) {
            Some(invalid("max_in_flight must be 1 to MAX_IN_FLIGHT"))
        } else {
            None
        };
        if let Some(error) = refused {
            return Err(Rejected::new(error, values));
        }
        let core = Arc::new(PoolCore::new(
            name,
            values,
            options.max_in_flight,
            options.selection,
            options.timing,
            Arc::clone(&self.inner.clock),
            self.inner.collector().cloned(),
        ));
        let pinned = self.pin();
        // Members of a removed pool are dead until purged: a registration at the bound purges
        // them first (see `Pinned::bind`).
        self.inner.map.note_mortal();
        let instance = InstanceId::fresh();
        let bind = |member: Option<usize>| {
            let anchor = PoolAnchor {
                core: Arc::clone(&core),
                member,
            };
            let own;
            let n = match member {
                Some(i) => {
                    own = core.members[i].name.clone();
                    &*own
                }
                None => name,
            };
            pinned
                .bind(
                    n,
                    instance,
                    Stored::Weak(Box::new(anchor)),
                    Extra::default(),
                )
                .map_err(|(e, _)| e)
        };
        let back = |error: Error| {
            let values = core.members.iter().map(|m| m.value.clone()).collect();
            Err(Rejected::new(error, values))
        };
        let anchor = match bind(None) {
            Ok(tag) => tag,
            Err(e) => return back(e),
        };
        let mut tags = Vec::with_capacity(core.members.len());
        for i in 0..core.members.len() {
            match bind(Some(i)) {
                Ok(tag) => tags.push(tag),
                Err(e) => {
                    core.close();
                    for (i, tag) in tags.into_iter().enumerate() {
                        pinned.remove_member(&core.members[i].name, tag, Reason::PoolRemoved);
                    }
                    let _ = pinned.remove_binding(name, Some(anchor), Reason::PoolRemoved, true);
                    return back(e);
                }
            }
        }
        let tags = tags.into_boxed_slice();
        if !core.open((anchor, tags.clone())) {
            // Its name was removed (a clear) before it opened: its members are dead already.
            for (i, tag) in tags.iter().enumerate() {
                pinned.remove_member(&core.members[i].name, *tag, Reason::PoolRemoved);
            }
            return back(crate::pinned::not_found(name));
        }
        Ok(PoolRegistration {
            registry: self.clone(),
            pool: Pool { core },
            armed: true,
        })
    }

    /// The pool bound to `name`, if `name` is a pool's name.
    pub fn pool(&self, name: &str) -> Option<Pool<V>> {
        let pinned = self.pin();
        let tie = pool_of(&pinned, name)?;
        (tie.member.is_none() && tie.core.is_open()).then(|| Pool {
            core: Arc::clone(tie.core),
        })
    }

    /// Removes the pool `name` and every member (MARSYS's `unregister` of a pool): the pool's
    /// name first (from then on nothing is leased and members read as no value), then each
    /// member, each an event ([`Reason::PoolRemoved`]). Returns how many members were removed.
    /// Leases out stay usable; their release is harmless.
    ///
    /// [`Error::NotFound`] if nothing is bound to `name`; [`Error::NotAPool`] if it is bound to
    /// something else.
    pub fn unregister_pool(&self, name: &str) -> Result<usize, Error> {
        self.unregister_pool_as(name, None, Reason::Explicit)
    }

    /// [`unregister_pool`](Self::unregister_pool) only if the pool's name still carries `tag`
    /// (identity-safe: never a pool registered later under the same name).
    pub fn unregister_pool_if_same(&self, name: &str, tag: Tag) -> Result<usize, Error> {
        self.unregister_pool_as(name, Some(tag), Reason::IfSame)
    }

    pub(crate) fn unregister_pool_as(
        &self,
        name: &str,
        tag: Option<Tag>,
        reason: Reason,
    ) -> Result<usize, Error> {
        let pinned = self.pin();
        loop {
            let core = match pool_of(&pinned, name) {
                // Not yet open (being registered) or closed (being removed): not there yet, or
                // any more.
                Some(tie) if tie.member.is_none() && !tie.core.is_open() => {
                    return Err(crate::pinned::not_found(name));
                }
                Some(tie) if tie.member.is_none() => Arc::clone(tie.core),
                Some(tie) => return Err(pooled(name, &tie)),
                None if pinned.get(name).is_some() => {
                    return Err(Error::NotAPool { name: name.into() });
                }
                None => return Err(crate::pinned::not_found(name)),
            };
            let found = core.tags.get().map(|t| t.0);
            let expected = tag.or(found);
            match pinned.remove_pool(name, expected, reason, Reason::PoolRemoved) {
                0 => {}
                n => return Ok(n - 1),
            }
            // Not removed: another pool is bound under the name now (an unconditional
            // removal removes that one; a conditional one says which it is), or none.
            match (tag, self.pool_tag(&pinned, name)) {
                (None, Some(now)) if Some(now) != found => continue,
                (Some(expected), Some(current)) if current != expected => {
                    return Err(Error::TagMismatch {
                        name: name.into(),
                        expected,
                        current,
                    });
                }
                _ => return Err(crate::pinned::not_found(name)),
            }
        }
    }

    /// What `name` is bound to: an agent, a pool, or a pool's member; `None` if nothing.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        let pinned = self.pin();
        visible(&pinned, name).map(kind_of)
    }

    /// Whether `name` is a pool's name (MARSYS's `is_pool`).
    pub fn is_pool(&self, name: &str) -> bool {
        matches!(self.kind(name), Some(Kind::Pool { .. }))
    }

    /// The logical name of `name` (MARSYS's `normalize`): a member's pool's name, else `name`
    /// itself.
    pub fn normalize<'a>(&self, name: &'a str) -> &'a str {
        match self.kind(name) {
            Some(Kind::Member { pool, .. }) => &name[..pool.len()],
            _ => name,
        }
    }

    /// Whether two names stand for the same logical agent: equal once normalized (a pool and
    /// its members are one).
    pub fn same_logical(&self, a: &str, b: &str) -> bool {
        self.normalize(a) == self.normalize(b)
    }

    /// How many instances `name` stands for: a pool's members, 1 for an agent or a member, 0
    /// if nothing is bound.
    pub fn instance_count(&self, name: &str) -> usize {
        match self.kind(name) {
            Some(Kind::Pool { members }) => members,
            Some(_) => 1,
            None => 0,
        }
    }

    /// How many of `name`'s instances could be leased now: a pool's members with a free slot;
    /// for a member, whether it has one; for an agent, 1 unless it has a task in flight (a
    /// leased single agent counts as unavailable, unlike MARSYS); 0 if nothing is bound.
    pub fn available_count(&self, name: &str) -> usize {
        let pinned = self.pin();
        let Some(n) = visible(&pinned, name) else {
            return 0;
        };
        match n.pool() {
            Some(PoolTie { core, member: None }) => core.available(),
            Some(PoolTie {
                core,
                member: Some(i),
            }) => usize::from(core.is_open() && core.has_room(i)),
            None => usize::from(n.load().is_none_or(|l| l.tasks() == 0)),
        }
    }

    /// Work in flight on `name`: a pool's leases, a member's leases, an agent's tasks (see
    /// [`acquire`](Self::acquire)); `None` if nothing is bound.
    pub fn load(&self, name: &str) -> Option<usize> {
        let pinned = self.pin();
        visible(&pinned, name).map(load_of)
    }

    /// A lease on `name`: for a pool, a member picked by load ([`Pool::acquire`]); for a
    /// member, that member; for an agent, a task counted on its binding (by its tag: a name
    /// bound again starts at zero), with no limit. Never waits.
    pub fn acquire(&self, name: &str) -> Result<Lease<'static, V>, Error> {
        self.lease(name, None)
    }

    /// MARSYS's `get_or_acquire(name, branch_id)`: for a pool, the member `key` holds, else a
    /// new one ([`Pool::acquire_for`]); for an agent or a member, as
    /// [`acquire`](Self::acquire).
    pub fn get_or_acquire(&self, name: &str, key: &str) -> Result<Lease<'static, V>, Error> {
        self.lease(name, Some(key))
    }

    fn lease(&self, name: &str, key: Option<&str>) -> Result<Lease<'static, V>, Error> {
        let pinned = self.pin();
        let n = visible(&pinned, name).ok_or_else(|| crate::pinned::not_found(name))?;
        match n.pool() {
            Some(PoolTie { core, member: None }) => {
                let core = CoreRef::Owned(Arc::clone(core));
                match key {
                    Some(key) => acquire_for_in(core, key),
                    None => acquire_in(core),
                }
            }
            Some(PoolTie {
                core,
                member: Some(i),
            }) => acquire_member_in(CoreRef::Owned(Arc::clone(core)), i),
            None => self.start_task(&pinned, n),
        }
    }

    /// A task on an agent's binding: its load cell, installed by its first task.
    fn start_task(&self, pinned: &Pinned<'_, V>, n: &Node<V>) -> Result<Lease<'static, V>, Error> {
        let map = &self.inner.map;
        let (name, tag) = (n.name(), n.tag);
        let hash = n.hash;
        let load = match n.load() {
            Some(load) => Arc::clone(load),
            None => {
                let cell = Arc::new(Load::default());
                let extra = |n: &Node<V>| Extra {
                    load: Some(n.load().cloned().unwrap_or_else(|| Arc::clone(&cell))),
                    ..Extra::kept(n)
                };
                let accept = |n: &Node<V>| n.tag == tag && n.is_visible() && n.load().is_none();
                // A refusal may be a racing first task that installed its own cell: look again.
                let _ = map.update_extra(hash, name, extra, accept, pinned.guard());
                let now = map
                    .get(hash, name, pinned.guard())
                    .filter(|n| n.tag == tag && n.is_visible())
                    .ok_or_else(|| crate::pinned::not_found(name))?;
                Arc::clone(now.load().expect("installed above"))
            }
        };
        let value = crate::pinned::EntryRef::of(n)
            .ok_or_else(|| crate::pinned::not_found(name))?
            .value()
            .clone();
        load.start();
        Ok(Lease::task(load, value, name, tag))
    }

    /// Every bound name and what it is (MARSYS's `all_with_pools`), sorted by name; weakly
    /// consistent, as [`entries`](Self::entries).
    pub fn listing(&self) -> Vec<(String, Kind)> {
        let pinned = self.pin();
        let mut all: Vec<(String, Kind)> = self
            .inner
            .map
            .iter(pinned.guard())
            .filter(|n| n.is_visible())
            .map(|n| (n.name().to_owned(), kind_of(n)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The least loaded entry whose name starts with `prefix` (MARSYS's
    /// `get_least_loaded(prefix)`), by [`load`](Self::load); ties go to the first name. Pools'
    /// own names are left out (their members are candidates).
    pub fn least_loaded(&self, prefix: &str) -> Option<(String, crate::Entry<V>)> {
        let pinned = self.pin();
        let best = pinned
            .iter()
            .filter(|e| e.name().starts_with(prefix))
            .map(|e| (load_of(e.node()), e))
            .min_by(|(la, a), (lb, b)| la.cmp(lb).then_with(|| a.name().cmp(b.name())))?;
        Some((best.1.name().to_owned(), best.1.to_entry()))
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// The tag of the pool bound to `name`, if `name` is a pool's name.
    #[cold]
    pub(crate) fn pool_tag(&self, pinned: &Pinned<'_, V>, name: &str) -> Option<Tag> {
        visible(pinned, name)
            .filter(|n| n.pool().is_some_and(|t| t.member.is_none()))
            .map(|n| n.tag)
    }
}

/// The binding of `name`, if a read would see it (the pool's names included).
fn visible<'g, V>(pinned: &'g Pinned<'_, V>, name: &str) -> Option<&'g Node<V>>
where
    V: Send + Sync + 'static,
{
    let map = &pinned.registry().inner.map;
    map.get(map.hash(name), name, pinned.guard())
        .filter(|n| n.is_visible())
}

/// The pool `name` belongs to, if it is a pool's name or member.
fn pool_of<'g, V>(pinned: &'g Pinned<'_, V>, name: &str) -> Option<PoolTie<'g, V>>
where
    V: Send + Sync + 'static,
{
    let map = &pinned.registry().inner.map;
    let n = map.get(map.hash(name), name, pinned.guard())?;
    n.pool()
}

fn kind_of<V>(n: &Node<V>) -> Kind {
    match n.pool() {
        Some(PoolTie { core, member: None }) => Kind::Pool {
            members: core.members.len(),
        },
        Some(PoolTie {
            core,
            member: Some(index),
        }) => Kind::Member {
            pool: core.name.to_string(),
            index,
        },
        None => Kind::Agent,
    }
}

fn load_of<V>(n: &Node<V>) -> usize {
    match n.pool() {
        Some(PoolTie { core, member: None }) => core.in_use(),
        Some(PoolTie {
            core,
            member: Some(i),
        }) => core.load(i),
        None => n.load().map_or(0, |l| l.tasks()),
    }
}
