//! The sequential model and the differential harness (part of `ops.rs`, which see).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use genreg::liveness::ManualClock;
use genreg::{
    Ensured, Error, HealthReport, HealthState, HealthStatus, InstanceId, Metadata, Pinned, Reaper,
    Reason, Registration, Registry, Rejected, Tag,
};

use super::*;

// ---------------------------------------------------------------------------------------------
// The sequential model
// ---------------------------------------------------------------------------------------------

/// A model value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MVal {
    Strong(u64),
    /// A weak binding to the owner with this id; `value` is the owner's number.
    Weak {
        owner: u64,
        value: u64,
    },
    /// A pool's own name (it reads as no value): `Model::pools[pool]`.
    PoolName {
        pool: usize,
    },
    /// Member `index` of `Model::pools[pool]`, whose value number is `value`.
    Member {
        pool: usize,
        index: usize,
        value: u64,
    },
}

impl MVal {
    /// The value number (0 for a pool's name, which has none: see `Model::readable`).
    pub fn value(self) -> u64 {
        match self {
            MVal::Strong(v) | MVal::Weak { value: v, .. } | MVal::Member { value: v, .. } => v,
            MVal::PoolName { .. } => 0,
        }
    }

    pub fn is_pooled(self) -> bool {
        matches!(self, MVal::PoolName { .. } | MVal::Member { .. })
    }
}

/// A pool as the model keeps it (every pool ever registered, by its index; removed ones stay,
/// closed, while their leases come back).
#[derive(Clone, Debug)]
pub struct MPool {
    pub name: String,
    pub tag: Tag,
    /// Per member: name, tag, value number.
    pub members: Vec<(String, Tag, u64)>,
    pub max: usize,
    pub power_of_two: bool,
    pub open: bool,
    /// Per member: the busy slots (a lease takes the lowest free one).
    pub bits: Vec<u64>,
    /// Per member and slot: when it was taken (nanoseconds).
    pub since: Vec<Vec<u64>>,
    /// Keyed holds: key -> (member, slot, leases sharing it).
    pub keys: BTreeMap<String, (usize, u32, usize)>,
    pub allocations: u64,
    pub releases: u64,
    pub peak: usize,
}

impl MPool {
    pub fn load(&self, i: usize) -> usize {
        self.bits[i].count_ones() as usize
    }

    pub fn in_use(&self) -> usize {
        (0..self.members.len()).map(|i| self.load(i)).sum()
    }

    pub fn available(&self) -> usize {
        (0..self.members.len())
            .filter(|&i| self.load(i) < self.max)
            .count()
    }

    pub fn full(&self) -> bool {
        self.available() == 0
    }

    pub fn exhausted(&self) -> Error {
        Error::Exhausted {
            pool: self.name.as_str().into(),
            total: self.members.len() * self.max,
            in_use: self.in_use(),
        }
    }

    /// Takes the lowest free slot of member `i` at `now`; returns the slot.
    pub fn take(&mut self, i: usize, now: u64) -> u32 {
        let bit = (!self.bits[i]).trailing_zeros();
        assert!(
            (bit as usize) < self.max,
            "member {i} of {:?} is full",
            self.name
        );
        self.bits[i] |= 1 << bit;
        self.since[i][bit as usize] = now;
        self.allocations += 1;
        self.peak = self.peak.max(self.in_use());
        bit
    }

    pub fn release(&mut self, i: usize, bit: u32) {
        assert!(
            self.bits[i] & (1 << bit) != 0,
            "slot {bit} of member {i} not held"
        );
        self.bits[i] &= !(1 << bit);
        self.releases += 1;
    }
}

/// What a lease the harness holds stands for.
#[derive(Clone, Debug)]
pub enum MLease {
    /// A slot of member `member` of `Model::pools[pool]` (shared with the key's other leases).
    Slot {
        pool: usize,
        member: usize,
        bit: u32,
        key: Option<String>,
    },
    /// A task on the binding `tag` of `name`.
    Task { name: String, tag: Tag },
}

/// An invisible binding that may still be stored (not purged yet): expired, or weak with a dead
/// owner.
#[derive(Clone, Debug)]
pub struct Limbo {
    pub name: String,
    /// A weak binding's owner.
    pub owner: Option<u64>,
}

/// A binding's health, as the model keeps it.
#[derive(Clone, Copy, Debug)]
pub struct MHealth {
    pub state: HealthState,
    /// When the state was entered (nanoseconds; meaningless while unknown).
    pub since: u64,
    /// The last report recorded: its state and when.
    pub last: Option<(HealthState, u64)>,
}

/// The sequential model: visible bindings only (a weak binding whose owner died, or one past
/// its deadline, is gone from `map`; until purged it is in `limbo`).
#[derive(Debug, Default)]
pub struct Model {
    pub map: BTreeMap<String, (Tag, MVal)>,
    /// The number `register_auto` tries next (never restarts).
    pub auto: u64,
    /// The generation floor: every new generation must be above it.
    pub max_gen: u64,
    /// Every instance seen in a tag (fresh ids must be new).
    pub instances: HashSet<InstanceId>,
    /// The invisible bindings that may still be stored, by tag. With the event log on, exact
    /// (each removal's event takes its binding out); without, an upper bound (a migration may
    /// purge them unseen), trimmed by the ops that surely purge.
    pub limbo: BTreeMap<Tag, Limbo>,
    /// The time on the clock, in nanoseconds.
    pub now: u64,
    /// Every binding with a TTL ever made, by tag: (TTL, deadline), in nanoseconds. The deadline
    /// of a binding no longer bound stays where it was (nothing renews it any more).
    pub ttls: HashMap<Tag, (u64, u64)>,
    /// Health by tag (absent: never checked, unknown).
    pub health: HashMap<Tag, MHealth>,
    /// The bindings that expired while bound (tag -> name), purged or not.
    pub expired: BTreeMap<Tag, String>,
    /// The weak owners of the bindings in `expired` that were weak (tag -> owner id).
    pub expired_owner: HashMap<Tag, u64>,
    /// The bindings condemned as critical for too long.
    pub condemned: HashSet<Tag>,
    /// Condemned by the op being applied: their removal (reason `Critical`) is due.
    pub pending_critical: HashSet<Tag>,
    /// `remove_critical_after`, in nanoseconds.
    pub critical_after: Option<u64>,
    /// The registry's bound, if any.
    pub max_entries: Option<usize>,
    /// The metadata of each binding that carries some, by tag (a tag is never reused, so
    /// entries of removed bindings are simply never looked up again).
    pub metas: HashMap<Tag, Metadata>,
    /// Every pool ever registered (see `MPool`); `map` holds its names while it is bound.
    pub pools: Vec<MPool>,
    /// Tasks in flight per binding (`Registry::acquire` of an agent), by tag.
    pub tasks: HashMap<Tag, usize>,
}

impl Model {
    pub fn new() -> Self {
        Model {
            auto: 1,
            ..Model::default()
        }
    }

    pub fn tag(&self, name: &str) -> Option<Tag> {
        self.map.get(name).map(|(t, _)| *t)
    }

    /// What `names()` must list: every bound name, a pool's own included.
    pub fn names(&self) -> Vec<String> {
        // Every bound name, a pool's own included (as `len` counts it).
        self.map.keys().cloned().collect()
    }

    /// What `get(name)` must read: a visible binding with a value (a pool's name has none).
    pub fn readable(&self, name: &str) -> Option<(Tag, u64)> {
        match self.map.get(name) {
            Some((_, MVal::PoolName { .. })) | None => None,
            Some((t, v)) => Some((*t, v.value())),
        }
    }

    /// The refusal of a writer that may not touch a pool's names one by one, if `name` is one.
    pub fn pooled(&self, name: &str) -> Option<Error> {
        match self.map.get(name)?.1 {
            MVal::PoolName { .. } => Some(Error::IsPool { name: name.into() }),
            MVal::Member { pool, index, .. } => Some(Error::PoolMember {
                name: name.into(),
                pool: self.pools[pool].name.as_str().into(),
                index,
            }),
            _ => None,
        }
    }

    /// The kind of a bound name.
    pub fn kind(&self, name: &str) -> Option<genreg::Kind> {
        Some(match self.map.get(name)?.1 {
            MVal::PoolName { pool } => genreg::Kind::Pool {
                members: self.pools[pool].members.len(),
            },
            MVal::Member { pool, index, .. } => genreg::Kind::Member {
                pool: self.pools[pool].name.clone(),
                index,
            },
            _ => genreg::Kind::Agent,
        })
    }

    /// `Registry::load(name)`.
    pub fn load(&self, name: &str) -> Option<usize> {
        let (t, v) = self.map.get(name)?;
        Some(match *v {
            MVal::PoolName { pool } => self.pools[pool].in_use(),
            MVal::Member { pool, index, .. } => self.pools[pool].load(index),
            _ => self.tasks.get(t).copied().unwrap_or(0),
        })
    }

    /// `Registry::available_count(name)`.
    pub fn available_count(&self, name: &str) -> usize {
        let Some((t, v)) = self.map.get(name) else {
            return 0;
        };
        match *v {
            MVal::PoolName { pool } => self.pools[pool].available(),
            MVal::Member { pool, index, .. } => {
                let p = &self.pools[pool];
                usize::from(p.open && p.load(index) < p.max)
            }
            _ => usize::from(self.tasks.get(t).copied().unwrap_or(0) == 0),
        }
    }

    /// What `unregister_pool(name)` (with `tag`: `_if_same`) must answer: the members removed.
    pub fn expect_unregister_pool(&self, name: &str, tag: Option<Tag>) -> Result<usize, Error> {
        match self.map.get(name) {
            None => {
                validate(name)?;
                Err(Error::NotFound { name: name.into() })
            }
            Some((t, MVal::PoolName { pool })) => match tag {
                Some(e) if e != *t => Err(Error::TagMismatch {
                    name: name.into(),
                    expected: e,
                    current: *t,
                }),
                _ => Ok(self.pools[*pool].members.len()),
            },
            Some((_, MVal::Member { .. })) => Err(self.pooled(name).expect("a member")),
            Some(_) => Err(Error::NotAPool { name: name.into() }),
        }
    }

    /// Removes pool `id`'s names (it was unbound) and closes it.
    pub fn close_pool(&mut self, id: usize) {
        let p = &mut self.pools[id];
        assert!(p.open, "{:?} closed twice", p.name);
        p.open = false;
        let names: Vec<String> = std::iter::once(p.name.clone())
            .chain(p.members.iter().map(|m| m.0.clone()))
            .collect();
        for n in names {
            let removed = self.map.remove(&n);
            assert!(
                matches!(removed, Some((_, v)) if v.is_pooled()),
                "{n:?} of pool {id} not bound"
            );
        }
    }

    /// How many invisible bindings may still be stored.
    pub fn dead_maybe(&self) -> usize {
        self.limbo.len()
    }

