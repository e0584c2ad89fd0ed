//! [`Watcher`]: the events after a revision, in revision order, each once.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{EventListener, Listener};

use super::{Event, Filter, Revision, WatchError};
use crate::raw::log::Read;
use crate::registry::Registry;

/// The events of a registry after a revision, filtered, in revision order, each exactly once.
///
/// From [`Registry::watch`] or [`Registry::subscribe`]. Use it as a blocking [`Iterator`], or
/// as a [`futures_core::Stream`] in async code (it needs no particular runtime), or poll it
/// with [`try_next`](Watcher::try_next). Items are `Result`s: a watcher that falls a whole
/// history behind the writers yields one [`WatchError::Lagged`] and then ends.
///
/// A watcher holds no lock and no epoch guard between items, and never slows a writer: a slow
/// watcher only risks lagging. Dropping it is all the cleanup there is.
pub struct Watcher<V> {
    registry: Registry<V>,
    filter: Filter,
    /// The next revision to look at.
    next: u64,
    /// The listener of an async wait in progress (counted as a waiter while `Some`).
    listener: Option<EventListener>,
    ended: bool,
}

/// How many times a blocking watcher looks again (a few microseconds in all) before it sleeps.
const SPINS: usize = 32;

/// One step of a watcher.
enum Step<V> {
    Item(Result<Event<V>, WatchError>),
    /// The next revision is not published yet.
    Wait,
    /// The watcher ended after an error.
    End,
}

impl<V: Clone + Send + Sync + 'static> Watcher<V> {
    pub(crate) fn new(registry: Registry<V>, filter: Filter, since: Revision) -> Watcher<V> {
        Watcher {
            registry,
            filter,
            next: since.as_raw().saturating_add(1),
            listener: None,
            ended: false,
        }
    }

    /// The revision of the last event this watcher has passed (delivered, or skipped by the
    /// filter): `watch(filter, w.revision())` resumes where `w` stopped.
    pub fn revision(&self) -> Revision {
        Revision::from_raw(self.next - 1)
    }

    /// The next event if one is published already; `None` if the watcher would wait (or has
    /// ended).
    pub fn try_next(&mut self) -> Option<Result<Event<V>, WatchError>> {
        match self.step() {
            Step::Item(item) => Some(item),
            Step::Wait | Step::End => None,
        }
    }

    /// The next event, waiting at most `timeout` for it; `None` on timeout or once ended.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Event<V>, WatchError>> {
        self.next_blocking(Instant::now().checked_add(timeout))
    }

    fn next_blocking(&mut self, deadline: Option<Instant>) -> Option<Result<Event<V>, WatchError>> {
        let registry = self.registry.clone();
        let wake = &registry.inner.map.wake;
        loop {
            match self.step() {
                Step::Item(item) => return Some(item),
                Step::End => return None,
                Step::Wait => {}
            }
            // A short spin first: a watcher that keeps up with a busy writer would otherwise
            // sleep and be woken (a system call on each side) for every event.
            if let Some(item) = self.spin() {
                return item;
            }
            let listener = wake.listen();
            // Recheck after counting ourselves (see `Wake`): a record published from here on
            // notifies the listener.
            let step = self.step();
            let notified = match step {
                Step::Wait => match deadline {
                    None => {
                        listener.wait();
                        true
                    }
                    Some(d) => listener.wait_deadline(d).is_some(),
                },
                _ => true,
            };
            wake.unlisten();
            match step {
                Step::Item(item) => return Some(item),
                Step::End => return None,
                Step::Wait if !notified => return self.try_next(),
                Step::Wait => {}
            }
        }
    }

    /// Steps a few more times, with a pause between, before a blocking watcher sleeps: `None`
    /// if the next revision is still not published.
    fn spin(&mut self) -> Option<Option<Result<Event<V>, WatchError>>> {
        for _ in 0..SPINS {
            for _ in 0..16 {
                std::hint::spin_loop();
            }
            match self.step() {
                Step::Item(item) => return Some(Some(item)),
                Step::End => return Some(None),
                Step::Wait => {}
            }
        }
        None
    }

    /// Reads revisions from `next` until one passes the filter, or one is not yet published.
    fn step(&mut self) -> Step<V> {
        if self.ended {
            return Step::End;
        }
        let inner = &self.registry.inner;
        let Some(log) = inner.map.log.as_ref() else {
            self.ended = true;
            return Step::Item(Err(WatchError::Disabled));
        };
        let (guard, _local) = inner.pin();
        loop {
            match log.read(self.next, &guard) {
                Read::Pending => return Step::Wait,
                Read::Overwritten => {
                    self.ended = true;
                    return Step::Item(Err(WatchError::Lagged {
                        next: Revision::from_raw(self.next),
                        oldest: Revision::from_raw(log.oldest()),
                    }));
                }
                Read::Got(record) => {
                    self.next += 1;
                    if let Some(event) = &record.event {
                        if self.filter.matches(event.name()) {
                            return Step::Item(Ok(event.clone()));
                        }
                    }
                }
            }
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Iterator for Watcher<V> {
    type Item = Result<Event<V>, WatchError>;

    /// Blocks until the next event (forever, if no writer comes); `None` only after an error.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_blocking(None)
    }
}

impl<V: Clone + Send + Sync + 'static> futures_core::Stream for Watcher<V> {
    type Item = Result<Event<V>, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.step() {
                Step::Item(item) => {
                    this.stop_listening();
                    return Poll::Ready(Some(item));
                }
                Step::End => {
                    this.stop_listening();
                    return Poll::Ready(None);
                }
                Step::Wait => {}
            }
            match this.listener.as_mut() {
                None => {
                    // Count ourselves, then step again before waiting (see `Wake`).
                    this.listener = Some(this.registry.inner.map.wake.listen());
                }
                Some(listener) => match Pin::new(listener).poll(cx) {
                    Poll::Ready(()) => this.stop_listening(),
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}

impl<V> Watcher<V> {
    fn stop_listening(&mut self) {
        if self.listener.take().is_some() {
            self.registry.inner.map.wake.unlisten();
        }
    }
}

use std::future::Future as _;

impl<V> Drop for Watcher<V> {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

impl<V> fmt::Debug for Watcher<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("filter", &self.filter)
            .field("next", &self.next)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
