//! Removed values on their way to the epoch collector: lists of the registry's, so that any
//! thread can hand them over.
//!
//! # Why
//! crossbeam-epoch keeps deferred work in a bag private to the thread that deferred it, and
//! moves the bag to the global queue only when it is full (64 items) or flushed. A value removed
//! by one thread could sit in that thread's bag indefinitely, out of reach of any other thread's
//! collection: a removed agent's inbox `Sender` would never be dropped, and an orchestrator
//! waiting for the inbox to close would wait for ever. Flushing the bag at every removal fixes
//! that but costs an allocation and a collection attempt each time (measured: a register +
//! unregister cycle went from ~180 ns to ~620 ns).
//!
//! # The rule
//! A removal pushes the removed node onto a list (one CAS; the node itself is the list entry,
//! so nothing is allocated). There is one list per stripe and each thread pushes onto its own
//! stripe's (as it counts the length, `len.rs`), so removing threads share no cache line.
//! Whenever a list reaches [`BATCH`] entries, the thread that pushed the last one takes the
//! whole list, defers one job that frees it, and flushes that job to the global queue;
//! [`Pending::hand_over`] (which `Registry::collect` calls) does the same for every stripe, from
//! any thread, whatever the counts. So at most [`BATCH`] removed values per stripe wait in a
//! registry between hand-overs. A handed-over list is freed by the epoch collector once every
//! thread pinned at its hand-over has unpinned; `collect()` then runs collections until every
//! list handed over so far has been freed (or a bounded number of passes is spent).
//!
//! # Why deferring late is sound
//! A node is pushed after the CAS that unlinked it, and the job that frees it is deferred later
//! still. Deferring waits for every thread pinned *at the deferral*; any thread that could have
//! reached the node was pinned at its unlinking, and is either still pinned at the deferral
//! (then the job waits for it) or has unpinned (then it no longer holds the node).
//!
//! # Orderings
//! - A push writes the entry's link, then publishes the entry with a `Release` CAS on its
//!   stripe's `head`; a take swaps `head` with `Acquire`, so the taker reads every link of the
//!   list it took.
//! - There is no ABA on a push's CAS: a node is pushed once in its life, and a taken node is
//!   freed only after the pushing thread (pinned while it pushes) has unpinned, so `head` can
//!   never come back to a value the pusher read before a take.
//! - `count` is `Relaxed`: a heuristic for when to hand over, never used for memory.

use std::sync::Arc;

use crossbeam_epoch::Guard;

use super::len::{STRIPES, stripe};
use super::node::{NOT_PENDING, Node};
use super::reclaim::{drop_node, drop_value_job};
use crate::sync::{AtomicUsize, Ordering, UnmodelledAtomicUsize};

/// Entries that trigger a hand-over. One under loom: models then see every free as soon as
/// it is retired, as they would without this list.
#[cfg(not(loom))]
pub(crate) const BATCH: usize = 32;
#[cfg(loom)]
pub(crate) const BATCH: usize = 1;

/// What an entry owns (the low bit of a link).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// A binding replaced or purged in favour of a new one: its value and its memory.
    Whole = 0,
    /// A removed binding, now its name's tombstone: its value, and one share of its memory.
    Value = 1,
}

/// The registry's lists of removed nodes not yet handed to the epoch collector.
pub(crate) struct Pending<V> {
    /// One list per stripe, so that removing threads do not share a cache line: each thread
    /// pushes onto its own stripe, as it counts the length (`len.rs`).
    stripes: Box<[Stripe]>,
    /// Lists handed over so far, and how many of their jobs have run: `Registry::collect`
    /// collects until the two are equal (every list handed over has been freed). Progress
    /// counters, not part of any protocol a model checks; `ran` is shared with the jobs, which
    /// may run after the map is gone.
    handed: UnmodelledAtomicUsize,
    ran: Arc<UnmodelledAtomicUsize>,
    _nodes: std::marker::PhantomData<*mut Node<V>>,
}

/// One list, alone on its cache line pair.
#[repr(align(128))]
struct Stripe {
    /// The newest entry as a tagged node address (`Kind` in the low bit), or 0.
    head: AtomicUsize,
    /// Entries pushed since the last hand-over (a hint).
    count: AtomicUsize,
}

// SAFETY: the lists only move node pointers between threads; the nodes' values are `Send` and
// `Sync` wherever the map is (see `RawMap`).
unsafe impl<V: Send + Sync> Send for Pending<V> {}
// SAFETY: as above.
unsafe impl<V: Send + Sync> Sync for Pending<V> {}

