//! Waiting for a change: [`Registry::wait_for`] (until a name is bound) and
//! [`Registration::evicted`] (until a guard's binding is gone), blocking or as futures.
//!
//! Both work whether or not the registry keeps an event log: every commit notifies waiters
//! (see `Wake` in `raw/log.rs`), and a waiter rechecks its condition on the map itself after
//! counting itself, so a change that commits between the check and the sleep is never missed.

use std::time::{Duration, Instant};

use event_listener::Listener;

use crate::raw::log::Wake;
use crate::registration::Registration;
use crate::registry::{Entry, Registry};

/// Counted as a waiter for as long as it lives.
struct Counted<'a>(&'a Wake);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.unlisten();
    }
}

/// Blocks until `check` gives something, or the deadline passes (then one last check).
fn until_blocking<T>(
    wake: &Wake,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        let listener = wake.listen();
        let _counted = Counted(wake);
        if let Some(found) = check() {
            return Some(found);
        }
        let notified = match deadline {
            None => {
                listener.wait();
                true
            }
            Some(d) => listener.wait_deadline(d).is_some(),
        };
        if !notified {
            return check();
        }
    }
}

/// Waits (without polling) until `check` gives something.
async fn until<T>(wake: &Wake, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(found) = check() {
            return found;
        }
        let listener = wake.listen();
        let _counted = Counted(wake);
        if let Some(found) = check() {
            return found;
        }
        listener.await;
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// Blocks until `name` is bound (returning its entry), for at most `timeout`; `None` if it
    /// is still unbound then.
    ///
    /// Returns at once if the name is bound already. Woken by commits, not by polling.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Option<Entry<V>> {
        let wake = &self.inner.map.wake;
        until_blocking(wake, Instant::now().checked_add(timeout), || self.get(name))
    }

    /// Waits until `name` is bound and returns its entry: a future for any executor (woken by
    /// commits, not by polling). Wrap it in your runtime's timeout to bound the wait; dropping
    /// it is always safe.
    pub async fn bound(&self, name: &str) -> Entry<V> {
        until(&self.inner.map.wake, || self.get(name)).await
    }
}

impl<V: Send + Sync + 'static> Registration<V> {
    /// Blocks until this guard's binding is gone (removed, replaced by someone else, purged,
    /// cleared), for at most `timeout`; returns whether it is gone.
    ///
    /// Its own [`replace`](Registration::replace) keeps the binding this guard's. Waiters are
    /// woken by commits: a weak binding whose owner dies is gone at once for every read, but
    /// its waiter wakes when the binding is purged (by a read or write that meets it,
    /// [`purge_dead`](Registry::purge_dead), a migration) or at the timeout.
    pub fn wait_evicted(&self, timeout: Duration) -> bool {
        let wake = &self.registry().inner.map.wake;
        let gone = || (!self.is_current()).then_some(());
        until_blocking(wake, Instant::now().checked_add(timeout), gone).is_some()
    }

    /// Resolves once this guard's binding is gone (see
    /// [`wait_evicted`](Registration::wait_evicted), also for weak bindings): a future for any
    /// executor.
    pub async fn evicted(&self) {
        let wake = &self.registry().inner.map.wake;
        until(wake, || (!self.is_current()).then_some(())).await
    }
}
