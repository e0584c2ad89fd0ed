//! Reapers: remove expired bindings (and, with a limit, bindings critical for too long) when
//! their time comes, at a cost per removal that does not grow with the registry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::clock;
use crate::raw::node::Node;
use crate::registry::Registry;
use crate::sync::Ordering;
use crate::tag::Tag;

/// A reaper: [`Registry::reaper`]. Each call to [`reap`](Reaper::reap) removes the bindings
/// whose time has come: expired ones (reason [`Expired`](crate::Reason::Expired)) and, with
/// [`Builder::remove_critical_after`](crate::Builder::remove_critical_after), ones critical for
/// that long ([`Critical`](crate::Reason::Critical)).
///
/// It keeps its own schedule, a heap of due times: a pass costs a heap operation per binding
/// that is due, not a walk of the registry (one walk when the reaper is made). The registry
/// tells attached reapers about new bindings with a deadline at its commit point; a keepalive
/// costs the reaper nothing until the old deadline comes (it then finds the new one and
/// reschedules). Attach one reaper per registry: two would split the new bindings between
/// them. Call `reap` regularly (or use [`Registry::spawn_reaper`], or `Reaper::run` with the
/// `tokio` feature): the registry queues new bindings for it until it does.
///
/// Reaping is an optimisation of memory and of event latency, never of correctness: an
/// expired binding is invisible to every read at its deadline, reaper or not.
pub struct Reaper<V> {
    registry: Registry<V>,
    /// Due time (registry clock nanoseconds), then the binding.
    heap: BinaryHeap<Reverse<(u64, Tag, Box<str>)>>,
    /// The heap's size after the last compaction (see `compact`).
    compacted_at: usize,
    /// The earliest due time scheduled per binding: older heap entries for it are skipped.
    /// (foldhash: SipHash was a fifth of a pass.)
    scheduled: HashMap<Tag, u64, foldhash::fast::RandomState>,
}

impl<V> fmt::Debug for Reaper<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("scheduled", &self.scheduled.len())
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// A reaper for this registry (see [`Reaper`]). Walks the registry once, to schedule the
    /// bindings that are there already.
    pub fn reaper(&self) -> Reaper<V> {
        let map = &self.inner.map;
        // Attach before the walk (see the intake's protocol): a binding the walk misses is
        // pushed to the intake by its committer.
        map.expiry.attach();
        let mut reaper = Reaper {
            registry: self.clone(),
            heap: BinaryHeap::new(),
            compacted_at: 0,
            scheduled: HashMap::default(),
        };
        let pinned = self.pin();
        for n in map.iter(pinned.guard()) {
            reaper.schedule(n);
        }
        drop(pinned);
        reaper
    }

    /// Starts a thread that reaps every `interval` (see [`Reaper`]); dropping the handle stops
    /// and joins it. An `interval` of zero is taken as one millisecond.
    pub fn spawn_reaper(&self, interval: Duration) -> ReaperThread {
        let interval = interval.max(Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reaper = self.reaper();
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("genreg-reaper".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    reaper.reap();
                    thread::park_timeout(interval);
                }
            })
            .expect("spawning the reaper thread");
        ReaperThread {
            stop,
            thread: Some(thread),
        }
    }
}