    /// Moves every visible binding past its deadline to `limbo` (the clock moved).
    pub fn expire(&mut self) {
        let now = self.now;
        let due: Vec<(String, Tag, MVal)> = self
            .map
            .iter()
            .filter(|(_, (t, _))| self.ttls.get(t).is_some_and(|&(_, d)| d <= now))
            .map(|(n, (t, v))| (n.clone(), *t, *v))
            .collect();
        for (name, tag, v) in due {
            self.map.remove(&name);
            self.expired.insert(tag, name.clone());
            let owner = match v {
                MVal::Weak { owner, .. } => Some(owner),
                _ => None,
            };
            if let Some(o) = owner {
                self.expired_owner.insert(tag, o);
            }
            self.limbo.insert(tag, Limbo { name, owner });
        }
    }

    /// Whether the liveness cell of `tag` says it expired (`Registration::expired`): it has a
    /// TTL, its deadline has passed (renewed no more once it is not bound), and it was not
    /// condemned as critical.
    pub fn cell_expired(&self, tag: Tag) -> bool {
        self.ttls.get(&tag).is_some_and(|&(_, d)| d <= self.now) && !self.condemned.contains(&tag)
    }

    /// The health state of `tag` (unknown if never checked).
    pub fn state(&self, tag: Tag) -> HealthState {
        self.health
            .get(&tag)
            .map_or(HealthState::Unknown, |h| h.state)
    }

    /// A health state set (`record`: with a report) on `tag` now.
    pub fn record_health(&mut self, tag: Tag, state: HealthState, record: bool) {
        let now = self.now;
        let h = self.health.entry(tag).or_insert(MHealth {
            state: HealthState::Unknown,
            since: 0,
            last: None,
        });
        if h.state != state {
            h.state = state;
            h.since = now;
        }
        if record {
            h.last = Some((state, now));
        }
    }

    /// Whether `tag` has been critical for the limit (if the registry has one; a pool's member
    /// never is: it goes only with its pool).
    pub fn critical_due(&self, tag: Tag) -> bool {
        let member = self
            .map
            .values()
            .any(|(t, v)| *t == tag && matches!(v, MVal::Member { .. }));
        if member {
            return false;
        }
        match (self.health.get(&tag), self.critical_after) {
            (Some(h), Some(limit)) => {
                h.state == HealthState::Critical && h.since.saturating_add(limit) <= self.now
            }
            _ => false,
        }
    }

    /// Removes a visible binding condemned as critical for too long.
    pub fn condemn(&mut self, name: &str, tag: Tag) {
        assert_eq!(self.tag(name), Some(tag));
        self.map.remove(name);
        self.condemned.insert(tag);
        self.pending_critical.insert(tag);
    }

    /// What `Registry::health(name)` must answer.
    pub fn health_of(&self, name: &str) -> Option<HealthStatus> {
        let tag = self.tag(name)?;
        let h = self.health.get(&tag);
        let state = self.state(tag);
        Some(HealthStatus {
            tag,
            state,
            since: h
                .filter(|_| state != HealthState::Unknown)
                .map(|h| Duration::from_nanos(h.since)),
            last_check: h.and_then(|h| h.last).map(|(s, at)| {
                let mut r = HealthReport::new(s);
                r.checked_at = Duration::from_nanos(at);
                r
            }),
        })
    }

    /// The visible bindings that carry metadata, sorted by name: (name, tag, value, meta).
    pub fn described(&self) -> Vec<(String, Tag, u64, Metadata)> {
        self.map
            .iter()
            .filter_map(|(n, (t, v))| {
                let m = self.metas.get(t)?;
                Some((n.clone(), *t, v.value(), m.clone()))
            })
            .collect()
    }

    /// What `register(name, ..)` must answer (before the tag is known).
    pub fn expect_register(&self, name: &str) -> Result<(), Error> {
        validate(name)?;
        match self.tag(name) {
            Some(current) => Err(Error::AlreadyRegistered {
                name: name.into(),
                current,
            }),
            // The bound counts visible bindings only (dead weak ones are purged first).
            None => match self.max_entries {
                Some(capacity) if self.map.len() >= capacity => Err(Error::Full {
                    name: name.into(),
                    capacity,
                }),
                _ => Ok(()),
            },
        }
    }

    /// What a removal with `expected` (None: unconditional) must answer.
    pub fn expect_remove(&self, name: &str, expected: Option<Tag>) -> Result<(Tag, u64), Error> {
        validate(name)?;
        if let Some(e) = self.pooled(name) {
            return Err(e);
        }
        self.expect_plain(name, expected)
    }

    /// What a health record of `(name, tag)` must answer: refused on a pool's own name only
    /// (members carry health).
    pub fn expect_health(&self, name: &str, tag: Tag) -> Result<(), Error> {
        validate(name)?;
        if let Some((_, MVal::PoolName { .. })) = self.map.get(name) {
            return Err(Error::IsPool { name: name.into() });
        }
        self.expect_plain(name, Some(tag)).map(|_| ())
    }

    /// As `expect_remove`, for a writer that treats a pool's names as any binding.
    pub fn expect_plain(&self, name: &str, expected: Option<Tag>) -> Result<(Tag, u64), Error> {
        validate(name)?;
        match self.map.get(name) {
            None => Err(Error::NotFound { name: name.into() }),
            Some((t, v)) => match expected {
                Some(e) if e != *t => Err(Error::TagMismatch {
                    name: name.into(),
                    expected: e,
                    current: *t,
                }),
                _ => Ok((*t, v.value())),
            },
        }
    }

    /// Checks a tag the registry minted for a new binding and learns it.
    pub fn learn(&mut self, tag: Tag, instance: Option<InstanceId>, ctx: &dyn Debug) {
        let g = tag.generation().as_raw();
        assert!(
            g > self.max_gen,
            "{ctx:?}: new generation {g} is not above every generation seen ({})",
            self.max_gen
        );
        self.max_gen = g;
        match instance {
            Some(i) => assert_eq!(tag.instance(), i, "{ctx:?}: wrong instance in {tag:?}"),
            None => {
                assert!(
                    !is_pool_instance(tag.instance()) && !self.instances.contains(&tag.instance()),
                    "{ctx:?}: minted instance {:?} is not fresh",
                    tag.instance()
                );
            }
        }
        self.instances.insert(tag.instance());
    }
}

// ---------------------------------------------------------------------------------------------
// The harness: the registry, the model, and what the ops hold (guards, weak owners, tags)
// ---------------------------------------------------------------------------------------------

pub struct Harness {
    // Field order: leases and guards (which hold registry clones) go first.
    /// Leases held, with what each stands for in the model.
    pub leases: Vec<(genreg::Lease<'static, V>, MLease)>,
    /// Pool guards held, by pool (`Model::pools`).
    pub pool_guards: Vec<(genreg::PoolRegistration<V>, usize)>,
    /// A handle of every pool ever registered (`Model::pools`, same index).
    pub pools: Vec<genreg::Pool<V>>,
    /// Every tag a pool's name was bound with (for `unregister_pool_if_same`).
    pub pool_tags: Vec<Tag>,
    /// Bindings whose first task may have published a metadata update without metadata (see
    /// `EventMirror::bare_updates`).
    pub first_tasks: HashSet<Tag>,
    pub guards: Vec<Registration<V>>,
    pub owners: Vec<(u64, V)>,
    pub reg: Registry<V>,
    pub model: Model,
    /// Every tag the registry minted so far, in order.
    pub seen: Vec<Tag>,
    next_value: u64,
    /// The registry's state rebuilt from its events (when the config turns events on).
    pub mirror: Option<EventMirror>,
    /// The registry's clock (the model's is `model.now`).
    pub clock: ManualClock,
    /// The reaper, attached at the first `Reap` (its walk schedules what is there already).
    pub reaper: Option<Reaper<V>>,
}

impl Harness {
    pub fn new(cfg: Config) -> Self {
        let (reg, clock) = build_registry(cfg);
        let mirror = EventMirror::new(&reg);
        Harness {
            leases: Vec::new(),
            pool_guards: Vec::new(),
            pools: Vec::new(),
            pool_tags: Vec::new(),
            first_tasks: HashSet::new(),
            guards: Vec::new(),
            owners: Vec::new(),
            reg,
            model: Model {
                max_entries: cfg.max_entries,
                critical_after: cfg.critical_after.map(|t| t * TICK_NS),
                ..Model::new()
            },
            seen: Vec::new(),
            next_value: 0,
            mirror,
            clock,
            reaper: None,
        }
    }

    /// Whether the harness still holds the weak owner `id`.
    fn owner_alive(&self, id: u64) -> bool {
        self.owners.iter().any(|(o, _)| *o == id)
    }

    /// Applies the events published since the last call (with the event log on). Every removal
    /// the registry made of its own accord (expired, dead owner, critical) must be of a binding
    /// the model holds invisible, or condemned by the op just applied, with the reason the model
    /// expects; no other removal may be of an invisible one. Returns how many such removals
    /// there were (`None` without the log).
    pub fn sync(&mut self) -> Option<usize> {
        let Some(mirror) = self.mirror.as_mut() else {
            // Without events, a condemned binding was removed by the op that condemned it.
            self.model.pending_critical.clear();
            return None;
        };
        let mut deaths = 0;
        let removals = mirror.catch_up();
        // A first task installs a load cell: no event (it was once a bare metadata update).
        assert!(
            mirror.bare_updates.is_empty(),
            "metadata updates without metadata: {:?}",
            mirror.bare_updates
        );
        for (name, tag, reason) in removals {
            if !is_death(reason) {
                assert!(
                    !self.model.limbo.contains_key(&tag),
                    "{name:?} {tag:?}: an invisible binding removed as {reason:?}"
                );
                continue;
            }
            deaths += 1;
            if reason == Reason::Critical {
                assert!(
                    self.model.pending_critical.remove(&tag),
                    "{name:?} {tag:?} removed as critical, but the model did not condemn it"
                );
                continue;
            }
            let Some(l) = self.model.limbo.remove(&tag) else {
                panic!(
                    "{name:?} {tag:?} removed as {reason:?}, but the model has it {} (now {}, \
                     deadline {:?})",
                    if self.model.tag(&name) == Some(tag) {
                        "visible"
                    } else {
                        "gone already"
                    },
                    self.model.now,
                    self.model.ttls.get(&tag)
                );
            };
            assert_eq!(l.name, name, "{tag:?}");
            let expected = if l.owner.is_some_and(|o| !self.owner_alive(o)) {
                Reason::WeakOwnerDead
            } else {
                Reason::Expired
            };
            assert_eq!(reason, expected, "{name:?} {tag:?} ({l:?}): removal reason");
            if reason == Reason::Expired {
                let d = self.model.ttls.get(&tag).map(|&(_, d)| d);
                assert!(
                    d.is_some_and(|d| d <= self.model.now),
                    "{name:?} {tag:?} removed as expired before its deadline {d:?} (now {})",
                    self.model.now
                );
            }
        }
        assert!(
            self.model.pending_critical.is_empty(),
            "condemned as critical but not removed: {:?}",
            self.model.pending_critical
        );
        Some(deaths)
    }

