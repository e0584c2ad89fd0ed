//! Concurrent runs and their consistency check (part of `ops.rs`, which see).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use genreg::liveness::{Clock, ManualClock};
use genreg::{
    Ensured, EntryRef, Error, HealthReport, HealthState, InstanceId, Pinned, Reaper, Reason,
    Registration, Registry, Rejected, Tag,
};

use super::*;

// ---------------------------------------------------------------------------------------------
// Concurrent runs
// ---------------------------------------------------------------------------------------------

/// Input of the `concurrent` fuzz target: `ops` dealt round-robin to the threads.
#[derive(Arbitrary, Debug, Clone)]
pub struct ConcurrentInput {
    /// `2 + threads % 3` threads.
    pub threads: u8,
    /// Each thread runs its share `1 + rounds % 8` times, so that the threads overlap.
    pub rounds: u8,
    pub ops: Vec<Op>,
}

/// What one thread saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new binding (registration, or the new side of a replace).
    Created { name: String, tag: Tag, value: u64 },
    /// A binding this thread removed and was told so (value if reported).
    Removed {
        name: String,
        tag: Tag,
        value: Option<u64>,
    },
    /// A binding replaced away by this thread's successful replace by `new` (`Created` is
    /// logged too).
    ReplacedAway { name: String, tag: Tag, new: Tag },
    /// A binding made mortal by this thread: registered with a TTL (`ttl`), or recorded
    /// critical (so it may be removed as expired, or as critical, unreported).
    Mortal { tag: Tag, ttl: bool },
    /// A binding this thread read (value if reported).
    Observed {
        name: String,
        tag: Tag,
        value: Option<u64>,
    },
}

/// One thread's state.
pub struct Worker {
    guards: Vec<Registration<V>>,
    owners: Vec<V>,
    reg: Registry<V>,
    clock: ManualClock,
    /// The one reaper the threads share (attached at the first `Reap`).
    reaper: Arc<Mutex<Option<Reaper<V>>>>,
    thread: u64,
    next_value: u64,
    last_gen: u64,
    seen: Vec<Tag>,
    pub log: Vec<Event>,
    pub cleared: usize,
    pub guard_drops: usize,
    pub weak_made: usize,
}

impl Worker {
    pub fn new(
        reg: Registry<V>,
        thread: u64,
        clock: ManualClock,
        reaper: Arc<Mutex<Option<Reaper<V>>>>,
    ) -> Self {
        Worker {
            guards: Vec::new(),
            owners: Vec::new(),
            reg,
            clock,
            reaper,
            thread,
            next_value: 0,
            last_gen: 0,
            seen: Vec::new(),
            log: Vec::new(),
            cleared: 0,
            guard_drops: 0,
            weak_made: 0,
        }
    }

    fn value(&mut self) -> V {
        self.next_value += 1;
        Arc::new((self.thread << 48) | self.next_value)
    }

    /// The weak owner an op names: an existing one, or a new one (kept by the harness).
    fn owner(&mut self, owner: OwnerSel) -> V {
        match owner {
            OwnerSel::Existing(i) if !self.owners.is_empty() => {
                self.owners[usize::from(i) % self.owners.len()].clone()
            }
            _ => {
                let o = self.value();
                self.owners.push(o.clone());
                o
            }
        }
    }

    /// A generation this thread got from the registry: above everything it got before.
    fn fresh_tag(&mut self, name: &str, tag: Tag, value: u64, ctx: &dyn Debug) {
        let g = tag.generation().as_raw();
        assert!(
            g > self.last_gen,
            "{ctx:?}: generation {g} not above {} (same thread)",
            self.last_gen
        );
        self.last_gen = g;
        self.seen.push(tag);
        self.log.push(Event::Created {
            name: name.to_owned(),
            tag,
            value,
        });
    }

    fn observe(&mut self, name: &str, tag: Tag, value: Option<u64>) {
        self.seen.push(tag);
        self.log.push(Event::Observed {
            name: name.to_owned(),
            tag,
            value,
        });
    }

    fn removed(&mut self, name: &str, tag: Tag, value: Option<u64>) {
        self.log.push(Event::Removed {
            name: name.to_owned(),
            tag,
            value,
        });
    }

    /// A refusal with a reason consistent with what can be known without a model.
    fn refusal(&mut self, ctx: &dyn Debug, name: &str, err: &Error) {
        check_display(err);
        match (validate(name), err) {
            (Err(expected), _) => assert_eq!(*err, expected, "{ctx:?}"),
            (Ok(()), Error::InvalidName { .. }) => panic!("{ctx:?}: valid name refused: {err:?}"),
            (Ok(()), Error::AlreadyRegistered { name: n, current })
            | (
                Ok(()),
                Error::TagMismatch {
                    name: n, current, ..
                },
            ) => {
                assert_eq!(n, name, "{ctx:?}");
                self.observe(name, *current, None);
            }
            (Ok(()), Error::NotFound { name: n }) => assert_eq!(n, name, "{ctx:?}"),
            _ => {}
        }
    }

