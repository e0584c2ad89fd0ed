//! The reapers' intake: which bindings with a deadline (or a health state that can condemn
//! them) were bound since a reaper last looked.
//!
//! A reaper keeps its own schedule (a heap of due times, see `liveness/reaper.rs`); the
//! registry only tells it about new bindings, through a push-only list that the reaper takes
//! whole. While no reaper is attached nothing is pushed (a registry that never reaps pays
//! nothing and keeps nothing); a reaper attaching walks the table once.
//!
//! # The protocol (a Dekker pair)
//! - A commit that binds a node with a deadline: its slot CAS, a SeqCst fence, then the
//!   reaper count; if nonzero, push `(name, tag)`.
//! - A reaper attaching: increment the count, a SeqCst fence, then walk the table.
//!
//! Of two SeqCst fences one comes first: either the committer reads the count (and pushes), or
//! the reaper's walk reads the slot (and schedules the binding itself). A binding may be
//! scheduled twice; the reaper keeps one entry per tag.
//!
//! The list is a Treiber stack that is only pushed to and taken whole (a swap with null), so no
//! node is ever read after another thread could free it: no ABA, no epoch needed.

use std::ptr;

use crate::sync::{AtomicPtr, AtomicUsize, Ordering, fence};
use crate::tag::Tag;

/// One pushed binding.
struct Due {
    name: Box<str>,
    tag: Tag,
    next: *mut Due,
}

/// See the module docs.
pub(crate) struct Expiry {
    reapers: AtomicUsize,
    head: AtomicPtr<Due>,
}

// SAFETY: the list's nodes are owned by the list (pushed by one thread, taken whole by
// another); they hold only `Box<str>` and `Tag`, which are `Send`.
unsafe impl Send for Expiry {}
// SAFETY: as above: all access to the list goes through the atomic head.
unsafe impl Sync for Expiry {}

impl Expiry {
    pub(crate) fn new() -> Expiry {
        Expiry {
            reapers: AtomicUsize::new(0),
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// After the CAS that bound `(name, tag)`: tells the reapers, if any (see the protocol).
    pub(crate) fn note(&self, name: &str, tag: Tag) {
        fence(Ordering::SeqCst); // necessary: the committer's half of the Dekker pair
        if self.reapers.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.push(name.into(), tag);
    }

    /// Pushes one binding.
    fn push(&self, name: Box<str>, tag: Tag) {
        let due = Box::into_raw(Box::new(Due {
            name,
            tag,
            next: ptr::null_mut(),
        }));
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `due` is ours until the CAS below publishes it.
            unsafe { (*due).next = head };
            // Release: the taker reads the node's fields.
            match self
                .head
                .compare_exchange_weak(head, due, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// A reaper attaches: afterwards, it walks the table (see the protocol).
    pub(crate) fn attach(&self) {
        self.reapers.fetch_add(1, Ordering::SeqCst); // necessary: ordered with the fence below
        fence(Ordering::SeqCst); // necessary: the reaper's half of the Dekker pair
    }

    /// A reaper detaches. The last one out drops what is pending, unless a reaper attached
    /// meanwhile (whose walk may have missed what was pushed for it): then it is put back.
    pub(crate) fn detach(&self) {
        let sc = Ordering::SeqCst; // necessary: an attach's increment is ordered with both
        if self.reapers.fetch_sub(1, sc) == 1 {
            let pending = self.take();
            if self.reapers.load(sc) != 0 {
                for (name, tag) in pending {
                    self.push(name, tag);
                }
            }
        }
    }

    /// Takes every pushed binding (newest first).
    pub(crate) fn take(&self) -> Vec<(Box<str>, Tag)> {
        // Acquire: pairs with the pushes' Release.
        let mut p = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        let mut out = Vec::new();
        while !p.is_null() {
            // SAFETY: the swap took the whole list: its nodes are ours, each freed once.
            let due = unsafe { Box::from_raw(p) };
            p = due.next;
            out.push((due.name, due.tag));
        }
        out
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        drop(self.take());
    }
}
