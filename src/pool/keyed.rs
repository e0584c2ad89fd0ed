//! Keyed holds: [`Pool::acquire_for`](super::Pool::acquire_for), MARSYS's `branch_id`.
//!
//! A key holds at most one slot of a pool at a time. The holds live in a registry of their
//! own (the crate's lock-free map, keyed by the key), each counting the leases that share it:
//! - acquiring for a key that holds a slot adds a lease to its hold (a CAS from a count above
//!   zero: a hold whose count reached zero is being let go and is never revived);
//! - acquiring for a key that holds none takes a slot, then binds a hold for it; if another
//!   acquirer bound one first, the slot is given back and its hold is joined instead;
//! - the last lease of a hold frees its slot, then unbinds it (by its tag: never a newer hold
//!   of the key). An acquirer that meets a hold at zero unbinds it itself and starts again,
//!   so nobody waits for the last lease's owner; one that finds every member full looks for a
//!   hold again before it reports `Exhausted`.
//!
//! One window stays: between an acquirer's claim of a slot for a key and the binding of its
//! hold, another acquirer for the same key finds no hold; if every member is full then, it
//! reports `Exhausted` (a waiting one waits for the next release). A waiter woken by a release
//! that then joins its key's hold has not taken the freed slot: it passes the wake on.
//!
//! An acquirer that lost the race to bind a key's hold gives its slot back uncounted
//! (`unclaim`): the statistics count only leases handed out.

use std::sync::{Arc, OnceLock};

use super::core::{NoSlot, PoolCore};
use crate::registry::Registry;
use crate::sync::{AtomicUsize, Ordering};
use crate::tag::Tag;

/// The holds of one pool, by key.
pub(crate) type Holds = Registry<Arc<Hold>>;

/// One key's slot, shared by the leases acquired for that key.
pub(crate) struct Hold {
    pub(crate) key: Box<str>,
    pub(crate) member: usize,
    pub(crate) bit: u32,
    /// Leases sharing the hold; zero once the last one has gone (for good).
    refs: AtomicUsize,
    /// The hold's binding in [`Holds`], set right after it is bound (before its first lease is
    /// handed out, so before any lease can let it go).
    tag: OnceLock<Tag>,
}

impl Hold {
    /// Adds a lease to the hold unless it is being let go.
    fn join(&self) -> bool {
        let mut n = self.refs.load(Ordering::Relaxed);
        while n > 0 {
            match self
                .refs
                .compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => n = seen,
            }
        }
        false
    }
}

impl<V> PoolCore<V> {
    fn holds(&self) -> &Holds {
        self.holds.get_or_init(|| {
            let builder = Registry::builder();
            match &self.collector {
                Some(c) => builder.collector(c.clone()).build(),
                None => builder.build(),
            }
        })
    }

    /// A slot for `key`: the one it holds (`true`: joined), else a new one. `Err(Err(e))` for a
    /// key that is not a valid name.
    pub(crate) fn acquire_for(
        &self,
        key: &str,
    ) -> Result<(Arc<Hold>, bool), Result<NoSlot, crate::Error>> {
        if let Err(e) = crate::pinned::invalid(key) {
            return Err(Err(e));
        }
        let holds = self.holds();
        loop {
            if !self.is_open() {
                return Err(Ok(NoSlot::Closed));
            }
            if let Some(e) = holds.get(key) {
                if e.value.join() {
                    return Ok((e.value, true));
                }
                // Being let go: finish that for its owner, then start again.
                let _ = holds.unregister_if_same(key, e.tag);
                continue;
            }
            let (member, bit) = match self.take() {
                Ok(slot) => slot,
                // Full: unless a hold for the key was bound meanwhile (joined next round).
                Err(NoSlot::Full) if holds.contains(key) => continue,
                Err(e) => return Err(Ok(e)),
            };
            let hold = Arc::new(Hold {
                key: key.into(),
                member,
                bit,
                refs: AtomicUsize::new(1),
                tag: OnceLock::new(),
            });
            match holds.register_detached(key, Arc::clone(&hold)) {
                Ok(tag) => {
                    let _ = hold.tag.set(tag);
                    return Ok((hold, false));
                }
                // Another acquirer bound a hold for the key first: join that one.
                Err(_) => self.unclaim(member, bit),
            }
        }
    }

    /// Lets go of one lease of `hold`; the last one frees its slot, then unbinds the hold (in
    /// that order: an acquirer for the key that finds no hold finds the slot free).
    pub(crate) fn release_hold(&self, hold: &Hold) {
        if hold.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.release(hold.member, hold.bit);
            if let (Some(holds), Some(tag)) = (self.holds.get(), hold.tag.get()) {
                let _ = holds.unregister_if_same(&hold.key, *tag);
            }
        }
    }

    /// The keys holding slots now: `(key, member, slot)`.
    pub(crate) fn keyed(&self) -> Vec<(String, usize, u32)> {
        self.holds.get().map_or_else(Vec::new, |holds| {
            holds
                .entries()
                .into_iter()
                // A hold let go of (its slot freed, its binding about to go) holds nothing.
                .filter(|(_, e)| e.value.refs.load(Ordering::Relaxed) > 0)
                .map(|(key, e)| (key, e.value.member, e.value.bit))
                .collect()
        })
    }
}
