//! Liveness: a time to live with keepalives, health states, and reapers.
//!
//! - **TTL.** [`Registry::with_ttl`] registers a binding that expires unless renewed by a
//!   keepalive ([`Registration::keepalive`], [`Registry::keepalive`], tag-checked). Past its
//!   deadline a binding is invisible to every read at once and never blocks a new
//!   registration of its name; it is removed (event reason [`Reason::Expired`]) by the first
//!   write or read that meets it, by [`Registry::purge_dead`], by a migration of the table, or
//!   by a [`Reaper`].
//! - **Health.** [`Registry::set_health`] and [`Registry::record_health`] (tag-checked) set an
//!   entry's [`HealthState`]; [`Query::healthy`](crate::Query::healthy) keeps healthy entries
//!   only; with [`Builder::remove_critical_after`] an entry critical for that long is removed
//!   (reason [`Reason::Critical`]). With the `tokio` feature, `HealthCheck` runs a probe over
//!   many entries concurrently, each with a timeout.
//! - **Time** comes from the registry's [`Clock`] ([`Builder::clock`]): [`SystemClock`] by
//!   default, [`ManualClock`] in tests.
//!
//! See the crate docs ("Liveness") for the guarantees.
//!
//! [`Reason::Expired`]: crate::Reason::Expired
//! [`Reason::Critical`]: crate::Reason::Critical
//! [`Builder::remove_critical_after`]: crate::Builder::remove_critical_after
//! [`Builder::clock`]: crate::Builder::clock

#[cfg(feature = "tokio")]
mod check;
pub(crate) mod clock;
mod health;
mod reaper;

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tokio")]
pub use self::check::{CheckOutcome, HealthCheck};
pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::health::{HealthReport, HealthState, HealthStatus};
pub use self::reaper::{Reaper, ReaperThread};

use crate::error::Error;
use crate::raw::live::{Gone, Live};
use crate::raw::node::{Extra, Node};
use crate::registration::Registration;
use crate::registry::Registry;
use crate::tag::Tag;