    /// After an op that surely purges the invisible bindings `which` selects: with events,
    /// checks that it did; without, forgets them.
    fn purged(&mut self, ctx: &dyn Debug, which: impl Fn(&Tag, &Limbo) -> bool) -> Option<usize> {
        let deaths = self.sync();
        if deaths.is_some() {
            if let Some((t, l)) = self.model.limbo.iter().find(|(t, l)| which(t, l)) {
                panic!("{ctx:?}: {l:?} {t:?} still stored");
            }
        } else {
            self.model.limbo.retain(|t, l| !which(t, l));
        }
        deaths
    }

    /// What a keepalive of `(name, tag)` answered (`guard`: through a `Registration` whose
    /// liveness cell is `cell`'s), checked against the model, which learns the new deadline.
    fn kept(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        tag: Tag,
        guard: Option<Tag>,
        actual: Result<Option<Duration>, Error>,
    ) {
        if let Err(e) = &actual {
            check_display(e);
        }
        let now = self.model.now;
        // A pool's names have no TTL: refused whatever the tag.
        if let Some(e) = self.model.pooled(name) {
            assert_eq!(actual, Err(e), "{ctx:?}: keepalive of a pool's name");
            return;
        }
        if validate(name).is_ok() && self.model.tag(name) == Some(tag) {
            let expected = self.model.ttls.get_mut(&tag).map(|(ttl, d)| {
                *d = (*d).max(now + *ttl);
                Duration::from_nanos(*d)
            });
            assert_eq!(actual, Ok(expected), "{ctx:?}: keepalive of a live binding");
            return;
        }
        // Not visible: never renewed. A refusal as for `unregister_if_same`, but for a binding
        // past its deadline that is still stored (`Expired`; it is purged then).
        let refusal = self
            .model
            .expect_plain(name, Some(tag))
            .expect_err("not visible");
        let stored = self.model.limbo.get(&tag).is_some_and(|l| l.name == name);
        let expired = Error::Expired {
            name: name.into(),
            tag,
        };
        let mut allowed = vec![refusal.clone()];
        // A weak binding past its deadline whose owner has died since: the registry cannot
        // tell which came first, and may answer either (it checks the owner first).
        let owner_dead = self
            .model
            .limbo
            .get(&tag)
            .and_then(|l| l.owner)
            .or_else(|| self.model.expired_owner.get(&tag).copied())
            .is_some_and(|o| !self.owner_alive(o));
        if stored && self.model.cell_expired(tag) {
            if self.mirror.is_some() && !owner_dead {
                // The model knows it is still stored.
                allowed = vec![expired.clone()];
            } else {
                // A migration may have purged it unseen.
                allowed.push(expired.clone());
            }
        }
        // A guard whose cell expired says so when the registry no longer finds the binding
        // ("reports Expired also after the binding was removed, if it expired"); when the name
        // was taken since, it says so too (or, as the crate did before, `TagMismatch`). A cell
        // expired only if its binding expired while bound, or is still stored (a dead weak
        // owner's, until purged); a binding removed alive retires its cell.
        if let Some(cell) = guard.filter(|c| self.model.cell_expired(*c)) {
            let known = self.model.expired.contains_key(&cell)
                || (self.mirror.is_some() && self.model.limbo.contains_key(&cell));
            let sure = known && !owner_dead;
            let maybe = known || self.model.limbo.contains_key(&cell);
            match refusal {
                Error::NotFound { .. } if sure => allowed = vec![expired],
                Error::NotFound { .. } | Error::TagMismatch { .. } if maybe => {
                    allowed.push(expired)
                }
                _ => {}
            }
        }
        match &actual {
            Ok(_) => panic!(
                "{ctx:?}: keepalive of {name:?} {tag:?} answered {actual:?}, but it is not \
                 visible (now {now}, deadline {:?}; expected one of {allowed:?})",
                self.model.ttls.get(&tag)
            ),
            Err(e) => assert!(
                allowed.contains(e),
                "{ctx:?}: keepalive of {name:?} {tag:?} answered {e:?}, expected one of \
                 {allowed:?}"
            ),
        }
        if self.mirror.is_none() && stored {
            // Purged now, either way.
            self.model.limbo.remove(&tag);
        }
    }

    fn value(&mut self) -> V {
        self.next_value += 1;
        Arc::new(self.next_value)
    }

    fn learn(&mut self, tag: Tag, instance: Option<InstanceId>, ctx: &dyn Debug) {
        self.model.learn(tag, instance, ctx);
        self.seen.push(tag);
    }

    /// Compares a registration's outcome with the model's expectation and commits it.
    #[allow(clippy::too_many_arguments)]
    fn registered(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        expect: Result<(), Error>,
        instance: Option<InstanceId>,
        mval: MVal,
        passed: &V,
        actual: Result<impl Into<Bound>, Rejected<V>>,
    ) -> Option<Tag> {
        match (actual.map(Into::into), expect) {
            (Ok(bound), Ok(())) => {
                let tag = bound.tag();
                self.learn(tag, instance, ctx);
                if self.mirror.is_none() {
                    // An invisible binding of the name was purged to make room.
                    self.model.limbo.retain(|_, l| l.name != name);
                }
                self.model.map.insert(name.to_owned(), (tag, mval));
                if let Bound::Guard(guard) = bound {
                    assert_eq!(guard.name(), name, "{ctx:?}: guard name");
                    self.guards.push(guard);
                }
                Some(tag)
            }
            (Err(rejected), Err(expected)) => {
                let (err, back) = rejected.into_parts();
                check_display(&err);
                assert_eq!(err, expected, "{ctx:?}: wrong refusal");
                assert!(
                    Arc::ptr_eq(&back, passed),
                    "{ctx:?}: refused value not handed back"
                );
                None
            }
            (actual, expected) => panic!(
                "{ctx:?}: registry answered {:?}, model expected {expected:?}",
                actual.map(|b| b.tag()).map_err(|r| r.into_parts().0)
            ),
        }
    }

    /// The model's auto-naming for `prefix`: the name `register_auto` must use and what it
    /// must answer (the prefix is checked first, with room for any number, and then no number
    /// is used; taken names are skipped).
    fn auto_name(&mut self, prefix: &str) -> (String, Result<(), Error>) {
        if let Err(e) = validate_prefix(prefix) {
            return (prefix.to_owned(), Err(e));
        }
        loop {
            let n = self.model.auto;
            self.model.auto += 1;
            let name = format!("{prefix}-{n}");
            match self.model.expect_register(&name) {
                Err(Error::AlreadyRegistered { .. }) => continue,
                other => return (name, other),
            }
        }
    }

    /// The removal `Result` check shared by `unregister_if_same`, `unregister` and guards.
    fn removed(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        expected: Result<(Tag, u64), Error>,
        actual: Result<(Tag, u64), Error>,
    ) {
        if let Err(e) = &actual {
            check_display(e);
        }
        assert_eq!(actual, expected, "{ctx:?}");
        if actual.is_ok() {
            self.model.map.remove(name);
        }
    }

    /// The check shared by `ensure_registered` and `ensure_registered_weak`: `Existing` exactly
    /// when the model has the name bound to `inst` (with `passed` handed back), else what a
    /// registration must answer.
    fn ensured(
        &mut self,
        op: &Op,
        name: &str,
        inst: InstanceId,
        mval: MVal,
        passed: &V,
        actual: Result<Ensured<V>, Rejected<V>>,
    ) {
        let existing = validate(name)
            .ok()
            .and_then(|()| self.model.tag(name))
            .filter(|t| t.instance() == inst);
        match (actual, existing) {
            (Ok(Ensured::Existing { tag, value }), Some(current)) => {
                assert_eq!(tag, current, "{op:?}: existing tag");
                assert!(Arc::ptr_eq(&value, passed), "{op:?}: value not handed back");
            }
            (Ok(Ensured::Existing { tag, .. }), None) => {
                panic!(
                    "{op:?}: answered Existing({tag:?}), model: {:?}",
                    self.model.tag(name)
                )
            }
            (_, Some(current)) => panic!("{op:?}: did not answer Existing({current:?})"),
            (Ok(Ensured::Registered(g)), None) => {
                let expect = self.model.expect_register(name);
                self.registered(op, name, expect, Some(inst), mval, passed, Ok(g));
            }
            (Err(r), None) => {
                let expect = self.model.expect_register(name);
                self.registered(
                    op,
                    name,
                    expect,
                    Some(inst),
                    mval,
                    passed,
                    Err::<Bound, _>(r),
                );
            }
        }
    }

    /// The weak owner an op names: an existing one, or a new one (kept by the harness).
    fn owner(&mut self, owner: OwnerSel) -> (u64, V) {
        let existing = match owner {
            OwnerSel::Existing(i) => idx(i, self.owners.len()),
            OwnerSel::New => None,
        };
        match existing {
            Some(i) => self.owners[i].clone(),
            None => {
                let o = self.value();
                self.owners.push((*o, o.clone()));
                (*o, o)
            }
        }
    }

    fn replaced(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        tag: Tag,
        n: u64,
        passed: &V,
        actual: Result<Tag, Rejected<V>>,
    ) -> Option<Tag> {
        let expected = self.model.expect_remove(name, Some(tag)).map(|_| ());
        let was_weak = matches!(self.model.map.get(name), Some((_, MVal::Weak { .. })));
        // A refusal of an unbound name is `NotFound`, of a differently bound one `TagMismatch`.
        match (actual, expected) {
            (Ok(new), Ok(())) => {
                self.learn(new, Some(tag.instance()), ctx);
                // A replacement keeps the binding's metadata, TTL, deadline and health.
                if let Some(m) = self.model.metas.get(&tag).cloned() {
                    self.model.metas.insert(new, m);
                }
                if let Some(t) = self.model.ttls.get(&tag).copied() {
                    self.model.ttls.insert(new, t);
                }
                if let Some(h) = self.model.health.get(&tag).copied() {
                    self.model.health.insert(new, h);
                }
                // A replacement of a weak binding stays weak, owned by the value passed: the
                // harness keeps that value as an owner (a later `DropOwner` may kill it).
                let mval = if was_weak {
                    self.owners.push((n, passed.clone()));
                    MVal::Weak { owner: n, value: n }
                } else {
                    MVal::Strong(n)
                };
                self.model.map.insert(name.to_owned(), (new, mval));
                Some(new)
            }
            (Err(rejected), Err(expected)) => {
                let (err, back) = rejected.into_parts();
                check_display(&err);
                assert_eq!(err, expected, "{ctx:?}: wrong refusal");
                assert!(
                    Arc::ptr_eq(&back, passed),
                    "{ctx:?}: refused value not handed back"
                );
                None
            }
            (actual, expected) => panic!(
                "{ctx:?}: registry answered {:?}, model expected {expected:?}",
                actual.map_err(|r| r.into_parts().0)
            ),
        }
    }

