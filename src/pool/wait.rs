//! Waiting for a slot: [`Acquire`] (a future, on any runtime) and the blocking wait, both
//! woken by a release (see `core.rs` for the protocol), never by polling.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{EventListener, Listener};

use super::Lease;
use super::core::{NoSlot, PoolCore};
use super::lease::CoreRef;
use crate::error::Error;

/// A wait for a slot of a pool: from [`Pool::acquire_async`](super::Pool::acquire_async).
///
/// Resolves to a [`Lease`] as soon as a slot is free, or to [`Error::NotFound`] if the pool is
/// removed meanwhile (or, for a key that breaks the rules for names, at once to
/// [`Error::InvalidName`]). It needs no runtime: wrap it in your runtime's timeout, or use
/// `Pool::acquire_within` (the `tokio` feature).
///
/// **Order.** Waiters are woken in the order they started waiting, one per freed slot. A woken
/// waiter takes a free slot; an acquire that did not wait may take a freed slot first (there is
/// no hand-off), and then the woken waiter waits again, behind those already waiting.
///
/// **Cancellation.** Dropping it at any point is safe: it never holds a slot it has not handed
/// out, and a wake it received but did not use passes to the next waiter.
#[must_use = "a future does nothing unless polled"]
pub struct Acquire<V> {
    core: Arc<PoolCore<V>>,
    /// The key it acquires for ([`Pool::acquire_for_async`](super::Pool::acquire_for_async)).
    key: Option<Box<str>>,
    listener: Option<EventListener>,
    /// Counted in the pool's waiters, since this clock reading (nanoseconds).
    waiting: Option<u64>,
}

impl<V: 'static> Acquire<V> {
    pub(crate) fn new(core: Arc<PoolCore<V>>) -> Acquire<V> {
        Acquire {
            core,
            key: None,
            listener: None,
            waiting: None,
        }
    }

    pub(crate) fn keyed(core: Arc<PoolCore<V>>, key: &str) -> Acquire<V> {
        let mut wait = Acquire::new(core);
        wait.key = Some(key.into());
        wait
    }

    /// One look for a slot: `Ready` with a lease or an error, `Pending` if every member is
    /// full.
    fn attempt(&mut self) -> Poll<Result<Lease<'static, V>, Error>> {
        let taken = match &self.key {
            None => self
                .core
                .take()
                .map(|(member, bit)| {
                    Lease::slot(CoreRef::Owned(Arc::clone(&self.core)), member, bit, None)
                })
                .map_err(Ok),
            Some(key) => self.core.acquire_for(key).map(|(hold, joined)| {
                // Joined the key's hold: the freed slot a wake may have been for is not
                // taken, so the wake goes on (an extra one costs a look).
                if joined && self.waiting.is_some() {
                    self.core.pass_wake();
                }
                let (member, bit) = (hold.member, hold.bit);
                let core = CoreRef::Owned(Arc::clone(&self.core));
                Lease::slot(core, member, bit, Some(hold))
            }),
        };
        let out = match taken {
            Ok(lease) => Ok(lease),
            Err(Ok(NoSlot::Full)) => return Poll::Pending,
            Err(Ok(NoSlot::Closed)) => Err(Error::NotFound {
                name: (*self.core.name).into(),
            }),
            Err(Err(e)) => Err(e),
        };
        // A wake this listener got and did not use goes on to the next waiter.
        self.listener = None;
        self.done();
        Poll::Ready(out)
    }

    /// No longer waiting: leaves the waiters, records how long it waited.
    fn done(&mut self) {
        if let Some(since) = self.waiting.take() {
            self.core.unwait();
            self.core.waited(self.core.now_ns().saturating_sub(since));
        }
    }

    /// Listens for a release, having counted itself among the waiters (in that order: see
    /// `core.rs`).
    fn listen(&mut self) {
        if self.waiting.is_none() {
            // The clock (user code) first: a panic in it leaves nothing counted.
            let since = self.core.now_ns();
            self.core.wait();
            self.waiting = Some(since);
        }
        self.listener = Some(self.core.listen());
    }
}

impl<V: 'static> Future for Acquire<V> {
    type Output = Result<Lease<'static, V>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let Some(listener) = this.listener.as_mut() {
                if Pin::new(listener).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Woken (the wake is used up): look for the slot.
                this.listener = None;
            }
            if let Poll::Ready(out) = this.attempt() {
                return Poll::Ready(out);
            }
            this.listen();
            // Look again now that a release would wake us (the Dekker pair).
            if let Poll::Ready(out) = this.attempt() {
                return Poll::Ready(out);
            }
        }
    }
}

impl<V> Drop for Acquire<V> {
    fn drop(&mut self) {
        // The listener first: a wake it got goes on to the next waiter.
        self.listener = None;
        if self.waiting.take().is_some() {
            self.core.unwait();
        }
    }
}

impl<V> fmt::Debug for Acquire<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("pool", &&*self.core.name)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}

/// Blocks the thread until a slot is free or `timeout` passes.
pub(crate) fn blocking<V: 'static>(
    core: &Arc<PoolCore<V>>,
    timeout: Duration,
) -> Result<Lease<'static, V>, Error> {
    let deadline = Instant::now().checked_add(timeout);
    let mut wait = Acquire::new(Arc::clone(core));
    loop {
        if let Poll::Ready(out) = wait.attempt() {
            return out;
        }
        wait.listen();
        if let Poll::Ready(out) = wait.attempt() {
            return out;
        }
        let listener = wait.listener.take().expect("listening");
        let woken = match deadline {
            Some(deadline) => listener.wait_deadline(deadline).is_some(),
            None => {
                listener.wait();
                true
            }
        };
        if !woken {
            // One last look: a slot freed at the deadline is taken, not refused.
            if let Poll::Ready(out) = wait.attempt() {
                return out;
            }
            return Err(Error::Timeout {
                name: (*core.name).into(),
                waited: timeout,
            });
        }
    }
}
