//! The liveness cell of a binding: its deadline (TTL) and its health, the two kinds of
//! liveness that change after a node is published (a weak binding's is its owner's life).
//!
//! A node is immutable; a binding's liveness is not, so it lives in a cell that every node of
//! the binding shares (a metadata update or a health record that needs a new node keeps the
//! cell: same tag, same cell), and that no other binding ever shares (a replacement, which
//! mints a new tag, gets a copy).
//!
//! # The protocol
//! Two words, each changed only by compare-and-swap:
//! - `deadline`: [`NEVER`] (no TTL), [`BURIED`] (dead for good), else the time (clock
//!   nanoseconds) at which the binding expires. A binding is visible while
//!   `deadline > now`. **Burying** is the one way a binding is declared dead for removal: a CAS
//!   of the deadline it read (already passed) to `BURIED`. A **keepalive** is a CAS of the
//!   deadline it read (not yet passed) to a later one. Both CAS the same word from the same
//!   value, so exactly one of a keepalive and a burial that race wins: a binding renewed before
//!   its deadline is never removed as expired, and a buried one is never revived (a keepalive
//!   that reads `BURIED`, or a passed deadline, fails).
//! - `health`: a state and the time it was entered, packed. **Condemning** a binding critical
//!   for too long is a CAS of the word it read (critical, since) to [`CONDEMNED`]; a health
//!   record is a CAS too and fails on `CONDEMNED`, so a binding reported healthy before the
//!   condemnation is never removed as critical. A condemned binding is then buried (a store:
//!   a keepalive after the condemnation does not save it).
//!
//! Reads load the deadline (Acquire) and, if it is not `NEVER`, the clock: no write.

use std::sync::Arc;

use crossbeam_epoch::{Atomic, Guard, Owned};

use crate::liveness::clock::{self, SharedClock};
use crate::liveness::{HealthReport, HealthState};
use crate::sync::{AtomicU64, Ordering};
use crate::watch::Reason;

/// `deadline`: no TTL.
pub(crate) const NEVER: u64 = u64::MAX;
/// `deadline`: dead for good (expired and claimed, or condemned). Every `now` is `>=` it.
pub(crate) const BURIED: u64 = 0;
/// `deadline`: the binding was removed (or replaced) alive; it can no longer expire. Above
/// every real deadline, which are clamped below it.
pub(crate) const RETIRED: u64 = NEVER - 1;
/// The latest real deadline.
const LATEST: u64 = RETIRED - 1;

/// `health` low bits: the state.
const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
/// `health`: the state of a binding condemned as critical for too long.
const CONDEMNED_STATE: u64 = 4;
/// The whole `health` word of a condemned binding.
pub(crate) const CONDEMNED: u64 = CONDEMNED_STATE;
/// The latest time the health word can carry (later times saturate: 73 years of nanoseconds).
const MAX_SINCE: u64 = u64::MAX >> STATE_BITS;

fn pack(state: HealthState, since: u64) -> u64 {
    since.min(MAX_SINCE) << STATE_BITS | state as u64
}

fn unpack(word: u64) -> Option<(HealthState, u64)> {
    let state = match word & STATE_MASK {
        0 => HealthState::Unknown,
        1 => HealthState::Passing,
        2 => HealthState::Warning,
        3 => HealthState::Critical,
        _ => return None,
    };
    Some((state, word >> STATE_BITS))
}

/// Why a keepalive or a health record failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Gone {
    /// The deadline passed (or the binding was buried as expired).
    Expired,
    /// The binding was condemned as critical for too long.
    Condemned,
    /// The binding was removed or replaced alive.
    Retired,
}

/// A binding's deadline and health (see the module docs).
pub(crate) struct Live {
    clock: SharedClock,
    /// The time to live in nanoseconds; 0: none.
    ttl: u64,
    deadline: AtomicU64,
    health: AtomicU64,
    /// The last health report recorded, if any. Swapped whole; the old one is freed through
    /// the epoch collector.
    report: Atomic<HealthReport>,
}

impl Live {
    /// A cell for a new binding: its deadline `ttl` from now (`None`: no TTL), health unknown.
    pub(crate) fn new(clock: SharedClock, ttl: Option<u64>) -> Live {
        let now = clock::now(&*clock);
        let (ttl, deadline) = match ttl {
            // A TTL of at least a nanosecond; a deadline past the clock's range is `NEVER - 1`
            // (it must stay a deadline, and `BURIED` is below every deadline `now + ttl`).
            Some(ttl) => {
                let ttl = ttl.max(1);
                (ttl, now.saturating_add(ttl).min(LATEST))
            }
            None => (0, NEVER),
        };
        Live {
            clock,
            ttl,
            deadline: AtomicU64::new(deadline),
            health: AtomicU64::new(pack(HealthState::Unknown, now)),
            report: Atomic::null(),
        }
    }