    /// Applies one op; `pin`: through this pinned handle where the op has a pinned form.
    fn exec<'p>(&mut self, op: &Op, pin: Option<&'p Pinned<'_, V>>, held: &mut Held<'p>) {
        let reg = self.reg.clone();
        match *op {
            Op::Register { name } => {
                let name = name.get();
                let v = self.value();
                let expect = self.model.expect_register(&name);
                let actual = match pin {
                    Some(p) => p.register(&name, v.clone()),
                    None => reg.register(&name, v.clone()),
                };
                self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual);
            }
            Op::RegisterDetached { name } => {
                let name = name.get();
                let v = self.value();
                let expect = self.model.expect_register(&name);
                let actual = match pin {
                    Some(p) => p.register_detached(&name, v.clone()),
                    None => reg.register_detached(&name, v.clone()),
                };
                self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual);
            }
            Op::RegisterAs { name, inst } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let v = self.value();
                let expect = self.model.expect_register(&name);
                let actual = match pin {
                    Some(p) => p.register_as(&name, inst, v.clone()),
                    None => reg.register_as(&name, inst, v.clone()),
                };
                self.registered(op, &name, expect, Some(inst), MVal::Strong(*v), &v, actual);
            }
            Op::EnsureRegistered { name, inst } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let v = self.value();
                let actual = match pin {
                    Some(p) => p.ensure_registered(&name, inst, v.clone()),
                    None => reg.ensure_registered(&name, inst, v.clone()),
                };
                self.ensured(op, &name, inst, MVal::Strong(*v), &v, actual);
            }
            Op::RegisterAuto { prefix } => {
                let prefix = prefix.get();
                let v = self.value();
                let (name, expect) = self.auto_name(&prefix);
                let actual = match pin {
                    Some(p) => p.register_auto(&prefix, v.clone()),
                    None => reg.register_auto(&prefix, v.clone()),
                };
                if let Ok(g) = &actual {
                    assert_eq!(g.name(), name, "{op:?}: auto name");
                }
                self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual);
            }
            Op::RegisterWeak { name, owner } => {
                let name = name.get();
                let (id, o) = self.owner(owner);
                let expect = self.model.expect_register(&name);
                let actual = reg.register_weak(&name, &o);
                let mval = MVal::Weak {
                    owner: id,
                    value: *o,
                };
                self.registered(op, &name, expect, None, mval, &o, actual);
            }
            Op::RegisterWeakAs { name, inst, owner } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let (id, o) = self.owner(owner);
                let expect = self.model.expect_register(&name);
                let actual = reg.register_weak_as(&name, inst, &o);
                let mval = MVal::Weak {
                    owner: id,
                    value: *o,
                };
                self.registered(op, &name, expect, Some(inst), mval, &o, actual);
            }
            Op::EnsureRegisteredWeak { name, inst, owner } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let (id, o) = self.owner(owner);
                let actual = reg.ensure_registered_weak(&name, inst, &o);
                let mval = MVal::Weak {
                    owner: id,
                    value: *o,
                };
                self.ensured(op, &name, inst, mval, &o, actual);
            }
            Op::Collect => {
                reg.collect();
            }
            Op::DropOwner { owner } => {
                if let Some(i) = idx(owner, self.owners.len()) {
                    let (id, o) = self.owners.swap_remove(i);
                    assert_eq!(
                        Arc::strong_count(&o),
                        1,
                        "{op:?}: something keeps a weak owner alive"
                    );
                    drop(o);
                    let dead: Vec<(String, Tag)> = self
                        .model
                        .map
                        .iter()
                        .filter(|(_, (_, v))| matches!(v, MVal::Weak { owner, .. } if *owner == id))
                        .map(|(n, (t, _))| (n.clone(), *t))
                        .collect();
                    for (name, tag) in dead {
                        self.model.map.remove(&name);
                        let owner = Some(id);
                        self.model.limbo.insert(tag, Limbo { name, owner });
                    }
                }
            }
            Op::Get { name } => {
                let name = name.get();
                let expected = self.model.readable(&name);
                let strong = matches!(self.model.map.get(&name), Some((_, MVal::Strong(_))));
                let actual = match pin {
                    Some(p) => {
                        let r = p.get(&name);
                        let o = r.as_ref().map(obs_ref);
                        if let (Some(r), true) = (r, strong) {
                            held.push((r, o.unwrap()));
                        }
                        o
                    }
                    None => reg.get(&name).map(|e| obs_entry(&e)),
                };
                assert_eq!(actual, expected, "{op:?}");
            }
            Op::Read { name } => {
                let name = name.get();
                let expected = self.model.readable(&name);
                let actual = reg.read(&name, |e| obs_ref(&e));
                assert_eq!(actual, expected, "{op:?}");
            }
            Op::GetIf { name, tag } => {
                let name = name.get();
                let tag = tag.get(self.model.tag(&name), &self.seen);
                let expected = self
                    .model
                    .readable(&name)
                    .filter(|(t, _)| *t == tag)
                    .map(|(_, v)| v);
                assert_eq!(
                    reg.get_if(&name, tag).map(|v| *v),
                    expected,
                    "{op:?} with {tag:?}"
                );
            }
            Op::IsCurrent { name, tag } => {
                let name = name.get();
                let tag = tag.get(self.model.tag(&name), &self.seen);
                let expected = self.model.tag(&name) == Some(tag);
                assert_eq!(reg.is_current(&name, tag), expected, "{op:?} with {tag:?}");
            }
            Op::TagOf { name } => {
                let name = name.get();
                assert_eq!(reg.tag_of(&name), self.model.tag(&name), "{op:?}");
            }
            Op::Contains { name } => {
                let name = name.get();
                let actual = match pin {
                    Some(p) => p.contains(&name),
                    None => reg.contains(&name),
                };
                assert_eq!(actual, self.model.map.contains_key(&name), "{op:?}");
            }
            Op::UnregisterIfSame { name, tag } => {
                let name = name.get();
                let tag = tag.get(self.model.tag(&name), &self.seen);
                let expected = self.model.expect_remove(&name, Some(tag));
                let strong = matches!(self.model.map.get(&name), Some((_, MVal::Strong(_))));
                let actual = match pin {
                    Some(p) => {
                        let r = p.unregister_if_same(&name, tag);
                        let o = r.as_ref().map(obs_ref).map_err(Clone::clone);
                        if let (Ok(r), true) = (r, strong) {
                            held.push((r, *o.as_ref().unwrap()));
                        }
                        o
                    }
                    None => reg.unregister_if_same(&name, tag).map(|e| obs_entry(&e)),
                };
                self.removed(&(op, tag), &name, expected, actual);
            }
            Op::ReplaceIfSame { name, tag } => {
                let name = name.get();
                let tag = tag.get(self.model.tag(&name), &self.seen);
                let v = self.value();
                let actual = match pin {
                    Some(p) => p.replace_if_same(&name, tag, v.clone()),
                    None => reg.replace_if_same(&name, tag, v.clone()),
                };
                self.replaced(&(op, tag), &name, tag, *v, &v, actual);
            }
            Op::Unregister { name } => {
                let name = name.get();
                let expected = self.model.expect_remove(&name, None);
                let strong = matches!(self.model.map.get(&name), Some((_, MVal::Strong(_))));
                let actual = match pin {
                    Some(p) => {
                        let r = p.unregister(&name);
                        let o = r.as_ref().map(obs_ref).map_err(Clone::clone);
                        if let (Ok(r), true) = (r, strong) {
                            held.push((r, *o.as_ref().unwrap()));
                        }
                        o
                    }
                    None => reg.unregister(&name).map(|e| obs_entry(&e)),
                };
                self.removed(op, &name, expected, actual);
            }
            Op::UnregisterInstance { inst } => {
                let inst = inst.get(&self.seen);
                let mut actual = match pin {
                    Some(p) => p.unregister_instance(inst),
                    None => reg.unregister_instance(inst),
                };
                actual.sort();
                let expected: Vec<(String, Tag)> = self
                    .model
                    .map
                    .iter()
                    .filter(|(_, (t, _))| t.instance() == inst)
                    .map(|(n, (t, _))| (n.clone(), *t))
                    .collect();
                assert_eq!(actual, expected, "{op:?} ({inst:?})");
                for (n, _) in expected {
                    self.model.map.remove(&n);
                }
            }
            Op::DropGuard { guard } => {
                if let Some(i) = idx(guard, self.guards.len()) {
                    let g = self.guards.swap_remove(i);
                    if self.model.tag(g.name()) == Some(g.tag()) {
                        self.model.map.remove(g.name());
                    }
                    drop(g);
                }
            }
            Op::DetachGuard { guard } => {
                if let Some(i) = idx(guard, self.guards.len()) {
                    let g = self.guards.swap_remove(i);
                    let tag = g.tag();
                    assert_eq!(g.detach(), tag, "{op:?}");
                }
            }
            Op::GuardReplace { guard } => {
                if let Some(i) = idx(guard, self.guards.len()) {
                    let v = self.value();
                    let mut g = self.guards.swap_remove(i);
                    let (name, tag) = (g.name().to_owned(), g.tag());
                    let actual = g.replace(v.clone());
                    let ok = actual.as_ref().ok().copied();
                    let new = self.replaced(&(op, tag), &name, tag, *v, &v, actual);
                    assert_eq!(ok, new);
                    assert_eq!(
                        g.tag(),
                        new.unwrap_or(tag),
                        "{op:?}: guard tag after replace"
                    );
                    self.guards.push(g);
                }
            }
            Op::GuardUnregister { guard } => {
                if let Some(i) = idx(guard, self.guards.len()) {
                    let g = self.guards.swap_remove(i);
                    let (name, tag) = (g.name().to_owned(), g.tag());
                    let expected = self
                        .model
                        .expect_remove(&name, Some(tag))
                        .map(|(t, _)| (t, 0));
                    let actual = g.unregister().map(|t| (t, 0));
                    self.removed(&(op, tag), &name, expected, actual);
                }
            }
            Op::GuardCheck { guard } => {
                if let Some(i) = idx(guard, self.guards.len()) {
                    let g = &self.guards[i];
                    let mine = self
                        .model
                        .map
                        .get(g.name())
                        .filter(|(t, _)| *t == g.tag())
                        .map(|(t, v)| (*t, v.value()));
                    assert_eq!(g.is_current(), mine.is_some(), "{op:?} {g:?}");
                    assert_eq!(g.get().map(|e| obs_entry(&e)), mine, "{op:?} {g:?}");
                    // Liveness as the guard sees it.
                    let tag = g.tag();
                    let now = self.model.now;
                    if mine.is_some() {
                        assert!(!g.expired(), "{op:?} {g:?}: live, but expired");
                        let left = self
                            .model
                            .ttls
                            .get(&tag)
                            .map(|&(_, d)| Duration::from_nanos(d - now));
                        assert_eq!(g.time_left(), left, "{op:?} {g:?}: time left");
                    } else if self
                        .model
                        .expired_owner
                        .get(&tag)
                        .is_some_and(|o| !self.owner_alive(*o))
                    {
                        // Expired, and its weak owner died since: purged as a dead weak
                        // binding (the registry cannot tell which came first), which retires
                        // its cell; either answer.
                    } else if self.model.expired.contains_key(&tag) {
                        assert!(g.expired(), "{op:?} {g:?}: expired, but does not say so");
                        assert_eq!(g.time_left(), Some(Duration::ZERO), "{op:?} {g:?}");
                    } else if self.model.limbo.contains_key(&tag) {
                        // Invisible for another reason (a dead weak owner) and maybe still
                        // stored: its cell expires at its deadline until it is purged.
                        assert!(
                            !g.expired() || self.model.cell_expired(tag),
                            "{op:?} {g:?}: expired before its deadline"
                        );
                    } else if self.mirror.is_some() {
                        // Removed alive, replaced away, or purged for another reason: its cell
                        // was retired and never says it expired.
                        assert!(!g.expired(), "{op:?} {g:?}: removed alive, yet expired");
                    }
                    assert!(
                        self.seen.contains(&g.tag()),
                        "{op:?}: guard tag never minted"
                    );
                }
            }
            // `len` is O(1) and counts dead weak bindings until they are purged (by a read or
            // write of their name, a migration or `purge_dead`): between the live count and
            // the live count plus the dead ones that may still be stored.
            // `len` is O(1) and counts invisible bindings (dead weak, expired) until they are
            // purged (by a read or write of their name, a migration, `purge_dead` or a reaper):
            // with events the model knows exactly which are stored, without it has a bound.
            Op::Len => {
                let (len, live) = (reg.len(), self.model.map.len());
                let most = live + self.model.dead_maybe();
                if self.mirror.is_some() {
                    assert_eq!(len, most, "{op:?}: len {len}, live {live}, stored {most}");
                } else {
                    assert!(
                        live <= len && len <= most,
                        "{op:?}: len {len}, live {live}, at most {most}"
                    );
                }
            }
            Op::IsEmpty => {
                let (empty, live) = (reg.is_empty(), self.model.map.len());
                assert!(!empty || live == 0, "{op:?}: empty with {live} live");
                if live == 0 && self.model.dead_maybe() == 0 {
                    assert!(empty, "{op:?}");
                }
            }
            Op::Names => {
                let expected = self.model.names();
                assert_eq!(reg.names(), expected, "{op:?}");
            }
            Op::Entries => {
                let actual: Vec<(String, (Tag, u64))> = reg
                    .entries()
                    .iter()
                    .map(|(n, e)| (n.clone(), obs_entry(e)))
                    .collect();
                assert_eq!(actual, self.model_entries(), "{op:?}");
            }
            Op::Clear => {
                let n = match pin {
                    Some(p) => p.clear(),
                    None => reg.clear(),
                };
                assert_eq!(n, self.model.map.len(), "{op:?}");
                self.model.map.clear();
                for p in &mut self.model.pools {
                    p.open = false;
                }
                // Every binding stored is removed, the invisible ones as dead.
                self.purged(op, |_, _| true);
            }
            Op::PurgeDead => {
                let stored = self.model.dead_maybe();
                let n = match pin {
                    Some(p) => p.purge_dead(),
                    None => reg.purge_dead(),
                };
                match self.purged(op, |_, _| true) {
                    // Exactly the invisible bindings stored, each with its event.
                    Some(deaths) => {
                        assert_eq!(n, stored, "{op:?}: purged {n}, {stored} were stored");
                        assert_eq!(n, deaths, "{op:?}: purged {n}, {deaths} removal events");
                    }
                    None => assert!(
                        n <= stored,
                        "{op:?}: purged {n} but at most {stored} invisible bindings exist"
                    ),
                }
            }
            Op::RegisterMeta {
                name,
                meta,
                detached,
            } => {
                let (name, meta) = (name.get(), meta.get());
                let v = self.value();
                let expect = self.model.expect_register(&name);
                let w = reg.with_metadata(meta.clone());
                let tag = if detached {
                    let actual = w.register_detached(&name, v.clone());
                    self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual)
                } else {
                    let actual = w.register(&name, v.clone());
                    self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual)
                };
                if let Some(tag) = tag {
                    self.model.metas.insert(tag, meta);
                }
            }
            Op::RegisterAutoMeta { prefix, meta } => {
                let (prefix, meta) = (prefix.get(), meta.get());
                let v = self.value();
                let (name, expect) = self.auto_name(&prefix);
                let actual = reg
                    .with_metadata(meta.clone())
                    .register_auto(&prefix, v.clone());
                if let Ok(g) = &actual {
                    assert_eq!(g.name(), name, "{op:?}: auto name");
                }
                let mval = MVal::Strong(*v);
                if let Some(tag) = self.registered(op, &name, expect, None, mval, &v, actual) {
                    self.model.metas.insert(tag, meta);
                }
            }
            Op::RegisterWeakMeta { name, owner, meta } => {
                let (name, meta) = (name.get(), meta.get());
                let (id, o) = self.owner(owner);
                let expect = self.model.expect_register(&name);
                let actual = reg.with_metadata(meta.clone()).register_weak(&name, &o);
                let mval = MVal::Weak {
                    owner: id,
                    value: *o,
                };
                if let Some(tag) = self.registered(op, &name, expect, None, mval, &o, actual) {
                    self.model.metas.insert(tag, meta);
                }
            }
            Op::UpdateMetadata { name, tag, meta } => {
                let (name, meta) = (name.get(), meta.get());
                let tag = tag.get(self.model.tag(&name), &self.seen);
                let expected = self.expect_update(&name, tag);
                let actual = reg.update_metadata(&name, tag, meta.clone());
                if let Err(e) = &actual {
                    check_display(e);
                }
                assert_eq!(actual, expected, "{op:?} ({tag:?})");
                if actual.is_ok() {
                    self.model.metas.insert(tag, meta);
                }
            }
            Op::GetMetadata { name } => {
                let name = name.get();
                // A pool's own name has no value, so no metadata.
                let expected = self
                    .model
                    .readable(&name)
                    .map(|(t, _)| (t, self.model.metas.get(&t).cloned()));
                let actual = reg
                    .metadata(&name)
                    .map(|(t, m)| (t, m.map(|m| (*m).clone())));
                assert_eq!(actual, expected, "{op:?}");
            }
            Op::Find { ref query } => {
                let actual = query.run(&reg);
                if query.invalid() {
                    assert!(actual.is_err(), "{op:?}: an invalid query answered");
                    check_display_meta(&actual.unwrap_err());
                } else {
                    let actual: Vec<_> = actual
                        .expect("a valid query")
                        .iter()
                        .map(obs_match)
                        .collect();
                    let expected: Vec<_> = self
                        .model
                        .described()
                        .into_iter()
                        .filter(|(n, _, _, m)| query.accepts(n, m))
                        .filter(|(_, t, _, _)| !query.healthy || self.model.state(*t).is_healthy())
                        .take(query.max())
                        .collect();
                    assert_eq!(actual, expected, "{op:?}");
                }
            }
            Op::BestMatch { ref caps } => {
                let actual = best_match(&reg, caps);
                if caps.iter().take(3).any(|c| !c.valid()) {
                    assert!(actual.is_err(), "{op:?}: an invalid capability answered");
                } else {
                    let actual = actual.expect("valid").map(|m| obs_match(&m));
                    // Most matches, then the least name (`described` is sorted by name).
                    let mut expected = None;
                    let mut best = 0;
                    for d in self.model.described() {
                        let s = score(&d.3, caps);
                        if s > best {
                            best = s;
                            expected = Some(d);
                        }
                    }
                    assert_eq!(actual, expected, "{op:?}");
                }
            }
            Op::RegisterTtl {
                name,
                ttl,
                kind,
                meta,
            } => {
                let name = name.get();
                let meta = meta.map(MetaSel::get);
                // Both orders of chaining.
                let w = match &meta {
                    Some(m) if ttl.0 / 6 % 2 == 0 => reg.with_ttl(ttl.get()).metadata(m.clone()),
                    Some(m) => reg.with_metadata(m.clone()).ttl(ttl.get()),
                    None => reg.with_ttl(ttl.get()),
                };
                let expect = self.model.expect_register(&name);
                let tag = match kind {
                    TtlKind::Guard => {
                        let v = self.value();
                        let actual = w.register(&name, v.clone());
                        if let Ok(g) = &actual {
                            let left = Duration::from_nanos(ttl.nanos());
                            assert_eq!(g.time_left(), Some(left), "{op:?}");
                            assert!(!g.expired(), "{op:?}");
                        }
                        self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual)
                    }
                    TtlKind::Detached => {
                        let v = self.value();
                        let actual = w.register_detached(&name, v.clone());
                        self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual)
                    }
                    TtlKind::Weak(owner) => {
                        let (id, o) = self.owner(owner);
                        let actual = w.register_weak(&name, &o);
                        let mval = MVal::Weak {
                            owner: id,
                            value: *o,
                        };
                        self.registered(op, &name, expect, None, mval, &o, actual)
                    }
                };
                if let Some(tag) = tag {
                    let now = self.model.now;
                    self.model
                        .ttls
                        .insert(tag, (ttl.nanos(), now + ttl.nanos()));
                    if let Some(m) = meta {
                        self.model.metas.insert(tag, m);
                    }
                }
            }
            Op::Keepalive { target } => match target {
                KeepSel::Name { name, tag } => {
                    let name = name.get();
                    let tag = tag.get(self.model.tag(&name), &self.seen);
                    let actual = reg.keepalive(&name, tag);
                    self.kept(&(op, tag), &name, tag, None, actual);
                }
                KeepSel::Guard(i) => {
                    if let Some(i) = idx(i, self.guards.len()) {
                        let g = &self.guards[i];
                        let (name, tag) = (g.name().to_owned(), g.tag());
                        let actual = g.keepalive();
                        self.kept(&(op, tag), &name, tag, Some(tag), actual);
                    }
                }
                KeepSel::Expired(i) => {
                    if let Some(i) = idx(i, self.model.expired.len()) {
                        let (tag, name) = self.model.expired.iter().nth(i).expect("in range");
                        let (tag, name) = (*tag, name.clone());
                        let actual = reg.keepalive(&name, tag);
                        self.kept(&(op, tag), &name, tag, None, actual);
                    }
                }
            },
            Op::AdvanceClock { ticks } => {
                let ticks = u64::from(ticks % 4);
                self.clock.advance(TICK * ticks as u32);
                self.model.now += ticks * TICK_NS;
                self.model.expire();
                assert_eq!(reg.now(), Duration::from_nanos(self.model.now), "{op:?}");
            }
            Op::Reap => {
                // Due: every stored binding past its deadline, and every one critical for the
                // limit (visible ones are condemned; a dead weak one is removed as such).
                let due: Vec<Tag> = self
                    .model
                    .limbo
                    .keys()
                    .filter(|t| self.model.cell_expired(**t) || self.model.critical_due(**t))
                    .copied()
                    .collect();
                let condemn: Vec<(String, Tag)> = self
                    .model
                    .map
                    .iter()
                    .filter(|(_, (t, _))| self.model.critical_due(*t))
                    .map(|(n, (t, _))| (n.clone(), *t))
                    .collect();
                let reaper = self.reaper.get_or_insert_with(|| reg.reaper());
                let n = reaper.reap();
                for (name, tag) in &condemn {
                    self.model.condemn(name, *tag);
                }
                for t in &due {
                    if !self.model.cell_expired(*t) {
                        self.model.condemned.insert(*t);
                    }
                }
                let expected = due.len() + condemn.len();
                // Dead but not due: a migration the reaper helps finish drops them too, and the
                // reaper itself when it meets one on an older schedule.
                let also = self.model.limbo.len() - due.len();
                match self.purged(op, |t, _| due.contains(t)) {
                    // Every binding due is gone, each with its event; the count leaves out what
                    // a migration the reaper helped with dropped (dead bindings not due).
                    Some(deaths) => {
                        assert!(
                            expected <= deaths && deaths <= expected + also,
                            "{op:?}: {deaths} removal events; due: {due:?} {condemn:?}"
                        );
                        assert!(n <= deaths, "{op:?}: reaped {n}, {deaths} removal events");
                    }
                    // A dead binding the reaper meets on an older schedule (a weak one whose
                    // owner died after a keepalive moved its deadline) goes too.
                    None => assert!(
                        condemn.len() <= n && n <= expected + also,
                        "{op:?}: reaped {n}; due: at most {due:?}, surely {condemn:?}"
                    ),
                }
            }
            Op::SetHealth {
                name,
                tag,
                state,
                record,
            } => {
                let (name, state) = (name.get(), state.get());
                let tag = tag.get(self.model.tag(&name), &self.seen);
                let expected = self.model.expect_health(&name, tag);
                let actual = if record {
                    reg.record_health(&name, tag, HealthReport::new(state))
                } else {
                    reg.set_health(&name, tag, state)
                };
                if let Err(e) = &actual {
                    check_display(e);
                }
                assert_eq!(actual, expected, "{op:?} ({tag:?})");
                if actual.is_ok() {
                    self.model.record_health(tag, state, record);
                    if state == HealthState::Critical {
                        // Recorded critical: the reaper is told (if not condemned here).
                        if self.model.critical_due(tag) {
                            self.model.condemn(&name, tag);
                        }
                    }
                }
            }
            Op::GetHealth { name } => {
                let name = name.get();
                assert_eq!(reg.health(&name), self.model.health_of(&name), "{op:?}");
            }
            Op::Pinned { .. } => unreachable!("handled by apply"),
            Op::RegisterPool { .. }
            | Op::UnregisterPool { .. }
            | Op::PoolGuard { .. }
            | Op::Acquire { .. }
            | Op::RegistryAcquire { .. }
            | Op::DropLease { .. }
            | Op::PoolRead { .. }
            | Op::PoolStats { .. }
            | Op::NameCall { .. } => self.exec_pool(op),
        }
    }

    fn model_entries(&self) -> Vec<(String, (Tag, u64))> {
        self.model
            .map
            .keys()
            .filter_map(|n| Some((n.clone(), self.model.readable(n)?)))
            .collect()
    }

    fn exec_pinned<'p>(&mut self, op: &PinnedOp, p: &'p Pinned<'_, V>, held: &mut Held<'p>) {
        match op {
            PinnedOp::Iter => {
                let mut actual = Vec::new();
                for r in p.iter() {
                    let o = obs_ref(&r);
                    actual.push((r.name().to_owned(), o));
                    let strong = matches!(self.model.map.get(r.name()), Some((_, MVal::Strong(_))));
                    if strong {
                        held.push((r, o));
                    }
                }
                actual.sort();
                assert_eq!(actual, self.model_entries(), "{op:?}");
            }
            PinnedOp::Flush | PinnedOp::Repin => p.flush(),
            other => {
                let op = other.as_op().expect("a plain op");
                self.exec(&op, Some(p), held);
            }
        }
    }
}

