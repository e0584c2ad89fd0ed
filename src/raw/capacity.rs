//! The bound on live bindings (`Builder::max_entries`): never more than `limit` at any
//! instant, under any concurrency.
//!
//! # The protocol
//! `admitted` counts places: every binding holds one, and so does a registration between its
//! admission and its CAS.
//! - **Admit** right before a CAS that would add a binding (into an empty slot, or reusing the
//!   name's tombstone): a compare-and-swap loop that increments `admitted` only while it is
//!   below `limit`; if it is not, the registration is refused (`Full`) and changes nothing.
//!   A CAS that then loses gives the place back at once.
//! - **Release** at the commit point, once per removal (explicit, conditional, a dead weak
//!   binding purged, a migration dropping one): the binding's place is free again before the
//!   remover returns, so a registration that begins after it finds it.
//! - A registration over a dead weak binding of its own name takes that binding's place: no
//!   admission, and the removal it implies releases nothing (`commit.rs`).
//!
//! So the number of bindings never exceeds `admitted`, which never exceeds `limit`: the
//! counter moves by read-modify-writes only (one modification order), a binding's admission
//! happens before its CAS, and its release after the CAS that removed it, which read the binding
//! (so the admission happens before the release). A `Full` is answered only when `limit`
//! places are held, by bindings or by registrations whose CAS is in flight.
//!
//! # Orderings
//! AcqRel on every read-modify-write of `admitted` (the happens-before chain above runs through
//! the SeqCst slot CASes); Relaxed on the loads that seed the loop.
//!
//! A binding that is a dead weak one still holds its place until it is purged: the facade
//! purges dead weak bindings and tries once more before it reports `Full`.

use crate::sync::{AtomicUsize, Ordering};

/// The bound and its count.
pub(crate) struct Capacity {
    limit: usize,
    admitted: AtomicUsize,
}

impl Capacity {
    pub(crate) fn new(limit: usize) -> Capacity {
        Capacity {
            limit,
            admitted: AtomicUsize::new(0),
        }
    }

    /// The bound.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a place, if one is free. (Out of line: a registry without a bound must not pay
    /// for this loop's code in its write paths; one with a bound pays a call.)
    #[inline(never)]
    pub(crate) fn admit(&self) -> bool {
        #[cfg(not(genreg_mutant = "admit_race"))]
        {
            let mut held = self.admitted.load(Ordering::Relaxed);
            loop {
                if held >= self.limit {
                    return false;
                }
                match self.admitted.compare_exchange_weak(
                    held,
                    held + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    // Another admission or release moved it: decide again on its value.
                    Err(now) => held = now,
                }
            }
        }
        #[cfg(genreg_mutant = "admit_race")]
        {
            // The mutant: check, then increment (two registrations can both pass the check).
            if self.admitted.load(Ordering::Acquire) >= self.limit {
                return false;
            }
            self.admitted.fetch_add(1, Ordering::AcqRel);
            true
        }
    }

    /// Gives a place back (a lost CAS after `admit`, or a removal). (Out of line, as `admit`.)
    #[inline(never)]
    pub(crate) fn release(&self) {
        let before = self.admitted.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a place released twice");
    }
}
