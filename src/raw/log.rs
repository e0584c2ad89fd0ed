//! The event log: revisions, and a bounded ring of the latest committed changes.
//!
//! # The publication protocol
//! 1. **Draw before the CAS.** A writer that is about to try its compare-and-swap on a slot
//!    draws its revision (`Log::draw`, one `fetch_add` on `next`) *after* it loaded the slot word
//!    its CAS expects, and *before* the CAS. Per name this orders revisions as commits: the
//!    binding a writer replaces (or the tombstone it reuses, or the empty slot it claims) was
//!    written by a CAS whose revision was drawn before that CAS, which happened before our load,
//!    which happened before our draw; two `fetch_add`s ordered by happens-before draw increasing
//!    values. So along each name's chain of commits, revisions strictly increase. (A revision
//!    drawn *after* the CAS would not give this: two writers on one name can commit A then B and
//!    draw B's revision first. `--cfg genreg_mutant="rev_after_cas"` plants exactly that.)
//! 2. **Publish after the CAS.** The winner builds the event and stores it in ring slot
//!    `rev % capacity` (`Log::publish`); a writer whose CAS lost publishes a *skip* record at its
//!    revision instead, so that every drawn revision is eventually published once and readers
//!    can walk the ring in revision order without holes that never fill.
//! 3. **Readers walk in revision order.** A watcher at revision `r` reads slot `r % capacity`:
//!    a record of `r` is delivered (a skip is passed over); an older record means `r` is drawn
//!    but not yet published, so the watcher waits (writers never wait for anyone); a newer
//!    record means `r` was overwritten: the watcher fell a whole ring behind and gets a typed
//!    error instead of silently missing changes.
//!
//! A record never replaces a newer one: a writer stalled between its draw and its publication
//! for a whole lap of the ring finds its slot taken by a later revision and drops its record;
//! readers of that revision see "overwritten", as for any revision older than the ring.
//!
//! Records are freed through epochs: a reader loads a record pointer under a guard and clones
//! the event out before unpinning; the writer that displaces a record defers its destruction.
//! Memory is the ring (one pointer per slot, at most one record each) plus what the epoch
//! collector has not yet freed.

use std::sync::Arc;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use super::commit::{Cause, Change};
use super::drop_caught;
use super::node::{Node, StoredRef};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use crate::watch::{Event, EventKind, Reason, Revision};

/// One published revision: its event, or `None` for a revision whose CAS lost.
pub(crate) struct Record<V> {
    pub(crate) rev: u64,
    pub(crate) event: Option<Event<V>>,
}

