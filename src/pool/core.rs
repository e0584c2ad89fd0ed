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
//! A waiter and a releaser meet through a Dekker pair, in the single order `S` of `SeqCst`
//! operations:
//! - the waiter adds itself to `waiters` (a `SeqCst` RMW), starts listening on `wake`, issues
//!   a `SeqCst` fence, then looks for a free slot again before it sleeps;
//! - the releaser clears its bit (a `SeqCst` RMW), then reads `waiters` (a `SeqCst` load), and
//!   if anyone waits wakes one more listener (`notify(1.additional())`: one per freed slot,
//!   never a herd).
//!
//! If the releaser's read misses the waiter's increment, it precedes the increment in `S`, so
//! the clear precedes the waiter's fence, and the waiter's look after the fence sees the bit
//! cleared. Otherwise the releaser wakes someone: the wake cannot miss the listener (both take
//! the list's lock; a wake that found the list empty came before the listener's insertion, so
//! before the waiter's look, which then sees the cleared bit). On x86 the releaser's half costs
//! nothing beyond its `lock and`: no fence on the release path. loom models `SeqCst` accesses
//! as acquire-release only, so under loom the releaser also fences (the single order made
//! explicit); the models check the protocol as written above. A listener that is dropped
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

/// One member: its busy bits, its slots, its value.
// A line of its own: two threads leasing two members never write the same line.
#[repr(align(64))]
pub(crate) struct Member<V> {
    busy: AtomicU64,
    /// Slot 0's lease counts, on the member's line (an exclusive member's only slot; see
    /// [`Member::taken`]).
    taken0: AtomicU64,
    released0: AtomicU64,
    slots: Box<[Slot]>,
    pub(crate) value: V,
    pub(crate) name: Box<str>,
}

impl<V> Member<V> {
    /// Slot `bit`'s count of leases taken.
    #[inline]
    fn taken(&self, bit: u32) -> &AtomicU64 {
        match bit {
            0 => &self.taken0,
            _ => &self.slots[bit as usize].taken,
        }
    }

    /// Slot `bit`'s count of leases released.
    #[inline]
    fn released(&self, bit: u32) -> &AtomicU64 {
        match bit {
            0 => &self.released0,
            _ => &self.slots[bit as usize].released,
        }
    }
}

/// One slot of a member: written only by its holder, between its claim and its release (the
/// busy bit's CAS and `fetch_and` order the holders one after the other), so its counts need
/// no read-modify-write.
#[derive(Default)]
struct Slot {
    /// Leases it has handed out, and released (slot 0's are on the member).
    taken: AtomicU64,
    released: AtomicU64,
    /// When its current lease was taken (clock nanoseconds + 1; with timing on).
    since: AtomicU64,
}

/// What the timing option moves on every lease: a line of its own.
#[derive(Default)]
#[repr(align(64))]
struct Timing {
    /// Leases out. Decremented before a slot is freed and incremented after one is taken, so
    /// it never exceeds the leases really held (nor does the peak).
    in_use: AtomicUsize,
    peak: AtomicUsize,
}

/// What waits move, and the pool's state: a line of its own, which releases only read.
#[derive(Default)]
#[repr(align(64))]
struct Waits {
    /// Async and blocking acquirers waiting for a slot (see the module docs).
    waiters: AtomicUsize,
    state: AtomicUsize,
    /// Time spent waiting by acquisitions that waited (nanoseconds), and how many did.
    waited_ns: AtomicU64,
    waited: AtomicU64,
}

/// The counters' values at the last `reset_stats` (a reset subtracts them rather than zeroing
/// slots that holders write).
#[derive(Default)]
struct Baseline {
    taken: AtomicU64,
    released: AtomicU64,
    waited_ns: AtomicU64,
    waited: AtomicU64,
}