/// Applies one op to the registry and the model and asserts that they agree.
pub fn apply(h: &mut Harness, op: &Op) {
    match op {
        Op::Pinned { hold, ops } => {
            let reg = h.reg.clone();
            let mut p = reg.pin();
            if *hold {
                // Everything borrowed stays borrowed until the end of the run.
                let mut held: Held<'_> = Vec::new();
                for sub in ops {
                    h.exec_pinned(sub, &p, &mut held);
                    check_invariants(h);
                }
                for (r, o) in &held {
                    assert_eq!(
                        obs_ref(r),
                        *o,
                        "{op:?}: a borrowed entry changed while pinned"
                    );
                }
            } else {
                for sub in ops {
                    if let PinnedOp::Repin = sub {
                        p.repin();
                    } else {
                        let mut held: Held<'_> = Vec::new();
                        h.exec_pinned(sub, &p, &mut held);
                    }
                    check_invariants(h);
                }
            }
        }
        op => h.exec(op, None, &mut Vec::new()),
    }
}

/// The invariants that must hold between any two ops.
pub fn check_invariants(h: &mut Harness) {
    h.sync();
    // `names()` lists every bound name, a pool's own included (as `len()` and `contains`
    // count it); `iter` and `entries` list the names with a value.
    let expected = h.model.names();
    assert_eq!(h.reg.names(), expected, "names() disagrees with the model");
    assert_eq!(h.reg.now(), Duration::from_nanos(h.model.now), "now()");
    // (Invisible bindings are not read here: reads purge what they meet, and the ops that
    // follow should still meet them stored. The ops' own reads check them.)
    if h.model.dead_maybe() == 0 {
        // (`len` purges dead weak bindings first: skip it while some may exist, so that the
        // ops that follow still meet them.)
        let bound = h.model.map.len();
        assert_eq!(h.reg.len(), bound, "len() disagrees with the model");
        assert_eq!(h.reg.is_empty(), bound == 0, "is_empty()");
    }
    for (name, (tag, v)) in &h.model.map {
        let got = h.reg.get(name).map(|e| obs_entry(&e));
        assert_eq!(got, h.model.readable(name), "get({name:?})");
        let _ = v;
        assert!(
            h.reg.is_current(name, *tag),
            "is_current({name:?}, {tag:?})"
        );
    }
    for g in &h.guards {
        let mine = h.model.tag(g.name()) == Some(g.tag());
        assert_eq!(g.is_current(), mine, "{g:?}.is_current()");
    }
    check_pools(h);
    // Discovery: a query with no condition finds exactly the bindings that carry metadata,
    // with their current metadata.
    let found: Vec<_> = h
        .reg
        .find()
        .run()
        .expect("no condition")
        .iter()
        .map(obs_match)
        .collect();
    assert_eq!(
        found,
        h.model.described(),
        "find() disagrees with the model"
    );
    // Replaying the events gives the model's state (so, every change had its event, once, in
    // order).
    // The reads above may have purged dead bindings they met (a probe passes other names'
    // slots): account for those removals before the mirror's own catch-up.
    h.sync();
    if let Some(mirror) = h.mirror.as_mut() {
        let visible = h
            .model
            .map
            .iter()
            .map(|(n, (t, v))| (n.clone(), (*t, v.value())))
            .collect();
        let limbo = &h.model.limbo;
        mirror.check_with(&visible, &|t| limbo.contains_key(t));
    }
}