    fn registered(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        inst: Option<InstanceId>,
        value: u64,
        passed: &V,
        r: Result<impl Into<Bound>, Rejected<V>>,
    ) {
        match r.map(Into::into) {
            Ok(bound) => {
                let tag = bound.tag();
                assert!(validate(name).is_ok(), "{ctx:?}: invalid name bound");
                if let Some(i) = inst {
                    assert_eq!(tag.instance(), i, "{ctx:?}");
                }
                self.fresh_tag(name, tag, value, ctx);
                if let Bound::Guard(g) = bound {
                    assert_eq!(g.name(), name, "{ctx:?}");
                    self.guards.push(g);
                }
            }
            Err(rej) => {
                let (err, back) = rej.into_parts();
                assert!(
                    Arc::ptr_eq(&back, passed),
                    "{ctx:?}: refused value not handed back"
                );
                assert!(
                    matches!(
                        err,
                        Error::AlreadyRegistered { .. }
                            | Error::InvalidName { .. }
                            | Error::Full { .. }
                    ),
                    "{ctx:?}: {err:?}"
                );
                self.refusal(ctx, name, &err);
            }
        }
    }

    /// What a keepalive of `(name, tag)` answered, started at `t0` on the clock: a renewal
    /// only of a binding alive at the call (its deadline after `t0`), else a refusal naming it.
    fn kept(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        tag: Tag,
        t0: Duration,
        r: Result<Option<Duration>, Error>,
    ) {
        match r {
            Ok(deadline) => {
                assert!(
                    deadline.is_none_or(|d| d > t0),
                    "{ctx:?}: renewed {name:?} {tag:?} to {deadline:?}, not after {t0:?}"
                );
                self.observe(name, tag, None);
            }
            Err(Error::Expired { name: n, tag: t }) => {
                assert_eq!((n.as_str(), t), (name, tag), "{ctx:?}");
            }
            Err(e) => {
                if let Error::TagMismatch {
                    expected, current, ..
                } = &e
                {
                    assert_eq!(*expected, tag, "{ctx:?}");
                    assert_ne!(*current, tag, "{ctx:?}: mismatch on the same tag");
                }
                self.refusal(ctx, name, &e);
            }
        }
    }

    fn mortal(&mut self, tag: Tag, ttl: bool) {
        self.log.push(Event::Mortal { tag, ttl });
    }

    fn current(&self, name: &str, sel: TagSel) -> Tag {
        sel.get(self.reg.tag_of(name), &self.seen)
    }

