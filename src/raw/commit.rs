//! The commit point: every change that commits (its CAS won) is reported here, once, and
//! nothing that did not commit ever is.
//!
//! Whatever must follow the registry's state change by change hooks in here, never into the
//! operations one by one: today the length (`len.rs`); the event log, indexes, capacity and
//! pool accounting of later features belong here too. The sites that call [`RawMap::commit`]
//! are exactly the winning CASes that change a name's binding:
//! - `insert`: a fresh slot, the name's own tombstone, or over a dead weak binding
//!   ([`Change::Bound`]);
//! - `write_if`: a removal or a replacement ([`Change::Removed`], [`Change::Replaced`]);
//! - a migration dropping a dead weak binding instead of copying it ([`Change::Removed`] with
//!   [`Cause::Dead`]).
//!
//! Copies between tables, sealing and tombstone reuse change no binding and are not reported.
//! A commit is reported after its CAS, by the thread that won it, before that thread returns.

use crossbeam_epoch::Guard;

use super::RawMap;
use super::index::{self, Index};
use super::node::Node;
use crate::watch::Reason;

/// A change that has just committed.
// The nodes are for the observers: the event log (`log.rs`), the unit tests' recorder
// (`hook::record_commit`), and the indexes of later features.
pub(crate) enum Change<'g, V> {
    /// `new` is bound to its name; `purged` is the dead weak binding it took the place of, if
    /// any (that binding was invisible already: the name was free).
    Bound {
        new: &'g Node<V>,
        purged: Option<&'g Node<V>>,
    },
    /// `old`'s name is bound to `new` instead.
    Replaced { old: &'g Node<V>, new: &'g Node<V> },
    /// `old` is no longer bound (it is its name's tombstone now).
    Removed { old: &'g Node<V>, cause: Cause },
}

/// Why a binding was removed, as far as the core knows (the facade knows more: explicit,
/// conditional, a guard dropped, a purge on read).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Cause {
    /// A conditional write asked for it.
    Write,
    /// A migration met a dead binding (a weak one whose owner had died, an expired or
    /// condemned one), buried it and did not copy it.
    Dead,
}

impl<V> Change<'_, V> {
    /// Whether a node it involves carries more than a plain strong value (metadata, a
    /// liveness cell, a weak value): only then does anything but the length move.
    #[inline(always)]
    fn touches_ext(&self) -> bool {
        match *self {
            Change::Bound { new, purged } => new.is_ext() || purged.is_some(),
            Change::Replaced { old, new } => old.is_ext() || new.is_ext(),
            Change::Removed { old, .. } => old.is_ext(),
        }
    }

    /// The node it binds, if any.
    fn bound(&self) -> Option<&Node<V>> {
        match *self {
            Change::Bound { new, .. } | Change::Replaced { new, .. } => Some(new),
            Change::Removed { .. } => None,
        }
    }

    /// Whether a node it involves carries metadata (only then does the index move).
    #[inline(always)]
    fn has_meta(&self) -> bool {
        match *self {
            Change::Bound { new, purged } => {
                new.meta().is_some() || purged.is_some_and(|p| p.meta().is_some())
            }
            Change::Replaced { old, new } => old.meta().is_some() || new.meta().is_some(),
            Change::Removed { old, .. } => old.meta().is_some(),
        }
    }
}

impl<V> RawMap<V> {
    /// Keeps the discovery index (see `index.rs`): publishes the new binding's terms, and
    /// retracts the old binding's that the new one does not carry.
    fn reindex(&self, index: &Index, change: &Change<'_, V>, guard: &Guard) {
        let (old, new) = match *change {
            Change::Bound { new, purged } => (purged, Some(new)),
            Change::Replaced { old, new } => (Some(old), Some(new)),
            Change::Removed { old, .. } => (Some(old), None),
        };
        let current = |name: &str| {
            self.get_cold(self.hash(name), name, guard)
                .filter(|n| n.is_visible())
                .and_then(|n| n.meta().map(|m| &**m))
        };
        if let Some(new) = new.filter(|n| n.meta().is_some()) {
            let meta = new.meta().expect("filtered");
            index.publish(new.name(), meta, guard);
            #[cfg(not(genreg_mutant = "index_unchecked"))]
            {
                let now = self.get_cold(new.hash, new.name(), guard);
                if !now.is_some_and(|n| std::ptr::eq(n, new)) {
                    let terms = index::terms(new.name(), meta);
                    index.tidy(new.name(), terms, || current(new.name()), guard);
                }
            }
        }
        if let Some(old) = old.and_then(|o| o.meta().map(|m| (o, m))) {
            let (old, meta) = old;
            let kept = new.and_then(|n| n.meta());
            index.before_retract();
            let name = old.name();
            let terms =
                index::terms(name, meta).filter(|t| !kept.is_some_and(|k| t.held_by(name, k)));
            index.tidy(name, terms, || current(name), guard);
        }
    }

    /// What follows a change that involves more than plain strong values: the discovery index
    /// (metadata), the reapers' intake (a binding with a deadline, see `expiry.rs`).
    #[cold]
    #[inline(never)]
    fn commit_ext(&self, change: &Change<'_, V>, guard: &Guard) {
        if let Some(index) = &self.index {
            if change.has_meta() {
                self.reindex(index, change, guard);
            }
        }
        // The binding that is no longer bound, if it had a cell of its own (a same-tag
        // replacement keeps it): removed alive, it cannot expire any more.
        let ended = match *change {
            Change::Removed { old, .. }
            | Change::Bound {
                purged: Some(old), ..
            } => Some(old),
            Change::Replaced { old, new } if old.tag != new.tag => Some(old),
            Change::Bound { purged: None, .. } | Change::Replaced { .. } => None,
        };
        if let Some(live) = ended.and_then(|o| o.live()) {
            live.retire();
        }
        // Pool accounting: a pool whose name is no longer bound (however it went) is closed:
        // nothing more is leased, and its waiters wake to find it gone (see `pool/`).
        if let Change::Removed { old, .. } = *change {
            if let Some(tie) = old.pool().filter(|t| t.member.is_none()) {
                tie.core.close();
            }
        }
        if let Some(new) = change.bound() {
            // A deadline, or a critical state that a limit may turn into a removal (a
            // replacement carries its predecessor's health).
            if new.live().is_some_and(|l| l.may_fall_due()) {
                self.expiry.note(new.name(), new.tag);
            }
        }
    }

    /// Reports a committed change (see the module docs): `rev` is the revision drawn for its
    /// CAS (see `log.rs`), `reason` why a removal was asked for.
    #[inline(always)]
    pub(crate) fn commit(&self, change: Change<'_, V>, rev: u64, reason: Reason, guard: &Guard) {
        super::hook::record_commit(&change);
        if let Some(log) = &self.log {
            log.record(&change, rev, reason, guard);
        }
        self.wake.notify();
        if change.touches_ext() {
            self.commit_ext(&change, guard);
        }
        match change {
            // A dead weak binding was not counted as gone yet: the count does not move.
            Change::Bound {
                purged: Some(_), ..
            }
            | Change::Replaced { .. } => {}
            Change::Bound { purged: None, .. } => self.len.add(1),
            Change::Removed { .. } => {
                self.len.add(-1);
                // The binding's place under the bound is free (see `capacity.rs`). (A dead weak
                // binding replaced by a registration passed its place on: nothing to release.)
                self.release();
            }
        }
    }
}