/// A pool: shared by its handle ([`Pool`](super::Pool)), its leases, and the nodes that bind
/// its name and its members' names.
pub(crate) struct PoolCore<V> {
    waits: Waits,
    timing: Option<Timing>,
    baseline: Baseline,
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
        timed: bool,
        clock: Arc<dyn Clock>,
        collector: Option<crossbeam_epoch::Collector>,
    ) -> PoolCore<V> {
        debug_assert!((1..=MAX_IN_FLIGHT).contains(&max_in_flight));
        let members = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Member {
                busy: AtomicU64::new(0),
                taken0: AtomicU64::new(0),
                released0: AtomicU64::new(0),
                slots: (0..max_in_flight).map(|_| Slot::default()).collect(),
                value,
                name: super::member_name(name, i).into_boxed_str(),
            })
            .collect();
        PoolCore {
            waits: Waits::default(),
            timing: timed.then(Timing::default),
            baseline: Baseline::default(),
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
        self.waits
            .state
            // A close and an open are RMWs of one word: one of them comes first.
            .compare_exchange(PENDING, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Closes the pool (its name was unbound, or its registration failed): no slot is taken
    /// any more, no member's value is read through the registry, and every waiter wakes to
    /// find it closed. Leases already out stay usable; their release is harmless.
    pub(crate) fn close(&self) {
        if self.waits.state.swap(CLOSED, Ordering::AcqRel) != CLOSED {
            // Every waiter: each looks again, sees the pool closed and returns.
            self.wake.notify(usize::MAX);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.waits.state.load(Ordering::Acquire) == OPEN
    }

    /// Whether the pool is closed (for good).
    pub(crate) fn is_closed(&self) -> bool {
        self.waits.state.load(Ordering::Acquire) == CLOSED
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

    /// With timing on, the clock's reading for a lease about to be taken: read before the
    /// claim, as no user code (a `Clock`) may run between a winning claim and its lease (a
    /// panic there would leave the slot taken for ever).
    #[inline]
    fn stamp(&self) -> u64 {
        match self.timing {
            Some(_) => self.clock_stamp(),
            None => 0,
        }
    }

    #[inline(never)]
    fn clock_stamp(&self) -> u64 {
        nanos(self.clock.now()).saturating_add(1)
    }

    /// Records a claimed slot: its count, and with timing on, when it was taken (`at`, from
    /// [`stamp`](Self::stamp)) and the peak.
    #[inline]
    fn took(&self, i: usize, bit: u32, at: u64) {
        let member = &self.members[i];
        // The slot's own count: only its holder writes it (see `Slot`).
        let taken = member.taken(bit);
        taken.store(taken.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if let Some(t) = &self.timing {
            let slot = &member.slots[bit as usize];
            let now = t.in_use.fetch_add(1, Ordering::Relaxed) + 1;
            if now > t.peak.load(Ordering::Relaxed) {
                t.peak.fetch_max(now, Ordering::Relaxed);
            }
            slot.since.store(at, Ordering::Relaxed);
        }
    }

    /// Frees a slot taken by [`claim`](Self::claim), and wakes one waiter if any waits.
    #[inline]
    pub(crate) fn release(&self, i: usize, bit: u32) {
        // The holder's own count (see `Slot`), before the bit that orders the next holder.
        let released = self.members[i].released(bit);
        released.store(released.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.free(i, bit);
    }

    /// Gives back a slot that was claimed but never handed out (a keyed acquirer that lost
    /// the race to bind the key's hold): it counts neither as taken nor as released.
    pub(crate) fn unclaim(&self, i: usize, bit: u32) {
        let taken = self.members[i].taken(bit);
        taken.store(taken.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        self.free(i, bit);
    }

    #[inline]
    fn free(&self, i: usize, bit: u32) {
        if let Some(t) = &self.timing {
            t.in_use.fetch_sub(1, Ordering::Relaxed);
        }
        // SeqCst, then a SeqCst read of the waiters: the releaser's half of the Dekker pair
        // (module docs). Release: whoever takes the slot next sees everything this holder did.
        self.members[i]
            .busy
            .fetch_and(!(1u64 << bit), Ordering::SeqCst); // SeqCst: the Dekker pair (module docs)
        // loom models SeqCst accesses as AcqRel only: its fence stands for their single order.
        #[cfg(loom)]
        fence(Ordering::SeqCst); // SeqCst: the order loom does not model
        let waiting = self.waits.waiters.load(Ordering::SeqCst); // SeqCst: the Dekker pair
        if waiting > 0 {
            self.wake_one();
        }
        set_hint(i);
    }

    /// Wakes one more waiter, if any waits: for a woken waiter that returns without taking a
    /// slot (see `wait.rs`).
    pub(crate) fn pass_wake(&self) {
        if self.waiting() > 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        self.wake.notify(1.additional());
    }

    /// Takes a slot, chosen by the pool's selection: `Err` if every member was seen full, or
    /// the pool is not open.
    ///
    /// First the member this thread released last, if it is idle: no member is less loaded
    /// than an idle one, so either selection may pick it, and a thread that keeps to its own
    /// member keeps its line in its cache (two threads do not fight over one). Else the scan.
    #[inline]
    pub(crate) fn take(&self) -> Result<(usize, u32), NoSlot> {
        if !self.is_open() {
            return Err(NoSlot::Closed);
        }
        let at = self.stamp();
        let h = hint();
        if let Some(m) = self.members.get(h) {
            // Idle, it takes its first slot: one CAS from the word it must hold.
            #[cfg(not(genreg_mutant = "lease_unchecked"))]
            let won = m
                .busy
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
            // The planted bug (see `claim`): idle when read, so taken without a check.
            #[cfg(genreg_mutant = "lease_unchecked")]
            let won = m.busy.load(Ordering::Relaxed) == 0 && {
                m.busy.fetch_or(1, Ordering::Acquire);
                true
            };
            if won {
                self.took(h, 0, at);
                return Ok((h, 0));
            }
        }
        self.take_scan(at)
    }

    /// [`take`](Self::take)'s choice by the pool's selection.
    #[inline(never)]
    fn take_scan(&self, at: u64) -> Result<(usize, u32), NoSlot> {
        let n = self.members.len();
        if self.selection == Selection::PowerOfTwo && n > 1 {
            let r = random();
            let a = below(r, n);
            let mut b = below(r.rotate_left(32), n - 1);
            if b >= a {
                b += 1;
            }
            let pick = if self.load(b) < self.load(a) { b } else { a };
            if let Some(bit) = self.claim(pick) {
                self.took(pick, bit, at);
                return Ok((pick, bit));
            }
            // Both full, or lost a race: the least loaded of all.
        }
        loop {
            let start = below(random(), n);
            let mut best = None;
            let mut best_load = self.max_in_flight as u32;
            for k in 0..n {
                let i = if start + k < n {
                    start + k
                } else {
                    start + k - n
                };
                let busy = self.members[i].busy.load(Ordering::Relaxed);
                // An idle member: as little loaded as a member can be.
                if busy == 0 {
                    best = Some(i);
                    break;
                }
                // (Exclusive members: a busy one is full, no need to count.)
                if self.max_in_flight > 1 {
                    let load = busy.count_ones();
                    if load < best_load {
                        best = Some(i);
                        best_load = load;
                    }
                }
            }
            let Some(i) = best else {
                return Err(NoSlot::Full);
            };
            if let Some(bit) = self.claim(i) {
                self.took(i, bit, at);
                return Ok((i, bit));
            }
        }
    }

    /// Takes a slot of member `i`.
    pub(crate) fn take_member(&self, i: usize) -> Result<u32, NoSlot> {
        if !self.is_open() {
            return Err(NoSlot::Closed);
        }
        let at = self.stamp();
        let bit = self.claim(i).ok_or(NoSlot::Full)?;
        self.took(i, bit, at);
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
        // SeqCst: in the single order with the releaser's read of the waiters (module docs).
        self.waits.waiters.fetch_add(1, Ordering::SeqCst); // SeqCst: the Dekker pair
    }

    pub(crate) fn unwait(&self) {
        self.waits.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// A listener for the next release, for a waiter already counted; after it, the waiter's
    /// fence (its half of the Dekker pair): its next look for a slot sees every release whose
    /// fence came first.
    pub(crate) fn listen(&self) -> event_listener::EventListener {
        let listener = self.wake.listen();
        fence(Ordering::SeqCst); // SeqCst: the waiter's half of the Dekker pair
        listener
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waits.waiters.load(Ordering::Relaxed)
    }

    /// Records that an acquisition waited `ns` nanoseconds before it got its slot.
    pub(crate) fn waited(&self, ns: u64) {
        self.waits.waited_ns.fetch_add(ns, Ordering::Relaxed);
        self.waits.waited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn now_ns(&self) -> u64 {
        nanos(self.clock.now())
    }

    /// Leases every slot has handed out, and released. Each count only grows, and a slot's
    /// releases are read before its takings (never more released than taken).
    fn counts(&self) -> (u64, u64) {
        let mut taken = 0;
        let mut released = 0;
        for m in self.members.iter() {
            // Acquire: the counts are read after the bit that ordered their holders' writes.
            let _ = m.busy.load(Ordering::Acquire);
            for bit in 0..self.max_in_flight as u32 {
                released += m.released(bit).load(Ordering::Relaxed);
                taken += m.taken(bit).load(Ordering::Relaxed);
            }
        }
        (taken, released)
    }

    /// The statistics (see [`PoolStats`]); `keys` names the keyed holders.
    pub(crate) fn stats(&self, keys: &[(String, usize, u32)]) -> PoolStats {
        let now = self.timing.as_ref().map(|_| self.now_ns());
        let mut holders = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let busy = m.busy.load(Ordering::Acquire);
            for bit in 0..self.max_in_flight as u32 {
                if busy & (1 << bit) == 0 {
                    continue;
                }
                let since = m.slots[bit as usize].since.load(Ordering::Relaxed);
                let key = keys
                    .iter()
                    .find(|(_, mi, b)| *mi == i && *b == bit)
                    .map(|(k, _, _)| k.clone());
                holders.push(Holder {
                    member: i,
                    name: m.name.to_string(),
                    key,
                    held_for: now.map(|now| {
                        Duration::from_nanos(now.saturating_sub(since.saturating_sub(1)))
                    }),
                });
            }
        }
        let (taken, released) = self.counts();
        let out = self.in_use() as u64;
        let b = &self.baseline;
        let allocations = taken.saturating_sub(b.taken.load(Ordering::Relaxed));
        let releases = released.saturating_sub(b.released.load(Ordering::Relaxed));
        let w = &self.waits;
        let waited_ns = w
            .waited_ns
            .load(Ordering::Relaxed)
            .saturating_sub(b.waited_ns.load(Ordering::Relaxed));
        PoolStats {
            name: self.name.to_string(),
            total: self.members.len(),
            max_in_flight: self.max_in_flight,
            available: self.available(),
            // Cannot truncate: at most MAX_MEMBERS x MAX_IN_FLIGHT.
            in_use: out as usize,
            allocations,
            releases,
            peak: self.timing.as_ref().map(|t| t.peak.load(Ordering::Relaxed)),
            waited: w
                .waited
                .load(Ordering::Relaxed)
                .saturating_sub(b.waited.load(Ordering::Relaxed)),
            average_wait: Duration::from_nanos(waited_ns.checked_div(allocations).unwrap_or(0)),
            waiting: self.waiting(),
            holders,
        }
    }

    /// Resets the counters: allocations, releases, waits to zero, the peak to the leases out
    /// now. The leases themselves are untouched.
    pub(crate) fn reset_stats(&self) {
        let (taken, released) = self.counts();
        let b = &self.baseline;
        b.taken.store(taken, Ordering::Relaxed);
        b.released.store(released, Ordering::Relaxed);
        let w = &self.waits;
        b.waited_ns
            .store(w.waited_ns.load(Ordering::Relaxed), Ordering::Relaxed);
        b.waited
            .store(w.waited.load(Ordering::Relaxed), Ordering::Relaxed);
        if let Some(t) = &self.timing {
            t.peak
                .store(t.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    /// The member this thread released last (of whichever pool): where its next acquire looks
    /// first (see `PoolCore::take`).
    static HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
fn hint() -> usize {
    #[cfg(loom)]
    {
        0
    }
    #[cfg(not(loom))]
    {
        HINT.get()
    }
}

#[inline]
fn set_hint(i: usize) {
    #[cfg(not(loom))]
    HINT.set(i);
    #[cfg(loom)]
    let _ = i;
}

/// `r` mapped onto `0..n` (multiply and shift: no division).
#[inline]
fn below(r: u64, n: usize) -> usize {
    // Cannot truncate: the result is below n.
    ((u128::from(r) * n as u128) >> 64) as usize
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
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        })
    }
}
