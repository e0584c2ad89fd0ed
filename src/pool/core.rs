//! A pool's shared state: its members' slots, its waiters, its statistics.
//!
//! # The slot protocol
//!
//! Each member has a word of busy bits, one per slot (`max_in_flight` of them, at most 64). A
//! lease is one slot: acquiring is one compare-and-swap that sets a clear bit, releasing is one
//! `fetch_and` that clears it. So a member is never held by more than `max_in_flight` leases
//! (the CAS fails if the bit it read as clear was set meanwhile), and every lease's release
//! frees exactly the slot it claimed. A member's load is the number of its bits set.
//!
//! # Waiting without polling
//!
//! A waiter and a releaser meet through a Dekker pair of `SeqCst` fences:
//! - the waiter adds itself to `waiters`, starts listening on `wake`, fences, then looks for a
//!   free slot again before it sleeps;
//! - the releaser clears its bit, fences, then reads `waiters`, and if anyone waits wakes one
//!   more listener (`notify(1.additional())`: one per freed slot, never a herd).
//!
//! In the single order of the fences, either the releaser's comes second: it sees the waiter
//! counted and wakes someone (the wake cannot reach the list before the listener is in it
//! unseen: both take the list's lock, and a wake that found the list empty came before the
//! listener's insertion, so before the waiter's look, which then sees the cleared bit); or the
//! waiter's comes second, and its look sees the cleared bit. (Fences rather than `SeqCst`
//! accesses: the protocol is the same, and loom checks fences exactly.) A listener that is dropped
//! after it was woken but before it took a slot hands its wake to the next one
//! (event-listener's propagation), so cancelling a waiter never loses a wake-up.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use event_listener::{Event, IntoNotification};

use super::{Holder, PoolStats, Selection};
use crate::liveness::Clock;
use crate::liveness::clock::nanos;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence};
use crate::tag::Tag;

/// The most slots a member may have (`max_in_flight`): one busy bit each in a word.
pub const MAX_IN_FLIGHT: usize = 64;

/// The most members a pool may have.
pub const MAX_MEMBERS: usize = 4096;

const PENDING: usize = 0;
const OPEN: usize = 1;
const CLOSED: usize = 2;

/// One member: its busy bits, when each slot was taken, its value.
// A line of its own: two threads leasing two members never write the same line.
#[repr(align(64))]
pub(crate) struct Member<V> {
    busy: AtomicU64,
    /// Per slot: when it was taken (clock nanoseconds + 1), for the holders' durations.
    since: Box<[AtomicU64]>,
    pub(crate) value: V,
    pub(crate) name: Box<str>,
}

/// Counters that every acquire and release moves.
#[derive(Default)]
struct Counters {
    /// Leases out. Decremented before a slot is freed and incremented after one is taken, so
    /// it never exceeds the leases really held (nor does the peak).
    in_use: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicU64,
    releases: AtomicU64,
    /// Time spent waiting by acquisitions that waited (nanoseconds), and how many did.
    waited_ns: AtomicU64,
    waited: AtomicU64,
}

/// A pool: shared by its handle ([`Pool`](super::Pool)), its leases, and the nodes that bind
/// its name and its members' names.
pub(crate) struct PoolCore<V> {
    counters: Counters,
    /// Async and blocking acquirers waiting for a slot (see the module docs).
    waiters: AtomicUsize,
    state: AtomicUsize,
    pub(crate) members: Box<[Member<V>]>,
    /// The bits of a full member.
    full: u64,
    pub(crate) max_in_flight: usize,
    pub(crate) selection: Selection,
    pub(crate) name: Box<str>,
    /// The tags of the pool's name and of its members, set once they are all bound.
    pub(crate) tags: OnceLock<(Tag, Box<[Tag]>)>,
    wake: Event,
    clock: Arc<dyn Clock>,
    /// Keyed holds (`acquire_for`), made on first use.
    pub(crate) holds: OnceLock<super::keyed::Holds>,
    pub(crate) collector: Option<crossbeam_epoch::Collector>,
}

/// Why no slot was taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NoSlot {
    /// Every member was seen full.
    Full,
    /// The pool is not open (removed, or its registration failed).
    Closed,
}