/// How an event captures a stored value (see `Log::capture`).
pub(crate) type Capture<V> = fn(StoredRef<'_, V>) -> Option<V>;

/// What [`Log::read`] found at a revision.
pub(crate) enum Read<'g, V> {
    /// Drawn (or about to be) but not yet published.
    Pending,
    /// Published.
    Got(&'g Record<V>),
    /// Overwritten: older than everything the ring still holds.
    Overwritten,
}

/// `next` alone on its cache line pair: every writer draws from it.
#[repr(align(128))]
struct Counter(AtomicU64);

pub(crate) struct Log<V> {
    /// The next revision to draw. Revision 0 is never drawn ("before every change").
    next: Counter,
    slots: Box<[Atomic<Record<V>>]>,
    mask: u64,
    /// Turns a stored value into the value an event carries (clones a strong value; `None` for
    /// a weak one). Set where `V: Clone` is known (`Builder::events`).
    capture: Capture<V>,
}

impl<V> Log<V> {
    /// A log that keeps the last `history` revisions (rounded up to a power of two, at least 2).
    pub(crate) fn new(history: usize, capture: Capture<V>) -> Log<V> {
        let cap = history.clamp(2, 1 << 30).next_power_of_two();
        Log {
            next: Counter(AtomicU64::new(1)),
            slots: (0..cap).map(|_| Atomic::null()).collect(),
            mask: cap as u64 - 1,
            capture,
        }
    }

    /// How many revisions the ring holds.
    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Draws `n` consecutive revisions; returns the first. Call after loading the slot word the
    /// CAS will expect and before the CAS (see the module docs).
    #[inline]
    pub(crate) fn draw(&self, n: u64) -> u64 {
        // AcqRel: the order argument needs only the RMW's coherence (see the module docs); the
        // snapshot's reasoning reads `next` with Acquire after a walk.
        self.next.0.fetch_add(n, Ordering::AcqRel)
    }

    /// The next revision to be drawn: every revision below it has been drawn.
    pub(crate) fn head(&self) -> u64 {
        self.next.0.load(Ordering::Acquire)
    }

    /// The oldest revision the ring may still hold.
    pub(crate) fn oldest(&self) -> u64 {
        self.head().saturating_sub(self.capacity()).max(1)
    }

    /// Moves the counter past `rev` (restore), publishing the revisions it jumps over as
    /// skips (the last ring's worth: older ones read as overwritten), so that no reader waits
    /// for a revision nobody will publish.
    pub(crate) fn advance_past(&self, rev: u64, guard: &Guard) {
        let target = rev.saturating_add(1);
        let old = self.next.0.fetch_max(target, Ordering::AcqRel);
        if old < target {
            for r in old.max(target.saturating_sub(self.capacity()))..target {
                self.publish(r, None, guard);
            }
        }
    }

    /// Publishes the changes a commit made (see the module docs), `rev` being what
    /// [`Log::draw`] gave for it.
    // Out of line: the write paths inline `commit`, and this is their rare branch's body.
    #[inline(never)]
    pub(crate) fn record(&self, change: &Change<'_, V>, rev: u64, reason: Reason, guard: &Guard) {
        let event = |rev: u64, node: &Node<V>, kind| {
            let bound = !matches!(kind, EventKind::Unregistered { .. });
            Event {
                revision: Revision::from_raw(rev),
                name: node.name().into(),
                kind,
                metadata: node.meta().filter(|_| bound).cloned(),
            }
        };
        // The CAS has committed: nothing here may unwind past the publication. A value whose
        // `clone` panics is recorded without its value.
        let capture = |node: &Node<V>| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (self.capture)(node.stored())
            }))
            .unwrap_or(None)
        };
        match *change {
            Change::Bound { new, purged } => {
                let mut rev = rev;
                if let Some(p) = purged {
                    let kind = EventKind::Unregistered {
                        tag: p.tag,
                        reason: p.death(),
                    };
                    self.publish(rev, Some(event(rev, p, kind)), guard);
                    rev += 1;
                }
                let kind = EventKind::Registered {
                    tag: new.tag,
                    value: capture(new),
                };
                self.publish(rev, Some(event(rev, new, kind)), guard);
            }
            // The same tag and metadata, and a liveness or load cell where there was none: only
            // a cell was installed (a first health record, a first task: `RawMap::update_extra`),
            // which is no change to the binding: a skip.
            Change::Replaced { old, new }
                if old.tag == new.tag
                    && ((old.live().is_none() && new.live().is_some())
                        || (old.load().is_none() && new.load().is_some()))
                    && match (old.meta(), new.meta()) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (a, b) => a.is_none() && b.is_none(),
                    } =>
            {
                self.publish(rev, None, guard);
            }
            // The same tag: only the metadata changed (`RawMap::update_extra`).
            Change::Replaced { old, new } if old.tag == new.tag => {
                let kind = EventKind::MetadataUpdated { tag: new.tag };
                self.publish(rev, Some(event(rev, new, kind)), guard);
            }
            Change::Replaced { old, new } => {
                let kind = EventKind::Replaced {
                    old: old.tag,
                    tag: new.tag,
                    value: capture(new),
                };
                self.publish(rev, Some(event(rev, new, kind)), guard);
            }
            Change::Removed { old, cause } => {
                // A dead binding (a weak one whose owner died, an expired or condemned one) was
                // invisible: whoever removed it purged it, whatever they asked for.
                // (A conditional write that met a dead binding buried it in its decision and
                // passes the burial's reason. A weak owner that died after the decision: the
                // value is gone, so the removal is reported as a purge, and recorded as one.)
                let reason = if cause == Cause::Dead || old.owner_dead() {
                    old.death()
                } else {
                    reason
                };
                let kind = EventKind::Unregistered {
                    tag: old.tag,
                    reason,
                };
                self.publish(rev, Some(event(rev, old, kind)), guard);
            }
        }
    }

    /// Publishes skip records for `n` revisions from `rev` whose CAS lost.
    #[cold]
    pub(crate) fn skip(&self, rev: u64, n: u64, guard: &Guard) {
        for r in rev..rev + n {
            self.publish(r, None, guard);
        }
    }

    /// Stores the record of `rev` in its ring slot unless a newer revision is there already.
    /// (The caller then wakes sleeping readers: see [`Wake`].)
    fn publish(&self, rev: u64, event: Option<Event<V>>, guard: &Guard) {
        let slot = &self.slots[(rev & self.mask) as usize];
        let mut record = Owned::new(Record { rev, event });
        let mut cur = slot.load(Ordering::Acquire, guard);
        loop {
            // SAFETY: a record in the ring is freed only after it was displaced, by a job
            // deferred past every guard that could have loaded it, ours included.
            if let Some(old) = unsafe { cur.as_ref() } {
                if old.rev >= rev {
                    // Lapped while stalled: readers of `rev` see "overwritten" (module docs).
                    drop_caught(record);
                    break;
                }
            }
            // SeqCst: pairs with the sleeper count (see `Log::wait_for`): a reader that counted
            // itself a sleeper after this store sees the record when it rechecks.
            let seq = Ordering::SeqCst; // necessary: the writer's half of the sleepers pair
            match slot.compare_exchange(cur, record, seq, Ordering::Acquire, guard) {
                Ok(_) => {
                    if !cur.is_null() {
                        // SAFETY: our CAS unlinked `cur` from the ring; readers that loaded it
                        // are pinned, and the job runs after they unpin, once. Its value's
                        // destructor may panic: caught and counted, as for removed values.
                        unsafe { guard.defer_unchecked(move || drop_caught(cur.into_owned())) };
                    }
                    break;
                }
                Err(e) => {
                    cur = e.current;
                    record = e.new;
                }
            }
        }
    }

    /// Reads the record of revision `rev` (≥ 1).
    pub(crate) fn read<'g>(&self, rev: u64, guard: &'g Guard) -> Read<'g, V> {
        let slot = &self.slots[(rev & self.mask) as usize];
        // SeqCst because a reader that counted itself a sleeper must see a record published
        // before the writer read the count (`Wake`); a plain load on x86.
        let order = Ordering::SeqCst; // the reader's half of the pair (see above)
        let cur: Shared<'g, Record<V>> = slot.load(order, guard);
        // SAFETY: as in `publish`: the record outlives our guard.
        match unsafe { cur.as_ref() } {
            None => Read::Pending,
            Some(r) if r.rev == rev => Read::Got(r),
            Some(r) if r.rev < rev => Read::Pending,
            Some(_) => Read::Overwritten,
        }
    }
}

