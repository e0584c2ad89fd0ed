//! The map's length: a counter striped over cache lines.
//!
//! Every successful insert and remove adjusts the length. One shared counter would be one cache
//! line that every writing thread takes in turn, the single hottest line of a write-heavy
//! workload; striping gives each thread its own line most of the time, and a read of the
//! length sums the stripes. Like the single counter it replaces, the sum is an instant's
//! estimate (Relaxed: the length never publishes memory), exact once writers are quiet.

use std::cell::Cell;
use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use crate::sync::{AtomicIsize, Ordering};

/// Stripes per map. Loom models use one: the stripe a thread picks cannot matter to them, and
/// every atomic adds to the states loom explores.
#[cfg(loom)]
pub(crate) const STRIPES: usize = 1;
#[cfg(not(loom))]
pub(crate) const STRIPES: usize = 16;

/// One stripe, alone on its cache line pair (adjacent-line prefetching pulls lines in twos).
#[repr(align(128))]
struct Stripe(AtomicIsize);

pub(crate) struct Len {
    stripes: Box<[Stripe]>,
}

/// Hands each thread a stripe index, round-robin, so that threads spread evenly.
static NEXT_STRIPE: StdAtomicUsize = StdAtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe (also used by the pending list, `pending.rs`).
#[inline]
pub(crate) fn stripe() -> usize {
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            // Relaxed: only the spread of the numbers matters.
            i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
            s.set(i);
        }
        i % STRIPES
    })
}

impl Len {
    pub(crate) fn new() -> Len {
        Len {
            stripes: (0..STRIPES).map(|_| Stripe(AtomicIsize::new(0))).collect(),
        }
    }

    /// Adds `delta` (+1 after an insert, -1 after a remove).
    #[inline]
    pub(crate) fn add(&self, delta: isize) {
        // Relaxed: a count, never used to publish or acquire memory.
        self.stripes[stripe()].0.fetch_add(delta, Ordering::Relaxed);
    }

    /// The sum of the stripes. A stripe may be negative (a thread may remove what another
    /// inserted), and the sum may dip below zero for an instant; reported as 0 then.
    pub(crate) fn get(&self) -> usize {
        let sum: isize = self
            .stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        usize::try_from(sum).unwrap_or(0)
    }
}