impl<V> PoolCore<V> {
    pub(crate) fn new(
        name: &str,
        values: Vec<V>,
        max_in_flight: usize,
        selection: Selection,
        clock: Arc<dyn Clock>,
        collector: Option<crossbeam_epoch::Collector>,
    ) -> PoolCore<V> {
        debug_assert!((1..=MAX_IN_FLIGHT).contains(&max_in_flight));
        let members = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Member {
                busy: AtomicU64::new(0),
                since: (0..max_in_flight).map(|_| AtomicU64::new(0)).collect(),
                value,
                name: super::member_name(name, i).into_boxed_str(),
            })
            .collect();
        PoolCore {
            counters: Counters::default(),
            waiters: AtomicUsize::new(0),
            state: AtomicUsize::new(PENDING),
            members,
            full: if max_in_flight == MAX_IN_FLIGHT {
                u64::MAX
            } else {
                (1u64 << max_in_flight) - 1
            },
            max_in_flight,
            selection,
            name: name.into(),
            tags: OnceLock::new(),
            wake: Event::new(),
            clock,
            holds: OnceLock::new(),
            collector,
        }
    }

    /// Opens the pool once every name is bound: its members can be read and leased. `false`
    /// if it was closed meanwhile (its name removed by a clear before it opened).
    pub(crate) fn open(&self, tags: (Tag, Box<[Tag]>)) -> bool {
        let _ = self.tags.set(tags);
        self.state
            .compare_exchange(PENDING, OPEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Closes the pool (its name was unbound, or its registration failed): no slot is taken
    /// any more, no member's value is read through the registry, and every waiter wakes to
    /// find it closed. Leases already out stay usable; their release is harmless.
    pub(crate) fn close(&self) {
        if self.state.swap(CLOSED, Ordering::SeqCst) != CLOSED {
            // Every waiter: each looks again, sees the pool closed and returns.
            self.wake.notify(usize::MAX);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::SeqCst) == OPEN
    }

    /// Whether the pool is closed (for good).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CLOSED
    }

    /// Leases held on member `i`.
    pub(crate) fn load(&self, i: usize) -> usize {
        self.members[i].busy.load(Ordering::Relaxed).count_ones() as usize
    }

    /// Whether member `i` has a free slot.
    pub(crate) fn has_room(&self, i: usize) -> bool {
        self.members[i].busy.load(Ordering::Relaxed) != self.full
    }

    /// Claims a free slot of member `i` (see the module docs).
    #[inline]
    pub(crate) fn claim(&self, i: usize) -> Option<u32> {
        let busy = &self.members[i].busy;
        let mut cur = busy.load(Ordering::Relaxed);
        loop {
            let free = !cur & self.full;
            if free == 0 {
                return None;
            }
            let bit = free.trailing_zeros();
            #[cfg(not(genreg_mutant = "lease_unchecked"))]
            match busy.compare_exchange_weak(
                cur,
                cur | 1 << bit,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(bit),
                Err(seen) => cur = seen,
            }
            // The planted bug: the slot was free when read, so set its bit without checking
            // that it still is (two acquirers can both take it).
            #[cfg(genreg_mutant = "lease_unchecked")]
            {
                busy.fetch_or(1 << bit, Ordering::Acquire);
                return Some(bit);
            }
        }
    }

    /// Records a claimed slot: counters, and when it was taken.
    #[inline]
    pub(crate) fn took(&self, i: usize, bit: u32) {
        let c = &self.counters;
        let now = c.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        if now > c.peak.load(Ordering::Relaxed) {
            c.peak.fetch_max(now, Ordering::Relaxed);
        }
        c.allocations.fetch_add(1, Ordering::Relaxed);
        let at = nanos(self.clock.now()).saturating_add(1);
        self.members[i].since[bit as usize].store(at, Ordering::Relaxed);
    }

    /// Frees a slot taken by [`claim`](Self::claim), and wakes one waiter if any waits.
    #[inline]
    pub(crate) fn release(&self, i: usize, bit: u32) {
        let c = &self.counters;
        c.in_use.fetch_sub(1, Ordering::Relaxed);
        c.releases.fetch_add(1, Ordering::Relaxed);
        // Release: whoever takes the slot next sees everything this holder did.
        self.members[i]
            .busy
            .fetch_and(!(1u64 << bit), Ordering::Release);
        // The releaser's half of the Dekker pair (module docs).
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        self.wake.notify(1.additional());
    }

    /// Takes a slot, chosen by the pool's selection: `Err` if every member was seen full, or
    /// the pool is not open.
    pub(crate) fn take(&self) -> Result<(usize, u32), NoSlot> {
        if !self.is_open() {
            return Err(NoSlot::Closed);
        }
        let n = self.members.len();
        if self.selection == Selection::PowerOfTwo && n > 1 {
            let r = random();
            let a = (r % n as u64) as usize;
            let mut b = ((r >> 32) % (n as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let pick = if self.load(b) < self.load(a) { b } else { a };
            if let Some(bit) = self.claim(pick) {
                self.took(pick, bit);
                return Ok((pick, bit));
            }
            // Both full, or lost a race: the least loaded of all.
        }
        loop {
            let start = (random() % n as u64) as usize;
            let mut best = None;
            let mut best_load = self.max_in_flight;
            for k in 0..n {
                let i = (start + k) % n;
                let load = self.load(i);
                if load < best_load {
                    best = Some(i);
                    best_load = load;
                    if load == 0 {
                        break;
                    }
                }
            }
            let Some(i) = best else {
                return Err(NoSlot::Full);
            };
            if let Some(bit) = self.claim(i) {
                self.took(i, bit);
                return Ok((i, bit));
            }
        }
    }

    /// Takes a slot of member `i`.
    pub(crate) fn take_member(&self, i: usize) -> Result<u32, NoSlot> {
        if !self.is_open() {
            return Err(NoSlot::Closed);
        }
        let bit = self.claim(i).ok_or(NoSlot::Full)?;
        self.took(i, bit);
        Ok(bit)
    }

    /// Leases held now (a sum of the members' loads: exact at quiescence).
    pub(crate) fn in_use(&self) -> usize {
        (0..self.members.len()).map(|i| self.load(i)).sum()
    }

    /// Members with a free slot.
    pub(crate) fn available(&self) -> usize {
        (0..self.members.len())
            .filter(|&i| self.has_room(i))
            .count()
    }

    /// Slots in all (members × `max_in_flight`).
    pub(crate) fn slots(&self) -> usize {
        self.members.len() * self.max_in_flight
    }

    /// Counts a waiter (see the module docs); undone by [`unwait`](Self::unwait).
    pub(crate) fn wait(&self) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unwait(&self) {
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// A listener for the next release, for a waiter already counted; after it, the waiter's
    /// fence (its half of the Dekker pair): its next look for a slot sees every release whose
    /// fence came first.
    pub(crate) fn listen(&self) -> event_listener::EventListener {
        let listener = self.wake.listen();
        fence(Ordering::SeqCst);
        listener
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Records that an acquisition waited `ns` nanoseconds before it got its slot.
    pub(crate) fn waited(&self, ns: u64) {
        self.counters.waited_ns.fetch_add(ns, Ordering::Relaxed);
        self.counters.waited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn now_ns(&self) -> u64 {
        nanos(self.clock.now())
    }

    /// The statistics (see [`PoolStats`]); `keys` names the keyed holders.
    pub(crate) fn stats(&self, keys: &[(String, usize, u32)]) -> PoolStats {
        let c = &self.counters;
        let now = self.now_ns();
        let mut holders = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let busy = m.busy.load(Ordering::Acquire);
            for bit in 0..self.max_in_flight as u32 {
                if busy & (1 << bit) == 0 {
                    continue;
                }
                let since = m.since[bit as usize].load(Ordering::Relaxed);
                let key = keys
                    .iter()
                    .find(|(_, mi, b)| *mi == i && *b == bit)
                    .map(|(k, _, _)| k.clone());
                holders.push(Holder {
                    member: i,
                    name: m.name.to_string(),
                    key,
                    held_for: Duration::from_nanos(now.saturating_sub(since.saturating_sub(1))),
                });
            }
        }
        let allocations = c.allocations.load(Ordering::Relaxed);
        let waited_ns = c.waited_ns.load(Ordering::Relaxed);
        PoolStats {
            name: self.name.to_string(),
            total: self.members.len(),
            max_in_flight: self.max_in_flight,
            available: self.available(),
            in_use: c.in_use.load(Ordering::Relaxed),
            allocations,
            releases: c.releases.load(Ordering::Relaxed),
            peak: c.peak.load(Ordering::Relaxed),
            waited: c.waited.load(Ordering::Relaxed),
            average_wait: Duration::from_nanos(waited_ns.checked_div(allocations).unwrap_or(0)),
            waiting: self.waiting(),
            holders,
        }
    }

    /// Resets the counters: allocations, releases, waits to zero, the peak to the leases out
    /// now. The leases themselves are untouched.
    pub(crate) fn reset_stats(&self) {
        let c = &self.counters;
        c.allocations.store(0, Ordering::Relaxed);
        c.releases.store(0, Ordering::Relaxed);
        c.waited_ns.store(0, Ordering::Relaxed);
        c.waited.store(0, Ordering::Relaxed);
        c.peak
            .store(c.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A cheap per-thread random number: where a scan starts and which two members power of two
/// compares, so that threads spread over members without sharing a cursor. Fixed under loom
/// (models must be deterministic).
#[inline]
fn random() -> u64 {
    #[cfg(loom)]
    {
        0
    }
    #[cfg(not(loom))]
    {
        use std::cell::Cell;
        thread_local! {
            static STATE: Cell<u64> = Cell::new({
                let local = 0u8;
                // A different start per thread: the address of a local, mixed.
                (std::ptr::from_ref(&local) as u64 | 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            });
        }
        STATE.with(|s| {
            // xorshift64*
            let mut x = s.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            s.set(x);
            x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16
        })
    }
}