/// Runs a whole sequence against a fresh registry, checking after every step.
pub fn run_sequential(ops: &[Op], cfg: Config) {
    let mut h = Harness::new(cfg);
    let trace = std::env::var_os("GENREG_MODEL_TRACE").is_some();
    for op in ops {
        if trace {
            eprintln!("op {op:?} (now {})", h.model.now);
        }
        apply(&mut h, op);
        check_invariants(&mut h);
    }
    check_pools(&mut h);
    // Every lease given back: every pool's slots free, releases counted.
    while !h.leases.is_empty() {
        h.drop_lease(0);
    }
    // Dropping a pool guard removes its pool if it is still bound.
    for (g, id) in std::mem::take(&mut h.pool_guards) {
        drop(g);
        if h.model.pools[id].open {
            h.model.close_pool(id);
        }
    }
    check_invariants(&mut h);
    for (i, p) in h.pools.iter().enumerate() {
        assert_eq!(
            p.in_use(),
            0,
            "pool {i}: leases out after every lease dropped"
        );
        let m = &h.model.pools[i];
        assert_eq!(p.stats().releases, m.releases, "pool {i}: releases");
    }
    // Dropping every guard removes exactly the bindings they still own.
    let owned: Vec<String> = h
        .guards
        .iter()
        .filter(|g| h.model.tag(g.name()) == Some(g.tag()))
        .map(|g| g.name().to_owned())
        .collect();
    h.guards.clear();
    for n in owned {
        h.model.map.remove(&n);
    }
    check_invariants(&mut h);
    // Dropping every owner hides every weak binding; purge_dead() removes them.
    h.owners.clear();
    h.model
        .map
        .retain(|_, (_, v)| matches!(v, MVal::Strong(_)) || v.is_pooled());
    // `len` is O(1): dead weak bindings count until purged.
    h.reg.purge_dead();
    assert_eq!(
        h.reg.len(),
        h.model.map.len(),
        "len() after every owner died"
    );
    assert_eq!(h.reg.names(), h.model.names());
}

// ---------------------------------------------------------------------------------------------
// Pools and leases
// ---------------------------------------------------------------------------------------------

/// The `InvalidPool` reasons, as the contract words them.
const NO_MEMBERS: &str = "a pool needs at least one member";
const BAD_MAX: &str = "max_in_flight must be 1 to MAX_IN_FLIGHT";

impl Harness {
    /// What `update_metadata(name, tag, ..)` must answer: members carry metadata like agents;
    /// a pool's own name is refused.
    fn expect_update(&self, name: &str, tag: Tag) -> Result<(), Error> {
        match self.model.map.get(name) {
            Some((_, MVal::Member { .. })) => self.model.expect_plain(name, Some(tag)).map(|_| ()),
            _ => self.model.expect_remove(name, Some(tag)).map(|_| ()),
        }
    }