impl<V> Pending<V> {
    pub(crate) fn new() -> Pending<V> {
        Pending {
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    head: AtomicUsize::new(0),
                    count: AtomicUsize::new(0),
                })
                .collect(),
            handed: UnmodelledAtomicUsize::new(0),
            ran: Arc::new(UnmodelledAtomicUsize::new(0)),
            _nodes: std::marker::PhantomData,
        }
    }

    /// Pushes a node the caller just unlinked onto this thread's stripe (see the module docs),
    /// and hands the stripe's list over if it is long enough.
    ///
    /// # Safety
    /// The caller's CAS unlinked `node` under `guard` and it gives up, to this list, what
    /// `kind` says (once).
    pub(crate) unsafe fn push(&self, node: &Node<V>, kind: Kind, guard: &Guard) {
        // A node is retired once in its life; a second push would tie the lists into a knot
        // (and free the node twice). Cheap to check, and a bug elsewhere shows here at once.
        assert_eq!(
            node.pending_next.load(Ordering::Relaxed),
            NOT_PENDING,
            "genreg internal invariant broken: a removed node was retired twice"
        );
        let entry = std::ptr::from_ref(node) as usize | kind as usize;
        let stripe = &self.stripes[stripe()];
        let mut head = stripe.head.load(Ordering::Relaxed);
        loop {
            node.pending_next.store(head, Ordering::Relaxed);
            // Release: publishes the link just written (see the module docs).
            match stripe.head.compare_exchange_weak(
                head,
                entry,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        if stripe.count.fetch_add(1, Ordering::Relaxed) + 1 >= BATCH {
            self.hand_over_stripe(stripe, guard);
        }
    }

    /// Hands every stripe's list over, whatever its length (`Registry::collect`).
    pub(crate) fn hand_over(&self, guard: &Guard) {
        for stripe in self.stripes.iter() {
            self.hand_over_stripe(stripe, guard);
        }
    }

    /// Takes one stripe's whole list and defers one job that frees it; flushes the job to the
    /// global queue, where any thread's collection can run it.
    fn hand_over_stripe(&self, stripe: &Stripe, guard: &Guard) {
        if stripe.head.load(Ordering::Relaxed) == 0 {
            return;
        }
        let list = stripe.head.swap(0, Ordering::Acquire);
        stripe.count.store(0, Ordering::Relaxed);
        if list == 0 {
            return;
        }
        self.handed.fetch_add(1, Ordering::Relaxed);
        let ran = Arc::clone(&self.ran);
        // SAFETY: every entry is unlinked and owned by the list (see `push`); the job runs after
        // every thread pinned now has unpinned (see the module docs).
        unsafe {
            guard.defer_unchecked(move || {
                free_list::<V>(list);
                // Release: whoever sees the count sees the drops.
                ran.fetch_add(1, Ordering::Release);
            })
        };
        #[cfg(not(loom))]
        guard.flush();
    }

    /// Lists handed over so far.
    pub(crate) fn handed(&self) -> usize {
        self.handed.load(Ordering::Relaxed)
    }

    /// Handed-over lists whose job has run (Acquire: their drops happened before).
    pub(crate) fn ran(&self) -> usize {
        self.ran.load(Ordering::Acquire)
    }

    /// Frees every entry now (the map is being dropped: nobody can reach them).
    pub(crate) fn free_all(&mut self) {
        for stripe in self.stripes.iter() {
            // A swap rather than `get_mut` (loom's atomics have none); nobody else can race it.
            let list = stripe.head.swap(0, Ordering::Acquire);
            // SAFETY: `&mut self` on the map's drop: no thread can reach any node any more.
            unsafe { free_list::<V>(list) }
        }
    }
}

/// Frees every entry of a taken list, per its kind.
///
/// # Safety
/// The list was taken from `Pending::head` and no thread can reach its nodes any more.
unsafe fn free_list<V>(mut entry: usize) {
    while entry != 0 {
        let node = (entry & !1) as *mut Node<V>;
        let kind = entry & 1;
        // SAFETY: the entry holds a share of the node (see `Kind`): it is allocated until freed
        // below; its link was written before it was published.
        entry = unsafe { (*node).pending_next.load(Ordering::Relaxed) };
        // SAFETY: as the caller guarantees; each entry is freed once, per its kind.
        unsafe {
            if kind == Kind::Value as usize {
                drop_value_job(node);
            } else {
                drop_node(node);
            }
        }
    }
}
