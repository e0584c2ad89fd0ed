//! [`Watcher`]: the events after a revision, in revision order, each once.

use std::collections::VecDeque;
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
    /// The next revision to read from the log.
    next: u64,
    /// Events read (under one pin, up to [`BATCH`]) and not yet delivered.
    ready: VecDeque<Event<V>>,
    /// An error met while reading ahead, delivered after `ready`.
    failed: Option<WatchError>,
    /// The listener of an async wait in progress (counted as a waiter while `Some`).
    listener: Option<EventListener>,
    ended: bool,
}

/// How many events a watcher reads from the log under one pin.
const BATCH: usize = 64;

/// How many drawn revisions a blocking watcher lets gather before it reads them (or half its
/// spin, whichever comes first).
const GATHER: usize = 64;

/// CPU pauses between two looks of a spinning watcher at the log's head. The head is the line
/// every writer's `fetch_add` takes: looked at too often, it bounces between the cores at the
/// writers' expense (a register + unregister cycle with one watcher against none, in the
/// events benchmark: 2.4x at 16 pauses, 1.9x at 128).
const PAUSES: usize = 128;

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
            ready: VecDeque::new(),
            failed: None,
            listener: None,
            ended: false,
        }
    }

    /// The revision of the last event this watcher has passed (delivered, or skipped by the
    /// filter): `watch(filter, w.revision())` resumes where `w` stopped.
    pub fn revision(&self) -> Revision {
        match self.ready.front() {
            // Read ahead, not delivered yet: resume before it.
            Some(e) => Revision::from_raw(e.revision.as_raw() - 1),
            None => Revision::from_raw(self.next - 1),
        }
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
        loop {
            // Events read ahead, an error or the end: no pin needed. Otherwise the spin below
            // reads, once a batch has had a moment to gather.
            if !self.ready.is_empty() || self.failed.is_some() || self.ended {
                match self.step() {
                    Step::Item(item) => return Some(item),
                    Step::End => return None,
                    Step::Wait => {}
                }
            }
            // A short spin first: a watcher that keeps up with a busy writer would otherwise
            // sleep and be woken (a system call on each side) for every event.
            if let Some(item) = self.spin() {
                return item;
            }
            // A handle of our own for the wait (only now: the registry's reference count
            // shares a cache line with the fields every writer reads).
            let registry = self.registry.clone();
            let wake = &registry.inner.map.wake;
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
    ///
    /// It pins only once the next revision has been drawn: a thread that pins the epoch in a
    /// tight loop slows every writer of the process (it keeps advancing the global epoch, whose
    /// cache line every pin reads), measured at 3x on a register + unregister cycle.
    fn spin(&mut self) -> Option<Option<Result<Event<V>, WatchError>>> {
        if self.registry.inner.map.log.is_none() {
            return Some(Some(Err(WatchError::Disabled)));
        }
        for i in 0..SPINS {
            let drawn = self.registry.inner.map.log.as_ref().map_or(0, |l| l.head());
            let waiting = drawn.saturating_sub(self.next);
            // Read at once when a batch is there; else pause, and read what there is once
            // half the spin has passed. Every read pins the epoch, and a reader that pins at
            // the writers' pace slows them (see the type's docs).
            if waiting == 0 || (waiting < GATHER as u64 && i < SPINS / 2) {
                for _ in 0..PAUSES {
                    std::hint::spin_loop();
                }
                continue;
            }
            match self.step() {
                Step::Item(item) => return Some(Some(item)),
                Step::End => return Some(None),
                Step::Wait => {}
            }
        }
        None
    }

    /// The next event read ahead, else reads from `next` under one pin: every published
    /// revision up to [`BATCH`] events that pass the filter.
    fn step(&mut self) -> Step<V> {
        if let Some(e) = self.ready.pop_front() {
            return Step::Item(Ok(e));
        }
        if let Some(error) = self.failed.take() {
            self.ended = true;
            return Step::Item(Err(error));
        }
        if self.ended {
            return Step::End;
        }
        let inner = &self.registry.inner;
        let Some(log) = inner.map.log.as_ref() else {
            self.ended = true;
            return Step::Item(Err(WatchError::Disabled));
        };
        {
            let (guard, _local) = inner.pin();
            // Bounded in records read, not only in events kept: a narrow filter over a long
            // backlog must not hold the pin (and reclamation) for a whole ring.
            let mut reads = 0;
            while self.ready.len() < BATCH && reads < 4 * BATCH {
                reads += 1;
                match log.read(self.next, &guard) {
                    Read::Pending => break,
                    Read::Overwritten => {
                        self.failed = Some(WatchError::Lagged {
                            next: Revision::from_raw(self.next),
                            oldest: Revision::from_raw(log.oldest()),
                        });
                        break;
                    }
                    Read::Got(record) => {
                        self.next += 1;
                        if let Some(event) = &record.event {
                            if self.filter.matches(event.name()) {
                                self.ready.push_back(event.clone());
                            }
                        }
                    }
                }
            }
        }
        match self.ready.pop_front() {
            Some(e) => Step::Item(Ok(e)),
            None => match self.failed.take() {
                Some(error) => {
                    self.ended = true;
                    Step::Item(Err(error))
                }
                None => Step::Wait,
            },
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

// No field is pinned structurally (the stream polls through `&mut Self`): a watcher may move
// whatever `V` is.
impl<V> Unpin for Watcher<V> {}

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