    /// The cell of a binding that replaces this one (a new tag): the same clock, TTL, deadline
    /// and health, and a copy of the last report.
    pub(crate) fn successor(&self, guard: &Guard) -> Live {
        let report = match self.report(guard) {
            Some(r) => Atomic::new(r),
            None => Atomic::null(),
        };
        Live {
            clock: Arc::clone(&self.clock),
            ttl: self.ttl,
            deadline: AtomicU64::new(self.deadline.load(Ordering::Acquire)),
            health: AtomicU64::new(self.health.load(Ordering::Acquire)),
            report,
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        clock::now(&*self.clock)
    }

    /// Whether a read sees the binding: not buried, not condemned, and before its deadline.
    #[inline]
    pub(crate) fn is_visible(&self) -> bool {
        // Acquire: pairs with a keepalive's CAS (a renewed deadline is read with what came
        // before it), with a burial and with a condemnation (invisible from its CAS on, before
        // the burial that follows it).
        let d = self.deadline.load(Ordering::Acquire);
        (d == NEVER || d > self.now()) && self.health.load(Ordering::Acquire) != CONDEMNED
    }

    /// Whether the binding is buried (dead for good).
    pub(crate) fn is_buried(&self) -> bool {
        self.deadline.load(Ordering::Acquire) == BURIED
    }

    /// The binding was removed alive (or replaced by another tag): it can no longer expire, so
    /// that its guard never reports an expiry that did not happen. A buried binding stays
    /// buried.
    pub(crate) fn retire(&self) {
        let mut d = self.deadline.load(Ordering::Acquire);
        while d != BURIED && d != NEVER && d != RETIRED {
            match self.deadline.compare_exchange_weak(
                d,
                RETIRED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => d = now,
            }
        }
    }

    /// Whether the binding was condemned (it is then invisible, and buried or about to be).
    pub(crate) fn is_condemned(&self) -> bool {
        self.health.load(Ordering::Acquire) == CONDEMNED
    }

    /// Whether a reaper may have to remove the binding one day: it has a deadline, or it is
    /// critical (which a limit turns into a removal).
    pub(crate) fn may_fall_due(&self) -> bool {
        self.has_ttl() || matches!(self.health(), Some((HealthState::Critical, _)))
    }

    /// Whether the binding has a TTL.
    pub(crate) fn has_ttl(&self) -> bool {
        self.ttl != 0
    }

    /// The deadline: `None` without a TTL (or once retired); `Some(BURIED)` once buried.
    pub(crate) fn deadline(&self) -> Option<u64> {
        let d = self.deadline.load(Ordering::Acquire);
        (d != NEVER && d != RETIRED).then_some(d)
    }

    /// Renews the deadline to `ttl` from now, if it has not passed: one CAS (see the module
    /// docs). Returns the deadline now in force (`None`: no TTL).
    pub(crate) fn keepalive(&self) -> Result<Option<u64>, Gone> {
        loop {
            let d = self.deadline.load(Ordering::Acquire);
            if d == BURIED {
                return Err(self.gone());
            }
            if d == NEVER {
                return Ok(None);
            }
            if d == RETIRED {
                return Err(Gone::Retired);
            }
            // The clock is read after the deadline: a keepalive that reads a deadline and then
            // a time past it fails, whatever happened in between.
            let now = self.now();
            if d <= now {
                return Err(Gone::Expired);
            }
            let renewed = now.saturating_add(self.ttl).min(LATEST);
            if renewed <= d {
                return Ok(Some(d));
            }
            // AcqRel: the renewal is ordered after what the owner did before it, and a burial
            // that loses to it reads it.
            match self.deadline.compare_exchange_weak(
                d,
                renewed,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Some(renewed)),
                Err(_) => continue,
            }
        }
    }