/// Wakes threads and tasks that wait for a change: watchers at a revision not yet published,
/// [`wait_for`](crate::Registry::wait_for) and [`evicted`](crate::Registration::evicted).
///
/// Every commit (and every skip) calls [`Wake::notify`], events on or off; it costs one load
/// while nobody waits. A waiter counts itself (`listen`), *then* rechecks its condition, then
/// sleeps. The count is a Dekker pair with the slot CAS: the writer's CAS is SeqCst and its
/// load of `sleepers` is SeqCst; the waiter's increment is followed by a SeqCst fence before
/// its recheck. So either the writer sees the waiter counted (and notifies it: the listener
/// was registered before the recheck), or the waiter's recheck sees the writer's CAS.
// On a cache line pair of its own: waiters write `sleepers`, and the map's hot fields (the
// root, the hasher) must not share its line.
#[repr(align(128))]
pub(crate) struct Wake {
    sleepers: AtomicUsize,
    event: event_listener::Event,
}

impl Wake {
    pub(crate) fn new() -> Wake {
        Wake {
            sleepers: AtomicUsize::new(0),
            event: event_listener::Event::new(),
        }
    }

    /// Wakes every waiter, if there are any. Called after a commit's CAS and its record.
    #[inline(always)]
    pub(crate) fn notify(&self) {
        let order = Ordering::SeqCst; // necessary: the Dekker pair with `listen` (above)
        if self.sleepers.load(order) != 0 {
            self.notify_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn notify_slow(&self) {
        self.event.notify(usize::MAX);
    }

    /// A listener for the next notification, with the caller counted as a waiter until it
    /// calls [`Wake::unlisten`] (once per `listen`). Recheck the condition after this call,
    /// then wait on the listener.
    pub(crate) fn listen(&self) -> event_listener::EventListener {
        self.sleepers.fetch_add(1, Ordering::SeqCst); // SeqCst: the Dekker pair (above)
        let listener = self.event.listen();
        std::sync::atomic::fence(Ordering::SeqCst); // orders the count before the recheck
        listener
    }

    /// Uncounts a waiter counted by [`Wake::listen`].
    pub(crate) fn unlisten(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst); // SeqCst: simplest; off the hot path
    }
}

impl<V> Drop for Log<V> {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            // SAFETY: `&mut self`: no reader or writer is left; records displaced earlier were
            // handed to the collector, these are the ones still in the ring.
            unsafe {
                let guard = crossbeam_epoch::unprotected();
                let cur = slot.load(Ordering::Relaxed, guard);
                if !cur.is_null() {
                    drop_caught(cur.into_owned());
                }
            }
        }
    }
}