/// The refusal for `name` when no binding with `tag` is there: a mismatch naming the current
/// binding, else not found (or an invalid name).
fn refusal<V>(name: &str, tag: Tag, current: Option<&Node<V>>) -> Error {
    match current {
        Some(n) if n.is_visible() && !n.tag.matches(tag) => Error::TagMismatch {
            name: name.into(),
            expected: tag,
            current: n.tag,
        },
        _ => match crate::name::validate(name) {
            Err(reason) => Error::InvalidName {
                name: name.into(),
                reason,
            },
            Ok(()) => Error::NotFound { name: name.into() },
        },
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// The time on the registry's clock ([`Builder::clock`](crate::Builder::clock)): what
    /// deadlines and health records are measured on.
    pub fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    /// Renews the time to live of `name`'s binding, only if it still carries `tag`: one
    /// compare-and-swap of its deadline to the TTL from now. Returns the new deadline on the
    /// registry's clock (`None`: the binding has no TTL, and nothing was done).
    ///
    /// A binding renewed before its deadline is never removed as expired; one past its
    /// deadline cannot be renewed ([`Error::Expired`]: register again). Refused with
    /// [`Error::TagMismatch`] or [`Error::NotFound`] as
    /// [`unregister_if_same`](Self::unregister_if_same) is.
    pub fn keepalive(&self, name: &str, tag: Tag) -> Result<Option<Duration>, Error> {
        let pinned = self.pin();
        let map = &self.inner.map;
        let node = map.get(map.hash(name), name, pinned.guard());
        // A pool's names have no TTL (see `pool/`).
        if let Some(tie) = node.filter(|n| n.is_visible()).and_then(|n| n.pool()) {
            return Err(crate::pool::pooled(name, &tie));
        }
        let Some(n) = node.filter(|n| n.tag.matches(tag)) else {
            return Err(refusal(name, tag, node));
        };
        // A weak binding whose owner died is gone whatever its deadline says.
        if n.owner_dead() {
            pinned.purge(n);
            return Err(refusal::<V>(name, tag, None));
        }
        let renewed = match n.live() {
            Some(live) => live.keepalive(),
            None => Ok(None),
        };
        match renewed {
            Ok(deadline) => Ok(deadline.map(Duration::from_nanos)),
            Err(Gone::Expired) => {
                pinned.purge(n);
                Err(Error::Expired {
                    name: name.into(),
                    tag,
                })
            }
            // Condemned (and removed, or about to be), or removed alive just now.
            Err(Gone::Condemned | Gone::Retired) => {
                pinned.purge(n);
                Err(refusal::<V>(name, tag, None))
            }
        }
    }

    /// The health of `name`'s binding, if it is bound: its state, since when, and the last
    /// report recorded. An entry never checked is [`HealthState::Unknown`].
    pub fn health(&self, name: &str) -> Option<HealthStatus> {
        let pinned = self.pin();
        let map = &self.inner.map;
        let n = map.get(map.hash(name), name, pinned.guard())?;
        if !n.is_visible() {
            return None;
        }
        let (state, since, last_check) = match n.live() {
            Some(live) => {
                let (state, since) = live.health()?;
                let since = (state != HealthState::Unknown).then(|| Duration::from_nanos(since));
                (state, since, live.report(pinned.guard()))
            }
            None => (HealthState::Unknown, None, None),
        };
        Some(HealthStatus {
            tag: n.tag,
            state,
            since,
            last_check,
        })
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// Sets the health of `name`'s binding, only if it still carries `tag` (see
    /// [`record_health`](Self::record_health), which also keeps the check's latency and
    /// error).
    pub fn set_health(&self, name: &str, tag: Tag, state: HealthState) -> Result<(), Error> {
        self.record(name, tag, state, None)
    }

    /// Records a health check of `name`'s binding, only if it still carries `tag`: its state
    /// (one compare-and-swap), and the report (latency, error), stamped with the registry's
    /// clock ([`HealthReport::checked_at`]). The time the state was entered
    /// ([`HealthStatus::since`]) moves only when the state changes.
    ///
    /// An entry's first health record gives it a liveness cell: one CAS of a node with the same
    /// tag and value (a clone, so `V: Clone`), which is no change to the binding (no event; its
    /// guards stay current).
    ///
    /// With [`Builder::remove_critical_after`](crate::Builder::remove_critical_after), an
    /// entry recorded critical that has been critical for that long is removed here (reason
    /// [`Critical`](crate::Reason::Critical)), or by a [`Reaper`] when its time comes. A binding
    /// recorded healthy before that is never removed as critical.
    ///
    /// Refused with [`Error::TagMismatch`] or [`Error::NotFound`] as
    /// [`unregister_if_same`](Self::unregister_if_same) is. Needs `V: Clone` (for the first
    /// record's node, as [`update_metadata`](Self::update_metadata) does).
    pub fn record_health(&self, name: &str, tag: Tag, report: HealthReport) -> Result<(), Error> {
        let state = report.state;
        self.record(name, tag, state, Some(report))
    }

    fn record(
        &self,
        name: &str,
        tag: Tag,
        state: HealthState,
        report: Option<HealthReport>,
    ) -> Result<(), Error> {
        let pinned = self.pin();
        let map = &self.inner.map;
        let hash = map.hash(name);
        let guard = pinned.guard();
        let current = || {
            let node = map.get(hash, name, guard);
            match node {
                // A pool's own name has no health (its members do; see `pool/`).
                Some(n) if n.is_visible() && n.pool().is_some_and(|t| t.member.is_none()) => {
                    Err(crate::pool::pooled(name, &n.pool().expect("pooled")))
                }
                Some(n) if n.tag.matches(tag) && n.is_visible() => Ok(n),
                _ => {
                    // A writer that meets a dead binding removes it.
                    if let Some(n) = node.filter(|n| !n.is_visible()) {
                        pinned.purge(n);
                    }
                    Err(refusal(name, tag, node))
                }
            }
        };
        let mut n = current()?;
        if n.live().is_none() {
            // A condemned binding can now be left in place until purged (see `mortal_used`).
            map.note_mortal();
            // The first record: install a cell (or find one a racing record installed).
            let cell = Arc::new(Live::new(Arc::clone(&self.inner.clock), None));
            let extra = |n: &Node<V>| Extra {
                live: Some(n.live().cloned().unwrap_or_else(|| Arc::clone(&cell))),
                ..Extra::kept(n)
            };
            let accept = |n: &Node<V>| n.tag.matches(tag) && n.is_visible() && n.live().is_none();
            // A refusal may be a racing record that installed its own cell: look again.
            let _ = map.update_extra(hash, name, extra, accept, pinned.guard());
            n = current()?;
        }
        let live = n.live().expect("installed above");
        let report = report.map(|mut r| {
            r.state = state;
            r.checked_at = self.now();
            r
        });
        if live.set_health(state, report, pinned.guard()).is_err() {
            pinned.purge(n);
            return Err(refusal::<V>(name, tag, None));
        }
        // A pool's member is never removed as critical: it goes only with its pool.
        let limit = self.inner.critical_after.filter(|_| n.pool().is_none());
        if let (HealthState::Critical, Some(limit)) = (state, limit) {
            if live.condemn_if_critical(limit) {
                pinned.purge(n);
            } else {
                map.expiry.note(name, tag);
            }
        }
        Ok(())
    }
}

impl<V: Send + Sync + 'static> Registration<V> {
    /// Renews the binding's time to live (see [`Registry::keepalive`]). Returns the new
    /// deadline on the registry's clock (`None`: the binding has no TTL). Once the binding has
    /// expired this returns [`Error::Expired`], also after a reaper removed it.
    pub fn keepalive(&self) -> Result<Option<Duration>, Error> {
        match self.registry().keepalive(self.name(), self.tag()) {
            // Gone, or the name taken since: if it expired, that is what the owner needs to
            // know.
            Err(Error::NotFound { .. } | Error::TagMismatch { .. }) if self.expired() => {
                Err(Error::Expired {
                    name: self.name().into(),
                    tag: self.tag(),
                })
            }
            other => other,
        }
    }

    /// Whether the binding expired: its time to live passed without a keepalive (it is then
    /// invisible, and removed or about to be). False for a binding without a TTL, and for one
    /// removed for another reason.
    pub fn expired(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.is_expired())
    }

    /// The time left before the binding expires, on the registry's clock (`None`: no TTL, or
    /// the binding was removed or replaced before it expired; zero once expired).
    pub fn time_left(&self) -> Option<Duration> {
        let live = self.live.as_ref()?;
        let deadline = live.deadline()?;
        Some(Duration::from_nanos(deadline.saturating_sub(live.now())))
    }

    /// The binding's health (see [`Registry::health`]); `None` once it is not current.
    pub fn health(&self) -> Option<HealthStatus> {
        self.registry()
            .health(self.name())
            .filter(|h| h.tag == self.tag())
    }
}

impl<V: Clone + Send + Sync + 'static> Registration<V> {
    /// Sets the binding's health (see [`Registry::set_health`]).
    pub fn set_health(&self, state: HealthState) -> Result<(), Error> {
        self.registry().set_health(self.name(), self.tag(), state)
    }

    /// Records a health check of the binding (see [`Registry::record_health`]).
    pub fn record_health(&self, report: HealthReport) -> Result<(), Error> {
        self.registry()
            .record_health(self.name(), self.tag(), report)
    }
}