impl<V: Send + Sync + 'static> Reaper<V> {
    /// The critical limit in clock nanoseconds for `node`, if the registry has one (a pool's
    /// member has none: it goes only with its pool).
    fn critical_limit(&self, node: &Node<V>) -> Option<u64> {
        self.registry
            .inner
            .critical_after
            .filter(|_| node.pool().is_none())
    }

    /// Schedules `node` for its next due time, if it has one.
    fn schedule(&mut self, node: &Node<V>) {
        let limit = self.critical_limit(node);
        if let Some(due) = node.live().and_then(|l| l.next_due(limit)) {
            self.schedule_at(due, node.tag, node.name().into());
        }
    }

    /// Schedules the binding `tag` of `name` at `due`, unless it is due earlier already.
    fn schedule_at(&mut self, due: u64, tag: Tag, name: Box<str>) {
        if self.scheduled.get(&tag).is_some_and(|&d| d <= due) {
            return;
        }
        self.scheduled.insert(tag, due);
        self.heap.push(Reverse((due, tag, name)));
    }

    /// Removes every binding whose time has come; returns how many removals it made (a
    /// binding that another thread removed first, or that a migration of the table this call
    /// helped with dropped, is gone too but not counted).
    pub fn reap(&mut self) -> usize {
        let registry = self.registry.clone();
        let map = &registry.inner.map;
        let mut pinned = registry.pin();
        for (name, tag) in map.expiry.take() {
            if let Some(n) = map.get(map.hash(&name), &name, pinned.guard()) {
                if n.tag == tag {
                    self.schedule(n);
                }
            }
        }
        let now = clock::now(&*registry.inner.clock);
        let mut removed = 0;
        let mut visited = 0usize;
        // Renewed (or healed) bindings, scheduled again after the pass: a clock that went
        // back (a broken `Clock`) must not keep the pass popping what it pushes.
        let mut again = Vec::new();
        while self
            .heap
            .peek()
            .is_some_and(|Reverse((due, _, _))| *due <= now)
        {
            let Some(Reverse((due, tag, name))) = self.heap.pop() else {
                break;
            };
            if self.scheduled.get(&tag) != Some(&due) {
                continue; // superseded by an earlier due time
            }
            self.scheduled.remove(&tag);
            visited += 1;
            if visited % 1024 == 0 {
                // Do not hold the epoch back for a whole long pass.
                pinned.repin();
            }
            let Some(n) = map.get(map.hash(&name), &name, pinned.guard()) else {
                continue;
            };
            let Some(live) = n.live().filter(|_| n.tag == tag) else {
                continue;
            };
            let limit = self.critical_limit(n);
            // A dead weak owner first (its removal says so, and leaves the deadline alone).
            let dead = n.owner_dead()
                || live.bury_if_expired()
                || limit.is_some_and(|l| live.condemn_if_critical(l))
                || n.is_buried();
            if dead {
                removed += usize::from(pinned.purge(n));
            } else if let Some(next) = live.next_due(limit) {
                // Renewed, or healthy again: its next due time.
                again.push((next, tag, name));
            }
        }
        for (due, tag, name) in again {
            self.schedule_at(due, tag, name);
        }
        self.compact(&pinned);
        removed
    }

    /// Drops the schedule's entries for bindings no longer bound (removed or replaced alive,
    /// whose due time may be far off), once the heap has doubled since the last compaction:
    /// the reaper's memory then follows the bindings that can fall due, not the churn.
    fn compact(&mut self, pinned: &crate::Pinned<'_, V>) {
        if self.heap.len() <= self.compacted_at.max(1024) * 2 {
            return;
        }
        let map = &self.registry.inner.map;
        let scheduled = &mut self.scheduled;
        self.heap.retain(|Reverse((due, tag, name))| {
            let current = scheduled.get(tag) == Some(due)
                && map
                    .get(map.hash(name), name, pinned.guard())
                    .is_some_and(|n| n.tag == *tag);
            if !current && scheduled.get(tag) == Some(due) {
                scheduled.remove(tag);
            }
            current
        });
        self.compacted_at = self.heap.len();
    }

    /// When the next binding is due, on the registry's clock (`None`: nothing is scheduled;
    /// bindings registered since the last pass are scheduled at the next).
    pub fn next_due(&self) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((due, _, _))| Duration::from_nanos(*due))
    }

    /// Bindings scheduled (for tests and monitoring: the reaper's memory is proportional).
    pub fn scheduled(&self) -> usize {
        self.scheduled.len()
    }
}

#[cfg(feature = "tokio")]
impl<V: Send + Sync + 'static> Reaper<V> {
    /// Reaps every `interval`, forever, as an async task: `tokio::spawn(reaper.run(interval))`.
    /// Cancel it by aborting the task (or dropping the future). An `interval` of zero is taken
    /// as one millisecond.
    pub async fn run(mut self, interval: Duration) {
        let interval = interval.max(Duration::from_millis(1));
        loop {
            self.reap();
            tokio::time::sleep(interval).await;
        }
    }
}

impl<V> Drop for Reaper<V> {
    fn drop(&mut self) {
        self.registry.inner.map.expiry.detach();
    }
}

/// A reaper running on a thread of its own: [`Registry::spawn_reaper`]. Dropping it stops the
/// thread and waits for it.
#[must_use = "dropping the handle stops the reaper"]
pub struct ReaperThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ReaperThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaperThread").finish_non_exhaustive()
    }
}

impl Drop for ReaperThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A reaper that panicked has nothing left to clean up.
            let _ = t.join();
        }
    }
}