    fn exec<'p>(&mut self, op: &Op, pin: Option<&'p Pinned<'_, V>>, held: &mut Held<'p>) {
        let reg = self.reg.clone();
        match *op {
            Op::Register { name } => {
                let name = name.get();
                let v = self.value();
                let r = match pin {
                    Some(p) => p.register(&name, v.clone()),
                    None => reg.register(&name, v.clone()),
                };
                self.registered(op, &name, None, *v, &v, r);
            }
            Op::RegisterDetached { name } => {
                let name = name.get();
                let v = self.value();
                let r = match pin {
                    Some(p) => p.register_detached(&name, v.clone()),
                    None => reg.register_detached(&name, v.clone()),
                };
                self.registered(op, &name, None, *v, &v, r);
            }
            Op::RegisterAs { name, inst } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let v = self.value();
                let r = match pin {
                    Some(p) => p.register_as(&name, inst, v.clone()),
                    None => reg.register_as(&name, inst, v.clone()),
                };
                self.registered(op, &name, Some(inst), *v, &v, r);
            }
            Op::EnsureRegistered { name, inst } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let v = self.value();
                let r = match pin {
                    Some(p) => p.ensure_registered(&name, inst, v.clone()),
                    None => reg.ensure_registered(&name, inst, v.clone()),
                };
                match r {
                    Ok(Ensured::Existing { tag: t, .. }) => {
                        assert_eq!(t.instance(), inst, "{op:?}");
                        self.observe(&name, t, None);
                    }
                    Ok(Ensured::Registered(g)) => {
                        self.registered(op, &name, Some(inst), *v, &v, Ok(g))
                    }
                    Err(rej) => {
                        if let Error::AlreadyRegistered { current, .. } = rej.error() {
                            assert_ne!(current.instance(), inst, "{op:?}: own binding refused");
                        }
                        self.registered(op, &name, Some(inst), *v, &v, Err::<Bound, _>(rej));
                    }
                }
            }
            Op::RegisterAuto { prefix } => {
                let prefix = prefix.get();
                let v = self.value();
                let r = match pin {
                    Some(p) => p.register_auto(&prefix, v.clone()),
                    None => reg.register_auto(&prefix, v.clone()),
                };
                let name = match &r {
                    Ok(g) => g.name().to_owned(),
                    Err(rej) => {
                        // Refused up front, for the prefix, with no number used; or the
                        // registry holds its bound.
                        if !matches!(rej.error(), Error::Full { .. }) {
                            let expected = validate_prefix(&prefix).expect_err("only a bad prefix");
                            assert_eq!(rej.error(), &expected, "{op:?}");
                        }
                        let (_, back) = r.unwrap_err().into_parts();
                        assert!(Arc::ptr_eq(&back, &v), "{op:?}: value not handed back");
                        return;
                    }
                };
                let n = name
                    .strip_prefix(&format!("{prefix}-"))
                    .unwrap_or_else(|| panic!("{op:?}: auto name {name:?}"));
                assert!(
                    n.parse::<u64>().is_ok_and(|n| n > 0),
                    "{op:?}: auto name {name:?}"
                );
                self.registered(op, &name, None, *v, &v, r);
            }
            Op::RegisterWeak { name, owner } => {
                let name = name.get();
                let o = self.owner(owner);
                let r = reg.register_weak(&name, &o);
                if r.is_ok() {
                    self.weak_made += 1;
                }
                self.registered(op, &name, None, *o, &o, r);
            }
            Op::RegisterWeakAs { name, inst, owner } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let o = self.owner(owner);
                let r = reg.register_weak_as(&name, inst, &o);
                if r.is_ok() {
                    self.weak_made += 1;
                }
                self.registered(op, &name, Some(inst), *o, &o, r);
            }
            Op::EnsureRegisteredWeak { name, inst, owner } => {
                let name = name.get();
                let inst = inst.get(&self.seen);
                let o = self.owner(owner);
                match reg.ensure_registered_weak(&name, inst, &o) {
                    Ok(Ensured::Existing { tag, value }) => {
                        assert_eq!(tag.instance(), inst, "{op:?}");
                        assert!(Arc::ptr_eq(&value, &o), "{op:?}: owner not handed back");
                        self.observe(&name, tag, None);
                    }
                    Ok(Ensured::Registered(g)) => {
                        self.weak_made += 1;
                        self.registered(op, &name, Some(inst), *o, &o, Ok(g))
                    }
                    Err(rej) => {
                        if let Error::AlreadyRegistered { current, .. } = rej.error() {
                            assert_ne!(current.instance(), inst, "{op:?}: own binding refused");
                        }
                        self.registered(op, &name, Some(inst), *o, &o, Err::<Bound, _>(rej));
                    }
                }
            }
            Op::Collect => {
                reg.collect();
            }
            Op::DropOwner { owner } => {
                if !self.owners.is_empty() {
                    let i = usize::from(owner) % self.owners.len();
                    drop(self.owners.swap_remove(i));
                }
            }
            Op::Get { name } => {
                let name = name.get();
                let got = match pin {
                    Some(p) => p.get(&name).map(|r| {
                        let o = obs_ref(&r);
                        held.push((r, o));
                        o
                    }),
                    None => reg.get(&name).map(|e| obs_entry(&e)),
                };
                if let Some((t, v)) = got {
                    self.observe(&name, t, Some(v));
                }
            }
            Op::Read { name } => {
                let name = name.get();
                if let Some((t, v)) = reg.read(&name, |e| obs_ref(&e)) {
                    self.observe(&name, t, Some(v));
                }
            }
            Op::GetIf { name, tag } => {
                let name = name.get();
                let tag = self.current(&name, tag);
                if let Some(v) = reg.get_if(&name, tag) {
                    self.observe(&name, tag, Some(*v));
                }
            }
            Op::IsCurrent { name, tag } => {
                let name = name.get();
                let tag = self.current(&name, tag);
                if reg.is_current(&name, tag) {
                    self.observe(&name, tag, None);
                }
            }
            Op::TagOf { name } => {
                let name = name.get();
                if let Some(t) = reg.tag_of(&name) {
                    self.observe(&name, t, None);
                }
            }
            Op::Contains { name } => {
                let name = name.get();
                let c = match pin {
                    Some(p) => p.contains(&name),
                    None => reg.contains(&name),
                };
                assert!(
                    !c || validate(&name).is_ok(),
                    "{op:?}: an invalid name is bound"
                );
            }
            Op::UnregisterIfSame { name, tag } => {
                let name = name.get();
                let tag = self.current(&name, tag);
                let r = match pin {
                    Some(p) => p.unregister_if_same(&name, tag).map(|r| {
                        let o = obs_ref(&r);
                        held.push((r, o));
                        o
                    }),
                    None => reg.unregister_if_same(&name, tag).map(|e| obs_entry(&e)),
                };
                match r {
                    Ok((t, v)) => {
                        assert_eq!(t, tag, "{op:?}: removed a binding with another tag");
                        self.removed(&name, t, Some(v));
                    }
                    Err(e) => {
                        if let Error::TagMismatch {
                            expected, current, ..
                        } = &e
                        {
                            assert_eq!(*expected, tag, "{op:?}");
                            assert_ne!(*current, tag, "{op:?}: mismatch on the same tag");
                        }
                        self.refusal(op, &name, &e);
                    }
                }
            }
            Op::ReplaceIfSame { name, tag } => {
                let name = name.get();
                let tag = self.current(&name, tag);
                let v = self.value();
                let r = match pin {
                    Some(p) => p.replace_if_same(&name, tag, v.clone()),
                    None => reg.replace_if_same(&name, tag, v.clone()),
                };
                self.replaced(op, &name, tag, &v, r);
            }
            Op::Unregister { name } => {
                let name = name.get();
                let r = match pin {
                    Some(p) => p.unregister(&name).map(|r| {
                        let o = obs_ref(&r);
                        held.push((r, o));
                        o
                    }),
                    None => reg.unregister(&name).map(|e| obs_entry(&e)),
                };
                match r {
                    Ok((t, v)) => self.removed(&name, t, Some(v)),
                    Err(e) => {
                        assert!(!matches!(e, Error::TagMismatch { .. }), "{op:?}: {e:?}");
                        self.refusal(op, &name, &e);
                    }
                }
            }
            Op::UnregisterInstance { inst } => {
                let inst = inst.get(&self.seen);
                let removed = match pin {
                    Some(p) => p.unregister_instance(inst),
                    None => reg.unregister_instance(inst),
                };
                for (name, tag) in removed {
                    assert_eq!(tag.instance(), inst, "{op:?}");
                    self.removed(&name, tag, None);
                }
            }
            Op::DropGuard { guard } => {
                if !self.guards.is_empty() {
                    let i = usize::from(guard) % self.guards.len();
                    drop(self.guards.swap_remove(i));
                    self.guard_drops += 1;
                }
            }
            Op::DetachGuard { guard } => {
                if !self.guards.is_empty() {
                    let g = self
                        .guards
                        .swap_remove(usize::from(guard) % self.guards.len());
                    let t = g.tag();
                    assert_eq!(g.detach(), t, "{op:?}");
                }
            }
            Op::GuardReplace { guard } => {
                if !self.guards.is_empty() {
                    let i = usize::from(guard) % self.guards.len();
                    let v = self.value();
                    let (name, tag) = (self.guards[i].name().to_owned(), self.guards[i].tag());
                    let r = self.guards[i].replace(v.clone());
                    let new = self.replaced(op, &name, tag, &v, r);
                    assert_eq!(self.guards[i].tag(), new.unwrap_or(tag), "{op:?}");
                }
            }
            Op::GuardUnregister { guard } => {
                if !self.guards.is_empty() {
                    let g = self
                        .guards
                        .swap_remove(usize::from(guard) % self.guards.len());
                    let (name, tag) = (g.name().to_owned(), g.tag());
                    match g.unregister() {
                        Ok(t) => {
                            assert_eq!(t, tag, "{op:?}");
                            self.removed(&name, t, None);
                        }
                        Err(e) => {
                            assert!(
                                matches!(&e, Error::NotFound { .. })
                                    || matches!(&e, Error::TagMismatch { current, .. } if *current != tag),
                                "{op:?}: {e:?}"
                            );
                            self.refusal(op, &name, &e);
                        }
                    }
                }
            }
            Op::GuardCheck { guard } => {
                if !self.guards.is_empty() {
                    let i = usize::from(guard) % self.guards.len();
                    let (name, tag) = (self.guards[i].name().to_owned(), self.guards[i].tag());
                    let _ = self.guards[i].is_current();
                    if let Some(e) = self.guards[i].get() {
                        assert_eq!(e.tag(), tag, "{op:?}");
                        self.observe(&name, tag, Some(**e.value()));
                    }
                }
            }
            Op::Len => {
                let _ = reg.len();
            }
            Op::IsEmpty => {
                let _ = reg.is_empty();
            }
            Op::Names => {
                let names = reg.names();
                assert!(
                    names.windows(2).all(|w| w[0] < w[1]),
                    "{op:?}: names() not sorted/unique"
                );
                assert!(
                    names.iter().all(|n| validate(n).is_ok()),
                    "{op:?}: invalid name listed"
                );
            }
            Op::Entries => {
                for (name, e) in reg.entries() {
                    self.observe(&name, e.tag(), Some(**e.value()));
                }
            }
            Op::Clear => {
                self.cleared += match pin {
                    Some(p) => p.clear(),
                    None => reg.clear(),
                };
            }
            Op::PurgeDead => {
                let _ = match pin {
                    Some(p) => p.purge_dead(),
                    None => reg.purge_dead(),
                };
            }
            Op::RegisterMeta {
                name,
                meta,
                detached,
            } => {
                let name = name.get();
                let v = self.value();
                let w = reg.with_metadata(meta.get());
                if detached {
                    let r = w.register_detached(&name, v.clone());
                    self.registered(op, &name, None, *v, &v, r);
                } else {
                    let r = w.register(&name, v.clone());
                    self.registered(op, &name, None, *v, &v, r);
                }
            }
            Op::RegisterAutoMeta { prefix, meta } => {
                let prefix = prefix.get();
                let v = self.value();
                match reg
                    .with_metadata(meta.get())
                    .register_auto(&prefix, v.clone())
                {
                    Ok(g) => {
                        let name = g.name().to_owned();
                        assert!(name.starts_with(&format!("{prefix}-")), "{op:?}: {name:?}");
                        self.registered(op, &name, None, *v, &v, Ok(g));
                    }
                    Err(rej) if matches!(rej.error(), Error::Full { .. }) => {}
                    Err(rej) => {
                        let expected = validate_prefix(&prefix).expect_err("only a bad prefix");
                        assert_eq!(rej.error(), &expected, "{op:?}");
                    }
                }
            }
            Op::RegisterWeakMeta { name, owner, meta } => {
                let name = name.get();
                let o = self.owner(owner);
                let r = reg.with_metadata(meta.get()).register_weak(&name, &o);
                if r.is_ok() {
                    self.weak_made += 1;
                }
                self.registered(op, &name, None, *o, &o, r);
            }
            Op::UpdateMetadata { name, tag, meta } => {
                let name = name.get();
                let tag = self.current(&name, tag);
                match reg.update_metadata(&name, tag, meta.get()) {
                    // The binding was there, with that tag, at the update.
                    Ok(()) => self.observe(&name, tag, None),
                    Err(e) => self.refusal(op, &name, &e),
                }
            }
            Op::GetMetadata { name } => {
                let name = name.get();
                if let Some((tag, _)) = reg.metadata(&name) {
                    self.observe(&name, tag, None);
                }
            }
            Op::Find { ref query } => match query.run(&reg) {
                Ok(found) => {
                    assert!(!query.invalid(), "{op:?}: an invalid query answered");
                    assert!(found.len() <= query.max(), "{op:?}: over the limit");
                    assert!(
                        found.windows(2).all(|w| w[0].name < w[1].name),
                        "{op:?}: not sorted by name, or a name twice"
                    );
                    for m in &found {
                        // Every result matches, as the metadata it comes with says.
                        assert!(query.accepts(&m.name, &m.metadata), "{op:?}: {m:?}");
                        self.observe(&m.name, m.tag, Some(*m.value));
                    }
                }
                Err(e) => {
                    assert!(query.invalid(), "{op:?}: a valid query refused: {e}");
                }
            },
            Op::BestMatch { ref caps } => match best_match(&reg, caps) {
                Ok(Some(m)) => {
                    assert!(score(&m.metadata, caps) > 0, "{op:?}: {m:?}");
                    self.observe(&m.name, m.tag, Some(*m.value));
                }
                Ok(None) => {}
                Err(_) => assert!(
                    caps.iter().take(3).any(|c| !c.valid()),
                    "{op:?}: valid capabilities refused"
                ),
            },
            Op::RegisterTtl {
                name,
                ttl,
                kind,
                meta,
            } => {
                let name = name.get();
                let w = match meta {
                    Some(m) => reg.with_ttl(ttl.get()).metadata(m.get()),
                    None => reg.with_ttl(ttl.get()),
                };
                let tag = match kind {
                    TtlKind::Guard => {
                        let v = self.value();
                        let r = w.register(&name, v.clone());
                        let tag = r.as_ref().ok().map(|g| g.tag());
                        self.registered(op, &name, None, *v, &v, r);
                        tag
                    }
                    TtlKind::Detached => {
                        let v = self.value();
                        let r = w.register_detached(&name, v.clone());
                        let tag = r.as_ref().ok().copied();
                        self.registered(op, &name, None, *v, &v, r);
                        tag
                    }
                    TtlKind::Weak(owner) => {
                        let o = self.owner(owner);
                        let r = w.register_weak(&name, &o);
                        let tag = r.as_ref().ok().map(|g| g.tag());
                        if r.is_ok() {
                            self.weak_made += 1;
                        }
                        self.registered(op, &name, None, *o, &o, r);
                        tag
                    }
                };
                if let Some(tag) = tag {
                    self.mortal(tag, true);
                }
            }
            Op::Keepalive { target } => match target {
                KeepSel::Name { name, tag } => {
                    let name = name.get();
                    let tag = self.current(&name, tag);
                    let t0 = self.clock.now();
                    let r = reg.keepalive(&name, tag);
                    self.kept(op, &name, tag, t0, r);
                }
                KeepSel::Guard(i) | KeepSel::Expired(i) => {
                    if let Some(i) = idx(i, self.guards.len()) {
                        let (name, tag) = (self.guards[i].name().to_owned(), self.guards[i].tag());
                        let t0 = self.clock.now();
                        let r = self.guards[i].keepalive();
                        self.kept(op, &name, tag, t0, r);
                    }
                }
            },
            Op::AdvanceClock { ticks } => {
                self.clock.advance(TICK * u32::from(ticks % 4));
            }
            Op::Reap => {
                let mut reaper = self.reaper.lock().unwrap_or_else(|p| p.into_inner());
                reaper.get_or_insert_with(|| reg.reaper()).reap();
            }
            Op::SetHealth {
                name,
                tag,
                state,
                record,
            } => {
                let (name, state) = (name.get(), state.get());
                let tag = self.current(&name, tag);
                let r = if record {
                    reg.record_health(&name, tag, HealthReport::new(state))
                } else {
                    reg.set_health(&name, tag, state)
                };
                match r {
                    Ok(()) => {
                        self.observe(&name, tag, None);
                        if state == HealthState::Critical {
                            self.mortal(tag, false);
                        }
                    }
                    Err(e) => {
                        if let Error::TagMismatch {
                            expected, current, ..
                        } = &e
                        {
                            assert_eq!(*expected, tag, "{op:?}");
                            assert_ne!(*current, tag, "{op:?}: mismatch on the same tag");
                        }
                        self.refusal(op, &name, &e);
                    }
                }
            }
            Op::GetHealth { name } => {
                let name = name.get();
                if let Some(h) = reg.health(&name) {
                    self.observe(&name, h.tag, None);
                    assert_eq!(
                        h.since.is_some(),
                        h.state != HealthState::Unknown,
                        "{op:?}: {h:?}"
                    );
                    let t1 = self.clock.now();
                    assert!(
                        h.since.is_none_or(|s| s <= t1),
                        "{op:?}: {h:?} after {t1:?}"
                    );
                    if let Some(r) = &h.last_check {
                        assert!(r.checked_at <= t1, "{op:?}: {h:?}");
                    }
                }
            }
            Op::Pinned { .. } => unreachable!("handled by apply"),
            // Pools and leases are checked by the sequential model (`sequential.rs`); their
            // names would make the refusals this check derives from agents' tags ambiguous.
            Op::RegisterPool { .. }
            | Op::UnregisterPool { .. }
            | Op::PoolGuard { .. }
            | Op::Acquire { .. }
            | Op::RegistryAcquire { .. }
            | Op::DropLease { .. }
            | Op::PoolRead { .. }
            | Op::PoolStats { .. }
            | Op::NameCall { .. } => {}
        }
    }

    fn replaced(
        &mut self,
        ctx: &dyn Debug,
        name: &str,
        tag: Tag,
        v: &V,
        r: Result<Tag, Rejected<V>>,
    ) -> Option<Tag> {
        match r {
            Ok(new) => {
                assert_eq!(
                    new.instance(),
                    tag.instance(),
                    "{ctx:?}: replace changed the instance"
                );
                self.log.push(Event::ReplacedAway {
                    name: name.to_owned(),
                    tag,
                    new,
                });
                self.fresh_tag(name, new, **v, ctx);
                Some(new)
            }
            Err(rej) => {
                let (err, back) = rej.into_parts();
                assert!(
                    Arc::ptr_eq(&back, v),
                    "{ctx:?}: refused value not handed back"
                );
                if let Error::TagMismatch {
                    expected, current, ..
                } = &err
                {
                    assert_eq!(*expected, tag, "{ctx:?}");
                    assert_ne!(*current, tag, "{ctx:?}: mismatch on the same tag");
                }
                assert!(
                    !matches!(err, Error::AlreadyRegistered { .. }),
                    "{ctx:?}: {err:?}"
                );
                self.refusal(ctx, name, &err);
                None
            }
        }
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Pinned { hold, ops } => {
                let reg = self.reg.clone();
                let mut p = reg.pin();
                if *hold {
                    let mut held = Vec::new();
                    for sub in ops {
                        self.exec_pinned(sub, &p, &mut held);
                    }
                    // Borrowed entries stay readable and unchanged while pinned, even if removed
                    // (and their memory retired) by another thread meanwhile.
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
                            let mut held = Vec::new();
                            self.exec_pinned(sub, &p, &mut held);
                        }
                    }
                }
            }
            op => self.exec(op, None, &mut Vec::new()),
        }
    }

    fn exec_pinned<'p>(&mut self, op: &PinnedOp, p: &'p Pinned<'_, V>, held: &mut Held<'p>) {
        match op {
            PinnedOp::Iter => {
                for r in p.iter() {
                    let o = obs_ref(&r);
                    self.observe(r.name(), o.0, Some(o.1));
                    held.push((r, o));
                }
            }
            PinnedOp::Flush | PinnedOp::Repin => p.flush(),
            other => {
                let op = other.as_op().expect("a plain op");
                self.exec(&op, Some(p), held);
            }
        }
    }

    /// Ends the thread's part: drops every guard (each may remove its binding) and owner.
    pub fn finish(mut self) -> Finished {
        self.guard_drops += self.guards.len();
        self.guards.clear();
        self.owners.clear();
        Finished {
            log: std::mem::take(&mut self.log),
            cleared: self.cleared,
            guard_drops: self.guard_drops,
            weak_made: self.weak_made,
        }
    }
}