    /// What `register_pool(name, size members)` must answer: the shape first, then each name
    /// in the order it is bound (the pool's, then its members'), as a registration would.
    fn expect_pool(&self, name: &str, size: usize, max: usize) -> Result<(), Error> {
        let invalid = |reason: &'static str| Error::InvalidPool {
            name: name.into(),
            reason,
        };
        if size == 0 {
            return Err(invalid(NO_MEMBERS));
        }
        if !(1..=genreg::pool::MAX_IN_FLIGHT).contains(&max) {
            return Err(invalid(BAD_MAX));
        }
        let bound = self.model.map.len();
        let names =
            std::iter::once(name.to_owned()).chain((0..size).map(|i| format!("{name}_{i}")));
        // `k` of the pool's names are bound before `n`.
        for (k, n) in names.enumerate() {
            validate(&n)?;
            if let Some(current) = self.model.tag(&n) {
                return Err(Error::AlreadyRegistered {
                    name: n.as_str().into(),
                    current,
                });
            }
            if let Some(capacity) = self.model.max_entries {
                if bound + k >= capacity {
                    return Err(Error::Full {
                        name: n.as_str().into(),
                        capacity,
                    });
                }
            }
        }
        Ok(())
    }

    fn register_pool(&mut self, op: &Op, name: &str, spec: PoolSpec) {
        let reg = self.reg.clone();
        let (size, max, p2c) = (spec.size(), spec.max_in_flight(), spec.power_of_two());
        let values: Vec<V> = (0..size).map(|_| self.value()).collect();
        let expected = self.expect_pool(name, size, max);
        let actual = if spec.plain {
            reg.register_pool(name, values.iter().cloned())
        } else {
            let selection = if p2c {
                genreg::Selection::PowerOfTwo
            } else {
                genreg::Selection::LeastLoaded
            };
            let options = genreg::PoolOptions::new()
                .max_in_flight(max)
                .selection(selection);
            reg.register_pool_with(name, values.iter().cloned(), options)
        };
        match (actual, expected) {
            (Ok(g), Ok(())) => {
                let tag = g.tag();
                self.model.learn(tag, None, &(op, name));
                self.pool_tags.push(tag);
                assert_eq!(g.name(), name, "{op:?}");
                assert_eq!(g.size(), size, "{op:?}");
                assert_eq!(g.max_in_flight(), max, "{op:?}");
                assert!(g.is_open(), "{op:?}");
                let id = self.model.pools.len();
                let mut members = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    let m = format!("{name}_{i}");
                    assert_eq!(g.member_name(i), Some(m.as_str()), "{op:?}");
                    assert!(Arc::ptr_eq(g.member(i).expect("a member"), v), "{op:?}");
                    assert_eq!(g.load(i), Some(0), "{op:?}");
                    let t = reg.tag_of(&m).expect("a member is bound");
                    self.model.learn(t, Some(tag.instance()), &(op, &m));
                    members.push((m, t, **v));
                }
                assert_eq!(g.member(size), None, "{op:?}");
                assert_eq!(g.load(size), None, "{op:?}");
                // Every name bound, each past any invisible binding of it.
                let names: Vec<String> = std::iter::once(name.to_owned())
                    .chain(members.iter().map(|m| m.0.clone()))
                    .collect();
                if self.mirror.is_none() {
                    self.model.limbo.retain(|_, l| !names.contains(&l.name));
                }
                self.model
                    .map
                    .insert(name.to_owned(), (tag, MVal::PoolName { pool: id }));
                for (index, (m, t, v)) in members.iter().enumerate() {
                    let mval = MVal::Member {
                        pool: id,
                        index,
                        value: *v,
                    };
                    self.model.map.insert(m.clone(), (*t, mval));
                }
                self.model.pools.push(MPool {
                    name: name.to_owned(),
                    tag,
                    members,
                    max,
                    power_of_two: p2c && size > 1,
                    open: true,
                    bits: vec![0; size],
                    since: vec![vec![0; max]; size],
                    keys: BTreeMap::new(),
                    allocations: 0,
                    releases: 0,
                    peak: 0,
                });
                let handle: genreg::Pool<V> = (*g).clone();
                self.pools.push(handle);
                if spec.guard {
                    self.pool_guards.push((g, id));
                } else {
                    let p = g.detach();
                    assert_eq!(p.tag(), tag, "{op:?}: detach");
                }
            }
            (Err(rejected), Err(expected)) => {
                let (err, back) = rejected.into_parts();
                check_display(&err);
                assert_eq!(err, expected, "{op:?}: wrong refusal");
                assert_eq!(back.len(), values.len(), "{op:?}: values handed back");
                for (b, v) in back.iter().zip(&values) {
                    assert!(Arc::ptr_eq(b, v), "{op:?}: another value handed back");
                }
            }
            (actual, expected) => panic!(
                "{op:?}: registry answered {:?}, model expected {expected:?}",
                actual.map(|g| g.tag()).map_err(|r| r.into_parts().0)
            ),
        }
    }

    /// Checks a lease asked of pool `id` (`member`: that member; `key`: for that key) against
    /// the model, which takes it.
    fn took(
        &mut self,
        ctx: &dyn Debug,
        id: usize,
        actual: Result<genreg::Lease<'static, V>, Error>,
        member: Option<usize>,
        key: Option<&str>,
    ) {
        let now = self.model.now;
        let p = &self.model.pools[id];
        let n = p.members.len();
        let held = key.and_then(|k| p.keys.get(k).copied());
        let expected: Result<(), Error> = (|| {
            if let Some(k) = key {
                validate(k)?;
            }
            if let Some(i) = member.filter(|&i| i >= n) {
                return Err(Error::NotFound {
                    name: format!("{}_{i}", p.name).as_str().into(),
                });
            }
            if !p.open {
                return Err(Error::NotFound {
                    name: p.name.as_str().into(),
                });
            }
            if held.is_some() {
                return Ok(());
            }
            let full = match member {
                Some(i) => p.load(i) >= p.max,
                None => p.full(),
            };
            if full { Err(p.exhausted()) } else { Ok(()) }
        })();
        let lease = match (actual, expected) {
            (Ok(l), Ok(())) => l,
            (Err(e), Err(x)) => {
                check_display(&e);
                assert_eq!(e, x, "{ctx:?}: wrong refusal (loads {:?})", p.bits);
                return;
            }
            (actual, expected) => panic!(
                "{ctx:?}: answered {:?}, model expected {expected:?} (pool {:?}, loads {:?}, \
                 max {})",
                actual.map(|l| l.index()),
                p.name,
                p.bits,
                p.max
            ),
        };
        let m = lease.index().expect("a member's lease");
        assert!(m < n, "{ctx:?}: member {m} of {n}");
        assert_eq!(lease.pool(), Some(p.name.as_str()), "{ctx:?}");
        assert_eq!(lease.name(), p.members[m].0, "{ctx:?}");
        assert_eq!(lease.tag(), p.members[m].1, "{ctx:?}");
        assert_eq!(**lease, p.members[m].2, "{ctx:?}");
        assert_eq!(lease.key(), key, "{ctx:?}");
        let loads: Vec<usize> = (0..n).map(|i| p.load(i)).collect();
        let p = &mut self.model.pools[id];
        let bit = match (held, member) {
            (Some((hm, hb, _)), _) => {
                // The key's member, sharing its slot.
                assert_eq!(m, hm, "{ctx:?}: key {key:?} holds member {hm}");
                p.keys.get_mut(key.expect("keyed")).expect("held").2 += 1;
                hb
            }
            (None, Some(i)) => {
                assert_eq!(m, i, "{ctx:?}: another member");
                p.take(m, now)
            }
            (None, None) => {
                assert!(loads[m] < p.max, "{ctx:?}: member {m} was full ({loads:?})");
                if !p.power_of_two {
                    let least = loads.iter().copied().min().expect("members");
                    assert_eq!(
                        loads[m], least,
                        "{ctx:?}: least loaded picked member {m} of loads {loads:?}"
                    );
                }
                let bit = p.take(m, now);
                if let Some(k) = key {
                    p.keys.insert(k.to_owned(), (m, bit, 1));
                }
                bit
            }
        };
        let info = MLease::Slot {
            pool: id,
            member: m,
            bit,
            key: key.map(str::to_owned),
        };
        self.leases.push((lease, info));
    }

    /// Drops held lease `i`; the model releases it.
    pub fn drop_lease(&mut self, i: usize) {
        let (lease, info) = self.leases.swap_remove(i);
        drop(lease);
        match info {
            MLease::Slot {
                pool,
                member,
                bit,
                key,
            } => {
                let p = &mut self.model.pools[pool];
                match key {
                    Some(k) => {
                        let hold = p.keys.get_mut(&k).expect("a key's hold");
                        assert_eq!((hold.0, hold.1), (member, bit));
                        hold.2 -= 1;
                        if hold.2 == 0 {
                            p.keys.remove(&k);
                            p.release(member, bit);
                        }
                    }
                    None => p.release(member, bit),
                }
            }
            MLease::Task { tag, .. } => {
                let t = self.model.tasks.get_mut(&tag).expect("a task");
                *t -= 1;
            }
        }
    }

    fn exec_pool(&mut self, op: &Op) {
        let reg = self.reg.clone();
        match *op {
            Op::RegisterPool { name, spec } => {
                let name = name.get();
                self.register_pool(op, &name, spec);
            }
            Op::UnregisterPool { name, tag } => {
                let name = name.get();
                let tag = tag.map(|t| match t {
                    PoolTagSel::Seen(i) if !self.pool_tags.is_empty() => {
                        self.pool_tags[usize::from(i) % self.pool_tags.len()]
                    }
                    PoolTagSel::Seen(i) => Tag::new(
                        InstanceId::from_raw(u64::from(i)),
                        genreg::Generation::from_raw(u64::from(i)),
                    ),
                    PoolTagSel::Forged(i) => {
                        Tag::new(InstanceId::from_raw(i), genreg::Generation::from_raw(i))
                    }
                });
                let expected = self.model.expect_unregister_pool(&name, tag);
                let actual = match tag {
                    None => reg.unregister_pool(&name),
                    Some(t) => reg.unregister_pool_if_same(&name, t),
                };
                if let Err(e) = &actual {
                    check_display(e);
                }
                assert_eq!(actual, expected, "{op:?} ({tag:?})");
                if actual.is_ok() {
                    let Some((_, MVal::PoolName { pool })) = self.model.map.get(&name).copied()
                    else {
                        unreachable!("expected only for a pool");
                    };
                    self.model.close_pool(pool);
                }
            }
            Op::PoolGuard { guard, how } => {
                let Some(i) = idx(guard, self.pool_guards.len()) else {
                    return;
                };
                let (g, id) = self.pool_guards.swap_remove(i);
                let (name, tag) = (g.name().to_owned(), g.tag());
                assert_eq!(tag, self.model.pools[id].tag, "{op:?}");
                match how % 3 {
                    0 => {
                        drop(g);
                        if self.model.pools[id].open {
                            self.model.close_pool(id);
                        }
                    }
                    1 => {
                        let expected = self.model.expect_unregister_pool(&name, Some(tag));
                        let actual = g.unregister();
                        if let Err(e) = &actual {
                            check_display(e);
                        }
                        assert_eq!(actual, expected, "{op:?} ({name:?} {tag:?})");
                        if actual.is_ok() {
                            self.model.close_pool(id);
                        }
                    }
                    _ => {
                        let p = g.detach();
                        assert_eq!(p.tag(), tag, "{op:?}");
                        assert_eq!(p.is_open(), self.model.pools[id].open, "{op:?}");
                    }
                }
            }
            Op::Acquire { pool, how } => {
                let Some(id) = idx(pool, self.pools.len()) else {
                    return;
                };
                let handle = self.pools[id].clone();
                match how {
                    AcquireSel::Any => {
                        let actual = handle.acquire().map(genreg::Lease::into_owned);
                        self.took(op, id, actual, None, None);
                    }
                    AcquireSel::Member(i) => {
                        let i = usize::from(i % 5);
                        let actual = handle.acquire_member(i).map(genreg::Lease::into_owned);
                        self.took(op, id, actual, Some(i), None);
                    }
                    AcquireSel::Key(k) => {
                        let actual = handle.acquire_for(k.get()).map(genreg::Lease::into_owned);
                        self.took(op, id, actual, None, Some(k.get()));
                    }
                }
            }
            Op::RegistryAcquire { name, key } => {
                let name = name.get();
                let key = key.map(KeySel::get);
                let actual = match key {
                    Some(k) => reg.get_or_acquire(&name, k),
                    None => reg.acquire(&name),
                };
                match self.model.map.get(&name).copied() {
                    None => {
                        let expected = validate(&name).and(Err(Error::NotFound {
                            name: name.as_str().into(),
                        }));
                        let actual = actual.map(|l| l.name().to_owned());
                        if let Err(e) = &actual {
                            check_display(e);
                        }
                        assert_eq!(actual, expected.map(|()| String::new()), "{op:?}");
                    }
                    Some((_, MVal::PoolName { pool })) => self.took(op, pool, actual, None, key),
                    Some((_, MVal::Member { pool, index, .. })) => {
                        self.took(op, pool, actual, Some(index), None)
                    }
                    Some((tag, v)) => {
                        let lease = actual.unwrap_or_else(|e| panic!("{op:?}: a task: {e:?}"));
                        assert_eq!(lease.tag(), tag, "{op:?}");
                        assert_eq!(lease.name(), name, "{op:?}");
                        assert_eq!(**lease, v.value(), "{op:?}");
                        assert_eq!(
                            (lease.pool(), lease.index(), lease.key()),
                            (None, None, None)
                        );
                        let tasks = self.model.tasks.entry(tag).or_insert(0);
                        if *tasks == 0 && !self.model.metas.contains_key(&tag) {
                            self.first_tasks.insert(tag);
                        }
                        *tasks += 1;
                        let tasks = *tasks;
                        assert_eq!(reg.load(&name), Some(tasks), "{op:?}: tasks");
                        assert_eq!(reg.available_count(&name), 0, "{op:?}: busy");
                        if matches!(v, MVal::Weak { .. }) {
                            // A lease holds its value: a weak agent's would keep its owner
                            // alive. Ended at once.
                            drop(lease);
                            *self.model.tasks.get_mut(&tag).expect("counted") -= 1;
                        } else {
                            self.leases.push((lease, MLease::Task { name, tag }));
                        }
                    }
                }
            }
            Op::DropLease { lease } => {
                if let Some(i) = idx(lease, self.leases.len()) {
                    self.drop_lease(i);
                }
            }
            Op::PoolRead {
                name,
                other,
                prefix,
            } => {
                let (name, other) = (name.get(), other.get());
                let m = &self.model;
                let kind = m.kind(&name);
                assert_eq!(reg.kind(&name), kind, "{op:?}");
                let is_pool = matches!(kind, Some(genreg::Kind::Pool { .. }));
                assert_eq!(reg.is_pool(&name), is_pool, "{op:?}");
                assert_eq!(
                    reg.pool(&name)
                        .map(|p| (p.name().to_owned(), p.tag(), p.is_open())),
                    is_pool.then(|| (name.clone(), m.tag(&name).expect("bound"), true)),
                    "{op:?}"
                );
                let normal = |n: &str| match m.kind(n) {
                    Some(genreg::Kind::Member { pool, .. }) => pool,
                    _ => n.to_owned(),
                };
                assert_eq!(reg.normalize(&name), normal(&name), "{op:?}");
                assert_eq!(
                    reg.same_logical(&name, &other),
                    normal(&name) == normal(&other),
                    "{op:?}"
                );
                let count = match &kind {
                    Some(genreg::Kind::Pool { members }) => *members,
                    Some(_) => 1,
                    None => 0,
                };
                assert_eq!(reg.instance_count(&name), count, "{op:?}");
                assert_eq!(
                    reg.available_count(&name),
                    m.available_count(&name),
                    "{op:?}"
                );
                assert_eq!(reg.load(&name), m.load(&name), "{op:?}");
                assert_eq!(reg.tag_of(&name), m.tag(&name), "{op:?}");
                let listing: Vec<(String, genreg::Kind)> = m
                    .map
                    .keys()
                    .map(|n| (n.clone(), m.kind(n).expect("bound")))
                    .collect();
                assert_eq!(reg.listing(), listing, "{op:?}");
                let prefix = ["", "p", "p_", "a", "q_"][usize::from(prefix % 5)];
                let expected = m
                    .map
                    .iter()
                    .filter(|(n, (_, v))| {
                        n.starts_with(prefix) && !matches!(v, MVal::PoolName { .. })
                    })
                    .map(|(n, (t, v))| (m.load(n).expect("bound"), n.clone(), (*t, v.value())))
                    .min()
                    .map(|(_, n, o)| (n, o));
                let actual = reg.least_loaded(prefix).map(|(n, e)| (n, obs_entry(&e)));
                assert_eq!(actual, expected, "{op:?} least_loaded({prefix:?})");
            }
            Op::PoolStats { pool, reset } => {
                let Some(id) = idx(pool, self.pools.len()) else {
                    return;
                };
                check_pool(self, id, &format!("{op:?}"));
                if reset {
                    self.pools[id].reset_stats();
                    let p = &mut self.model.pools[id];
                    p.allocations = 0;
                    p.releases = 0;
                    p.peak = p.in_use();
                    check_pool(self, id, &format!("{op:?} after the reset"));
                }
            }
            Op::NameCall { name, tag, what } => {
                let name = name.get();
                let tag = tag.get(self.model.tag(&name), &self.seen);
                match what % 8 {
                    0 => {
                        let v = self.value();
                        let expect = self.model.expect_register(&name);
                        let actual = reg.register(&name, v.clone());
                        self.registered(op, &name, expect, None, MVal::Strong(*v), &v, actual);
                    }
                    1 => {
                        let expected = self.model.expect_remove(&name, None);
                        let actual = reg.unregister(&name).map(|e| obs_entry(&e));
                        self.removed(op, &name, expected, actual);
                    }
                    2 => {
                        let expected = self.model.expect_remove(&name, Some(tag));
                        let actual = reg.unregister_if_same(&name, tag).map(|e| obs_entry(&e));
                        self.removed(&(op, tag), &name, expected, actual);
                    }
                    3 => {
                        let v = self.value();
                        let actual = reg.replace_if_same(&name, tag, v.clone());
                        self.replaced(&(op, tag), &name, tag, *v, &v, actual);
                    }
                    4 => {
                        let actual = reg.get(&name).map(|e| obs_entry(&e));
                        assert_eq!(actual, self.model.readable(&name), "{op:?}");
                        let bound = self.model.map.contains_key(&name);
                        assert_eq!(reg.contains(&name), bound, "{op:?}");
                        let expected = self.model.readable(&name).filter(|(t, _)| *t == tag);
                        assert_eq!(reg.get_if(&name, tag).map(|v| *v), expected.map(|o| o.1));
                    }
                    5 => {
                        let meta = MetaSel {
                            kind: 1,
                            caps: what,
                            region: 1,
                        }
                        .get();
                        let expected = self.expect_update(&name, tag);
                        let actual = reg.update_metadata(&name, tag, meta.clone());
                        if let Err(e) = &actual {
                            check_display(e);
                        }
                        assert_eq!(actual, expected, "{op:?} ({tag:?})");
                        if actual.is_ok() {
                            self.model.metas.insert(tag, meta);
                        }
                    }
                    6 => {
                        let expected = self.model.expect_health(&name, tag);
                        let actual = reg.set_health(&name, tag, HealthState::Passing);
                        if let Err(e) = &actual {
                            check_display(e);
                        }
                        assert_eq!(actual, expected, "{op:?} ({tag:?})");
                        if actual.is_ok() {
                            self.model.record_health(tag, HealthState::Passing, false);
                        }
                    }
                    _ => {
                        let actual = reg.keepalive(&name, tag);
                        self.kept(&(op, tag), &name, tag, None, actual);
                    }
                }
            }
            _ => unreachable!("not a pool op: {op:?}"),
        }
    }
}