    /// Buries the binding if its deadline has passed, or it was condemned (finishing the
    /// condemnation), or it is buried already: returns whether it is dead for good. A `false`
    /// means it is alive (renewed, or not yet due).
    pub(crate) fn bury_if_expired(&self) -> bool {
        if self.health.load(Ordering::Acquire) == CONDEMNED {
            self.deadline.store(BURIED, Ordering::Release);
            return true;
        }
        loop {
            let d = self.deadline.load(Ordering::Acquire);
            if d == BURIED {
                return true;
            }
            if d == NEVER || d == RETIRED || d > self.now() {
                return false;
            }
            #[cfg(genreg_mutant = "expiry_unclaimed")]
            {
                // Planted bug: decides the burial without claiming the deadline, so a
                // keepalive that wins the word is removed anyway.
                return true;
            }
            #[cfg(not(genreg_mutant = "expiry_unclaimed"))]
            match self.deadline.compare_exchange_weak(
                d,
                BURIED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(_) => continue,
            }
        }
    }

    /// Condemns the binding if it has been critical for at least `limit` nanoseconds (or is
    /// condemned already), and buries it: returns whether it is condemned.
    pub(crate) fn condemn_if_critical(&self, limit: u64) -> bool {
        loop {
            let w = self.health.load(Ordering::Acquire);
            if w == CONDEMNED {
                return true;
            }
            match unpack(w) {
                Some((HealthState::Critical, since))
                    if since.saturating_add(limit) <= self.now() => {}
                _ => return false,
            }
            if self
                .health
                .compare_exchange_weak(w, CONDEMNED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Release: whoever reads `BURIED` reads the condemnation (the reason).
                self.deadline.store(BURIED, Ordering::Release);
                return true;
            }
        }
    }

    /// When the binding next needs a look from a reaper: its deadline, or the time its
    /// critical state reaches `critical_limit`; `None` if neither can come.
    pub(crate) fn next_due(&self, critical_limit: Option<u64>) -> Option<u64> {
        let d = self.deadline().filter(|&d| d != BURIED && d != LATEST);
        let c =
            critical_limit.and_then(|limit| match unpack(self.health.load(Ordering::Acquire)) {
                Some((HealthState::Critical, since)) => Some(since.saturating_add(limit)),
                _ => None,
            });
        match (d, c) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        }
    }

    /// Why the binding is dead (call it once it is invisible): condemned, or expired.
    pub(crate) fn death(&self) -> Reason {
        match self.gone() {
            Gone::Condemned => Reason::Critical,
            Gone::Expired | Gone::Retired => Reason::Expired,
        }
    }

    fn gone(&self) -> Gone {
        if self.health.load(Ordering::Acquire) == CONDEMNED {
            Gone::Condemned
        } else {
            Gone::Expired
        }
    }

    /// Whether the binding expired (its deadline passed, or it was buried as expired).
    pub(crate) fn is_expired(&self) -> bool {
        !self.is_visible() && self.gone() == Gone::Expired
    }

    /// Records a health state (and the report of the check, if any): one CAS of the health
    /// word, which keeps the time the state was entered if it does not change. Returns the
    /// state and the time it was entered.
    pub(crate) fn set_health(
        &self,
        state: HealthState,
        report: Option<HealthReport>,
        guard: &Guard,
    ) -> Result<u64, Gone> {
        let now = self.now();
        let since = loop {
            let w = self.health.load(Ordering::Acquire);
            let Some((old, since)) = unpack(w) else {
                return Err(Gone::Condemned);
            };
            let new = if old == state { w } else { pack(state, now) };
            if new == w
                || self
                    .health
                    .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                break if old == state { since } else { now };
            }
        };
        if let Some(report) = report {
            // AcqRel: a reader that loads the new report reads it whole.
            let old = self
                .report
                .swap(Owned::new(report), Ordering::AcqRel, guard);
            if !old.is_null() {
                // SAFETY: the swap unlinked `old`; readers reach reports only under a guard,
                // so freeing it after every current guard is gone is safe.
                unsafe { guard.defer_destroy(old) };
            }
        }
        Ok(since)
    }

    /// The health state and the time it was entered (`None`: condemned).
    pub(crate) fn health(&self) -> Option<(HealthState, u64)> {
        unpack(self.health.load(Ordering::Acquire))
    }

    /// A copy of the last health report recorded.
    pub(crate) fn report(&self, guard: &Guard) -> Option<HealthReport> {
        let r = self.report.load(Ordering::Acquire, guard);
        // SAFETY: a report is freed only after it is unlinked and every guard that could have
        // loaded it is gone; ours is alive.
        unsafe { r.as_ref() }.cloned()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no thread can reach the cell, so none can hold its report.
        let r = unsafe {
            self.report
                .load(Ordering::Relaxed, crossbeam_epoch::unprotected())
        };
        if !r.is_null() {
            // SAFETY: as above; the pointer came from `Owned::new` and is freed once, here.
            drop(unsafe { r.into_owned() });
        }
    }
}