/// What a thread hands back after the join.
#[derive(Debug)]
pub struct Finished {
    pub log: Vec<Event>,
    pub cleared: usize,
    pub guard_drops: usize,
    pub weak_made: usize,
}

/// Splits `input.ops` over 2-4 threads on one registry, then checks consistency.
pub fn run_concurrent(input: &ConcurrentInput, cfg: Config) {
    let threads = 2 + usize::from(input.threads % 3);
    let rounds = 1 + input.rounds % 8;
    let (reg, clock) = build_registry(cfg);
    let reaper = Arc::new(Mutex::new(None));
    let mut mirror = EventMirror::new(&reg);
    let barrier = Barrier::new(threads);
    let finished: Vec<Finished> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let reg = reg.clone();
                let (clock, reaper) = (clock.clone(), Arc::clone(&reaper));
                let barrier = &barrier;
                let ops: Vec<&Op> = input.ops.iter().skip(t).step_by(threads).collect();
                s.spawn(move || {
                    let mut w = Worker::new(reg, t as u64 + 1, clock, reaper);
                    barrier.wait();
                    for _ in 0..rounds {
                        for op in &ops {
                            w.apply(op);
                        }
                    }
                    w.finish()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    // Quiescent: never more live bindings than the bound (dead weak ones purged first).
    if let Some(n) = cfg.max_entries {
        reg.purge_dead();
        assert!(
            reg.len() <= n,
            "{} bindings under a bound of {n}",
            reg.len()
        );
    }
    drop(reaper);
    // Quiescent, and the clock stands still: purge what expired (or whose owner died), so that
    // the stored bindings are the visible ones.
    reg.purge_dead();
    // Every removal the registry made of its own accord is of a binding that could die so:
    // as expired, only one registered with a TTL (or a replacement of one); as critical, only
    // one recorded critical (or a replacement of one).
    let (ttl, critical) = mortals(&finished);
    if let Some(mirror) = mirror.as_mut() {
        for (name, tag, reason) in mirror.catch_up() {
            match reason {
                Reason::Expired => assert!(
                    ttl.contains(&tag),
                    "{name:?} {tag:?} removed as expired, but it had no TTL"
                ),
                Reason::Critical => assert!(
                    critical.contains(&tag),
                    "{name:?} {tag:?} removed as critical, but never recorded critical"
                ),
                _ => {}
            }
        }
    }
    // Quiescent: a watcher's replay equals the final state.
    if let Some(mirror) = mirror.as_mut() {
        let visible = reg
            .entries()
            .into_iter()
            .map(|(n, e)| (n, (e.tag(), **e.value())))
            .collect();
        mirror.check(&visible);
    }
    check_concurrent(&reg, &finished);
    if let Some(mirror) = mirror.as_mut() {
        // check_concurrent removed everything: so do the events.
        mirror.check(&Default::default());
    }
}

/// The bindings that could die of liveness: (with a TTL, recorded critical), each with the
/// bindings that replaced it (a replacement keeps the TTL, the deadline and the health).
fn mortals(finished: &[Finished]) -> (HashSet<Tag>, HashSet<Tag>) {
    let (mut ttl, mut critical) = (HashSet::new(), HashSet::new());
    let mut successor: HashMap<Tag, Tag> = HashMap::new();
    for f in finished {
        for e in &f.log {
            match e {
                Event::Mortal { tag, ttl: true } => {
                    ttl.insert(*tag);
                }
                Event::Mortal { tag, ttl: false } => {
                    critical.insert(*tag);
                }
                Event::ReplacedAway { tag, new, .. } => {
                    successor.insert(*tag, *new);
                }
                _ => {}
            }
        }
    }
    for set in [&mut ttl, &mut critical] {
        let mut todo: Vec<Tag> = set.iter().copied().collect();
        while let Some(t) = todo.pop() {
            if let Some(&n) = successor.get(&t) {
                if set.insert(n) {
                    todo.push(n);
                }
            }
        }
    }
    (ttl, critical)
}

/// The consistency checks after a concurrent run (see the module docs).
pub fn check_concurrent(reg: &Registry<V>, finished: &[Finished]) {
    // Every binding ever created: tag -> (name, value). No tag twice, no generation twice.
    let mut created: HashMap<Tag, (String, u64)> = HashMap::new();
    let mut generations: HashSet<u64> = HashSet::new();
    for f in finished {
        for e in &f.log {
            if let Event::Created { name, tag, value } = e {
                assert!(
                    generations.insert(tag.generation().as_raw()),
                    "generation of {tag:?} ({name:?}) handed out twice"
                );
                assert!(created.insert(*tag, (name.clone(), *value)).is_none());
            }
        }
    }
    let check_known = |what: &str, name: &str, tag: &Tag, value: Option<u64>| {
        let Some((n, v)) = created.get(tag) else {
            panic!(
                "{what} {name:?} with {tag:?}, a tag no successful registration or replace returned"
            );
        };
        assert_eq!(n, name, "{what}: {tag:?} belongs to {n:?}, not to {name:?}");
        if let Some(value) = value {
            assert_eq!(*v, value, "{what} {name:?} {tag:?}: wrong value");
        }
    };
    // Every reported removal (and replace) ended a binding that existed with that tag, once.
    let mut ended: HashSet<Tag> = HashSet::new();
    for f in finished {
        for e in &f.log {
            match e {
                Event::Removed { name, tag, value } => {
                    check_known("removed", name, tag, *value);
                    assert!(ended.insert(*tag), "binding {name:?} {tag:?} ended twice");
                }
                Event::ReplacedAway { name, tag, .. } => {
                    check_known("replaced", name, tag, None);
                    assert!(ended.insert(*tag), "binding {name:?} {tag:?} ended twice");
                }
                Event::Observed { name, tag, value } => check_known("observed", name, tag, *value),
                Event::Created { .. } | Event::Mortal { .. } => {}
            }
        }
    }
    // Quiescent now: the views agree, and every survivor is a known binding not ended.
    let entries = reg.entries();
    let names = reg.names();
    // `len` is O(1): dead weak bindings count until purged.
    reg.purge_dead();
    let len = reg.len();
    assert_eq!(
        len,
        names.len(),
        "len() disagrees with names() after the run"
    );
    assert_eq!(
        entries.len(),
        names.len(),
        "entries() disagrees with names()"
    );
    for ((name, e), n) in entries.iter().zip(&names) {
        assert_eq!(name, n);
        check_known("surviving", name, &e.tag(), Some(**e.value()));
        assert!(
            !ended.contains(&e.tag()),
            "{name:?} {:?} survives but was reported removed",
            e.tag()
        );
        assert_eq!(reg.tag_of(name), Some(e.tag()));
    }
    // Every created binding ended exactly one way: reported, surviving, or unreported (cleared,
    // a guard drop, or a dead weak binding purged).
    let unreported = created.len() - ended.len() - entries.len();
    let cleared: usize = finished.iter().map(|f| f.cleared).sum();
    // A binding with a TTL may expire, one recorded critical may be removed as such.
    let (ttl, critical) = mortals(finished);
    let mortal = created
        .keys()
        .filter(|t| ttl.contains(t) || critical.contains(t))
        .count();
    let slack: usize = mortal
        + finished
            .iter()
            .map(|f| f.guard_drops + f.weak_made)
            .sum::<usize>();
    assert!(
        cleared <= unreported && unreported <= cleared + slack,
        "{} created, {} reported ended, {} survive: {unreported} vanished unreported, \
         but clear() reported {cleared} and guard drops / weak / mortal bindings explain at most {slack} more",
        created.len(),
        ended.len(),
        entries.len()
    );
    // And the registry still works: every survivor can be removed with its tag.
    for (name, e) in &entries {
        assert_eq!(
            reg.unregister_if_same(name, e.tag()).map(|r| r.tag()),
            Ok(e.tag())
        );
    }
    assert_eq!(reg.len(), 0);
    assert!(reg.names().is_empty());
}