/// Checks pool `id`'s handle and statistics against the model.
fn check_pool(h: &Harness, id: usize, ctx: &str) {
    let handle = &h.pools[id];
    let p = &h.model.pools[id];
    let n = p.members.len();
    assert_eq!(handle.is_open(), p.open, "{ctx}: pool {:?} open", p.name);
    assert_eq!(handle.size(), n, "{ctx}");
    for i in 0..n {
        assert_eq!(handle.load(i), Some(p.load(i)), "{ctx}: load of member {i}");
    }
    assert_eq!(handle.in_use(), p.in_use(), "{ctx}: in_use");
    assert_eq!(handle.available(), p.available(), "{ctx}: available");
    let s = handle.stats();
    let actual = (
        s.name.as_str(),
        s.total,
        s.max_in_flight,
        s.available,
        s.in_use,
        s.allocations,
        s.releases,
        s.peak,
        s.waited,
        s.waiting,
        s.average_wait,
    );
    let expected = (
        p.name.as_str(),
        n,
        p.max,
        p.available(),
        p.in_use(),
        p.allocations,
        p.releases,
        Some(p.peak),
        0,
        0,
        Duration::ZERO,
    );
    assert_eq!(actual, expected, "{ctx}: stats of pool {id} ({:?})", p.bits);
    // Every slot held, in member and slot order, with its key and how long it has been held.
    let mut holders = Vec::new();
    for i in 0..n {
        for bit in 0..p.max as u32 {
            if p.bits[i] & (1 << bit) != 0 {
                let key = p
                    .keys
                    .iter()
                    .find(|(_, (m, b, _))| (*m, *b) == (i, bit))
                    .map(|(k, _)| k.clone());
                let held = Duration::from_nanos(h.model.now - p.since[i][bit as usize]);
                holders.push((i, p.members[i].0.clone(), key, Some(held)));
            }
        }
    }
    let actual: Vec<_> = s
        .holders
        .iter()
        .map(|x| (x.member, x.name.clone(), x.key.clone(), x.held_for))
        .collect();
    assert_eq!(actual, holders, "{ctx}: holders of pool {id}");
}

/// The pools' invariants between ops: every handle against the model, and the load of every
/// agent with tasks.
pub fn check_pools(h: &mut Harness) {
    for id in 0..h.pools.len() {
        check_pool(h, id, "between ops");
    }
    for (name, (tag, v)) in &h.model.map {
        if let MVal::Strong(_) | MVal::Weak { .. } = v {
            let tasks = h.model.tasks.get(tag).copied().unwrap_or(0);
            if tasks > 0 {
                assert_eq!(h.reg.load(name), Some(tasks), "load({name:?})");
            }
        }
    }
}
