//! Load on single entries: tasks in flight, counted per binding.
//!
//! A binding's load cell lives in its node (installed by its first task, kept by every node of
//! the same tag, never copied to a replacement), so the count belongs to the binding, not to
//! the name: a name bound again starts at zero, whatever the old binding's tasks do when they
//! end (MARSYS keys its counters by name, so a new agent inherits a dead one's load).

use crate::sync::{AtomicUsize, Ordering};

/// A binding's tasks in flight.
#[derive(Default)]
pub(crate) struct Load {
    tasks: AtomicUsize,
}

impl Load {
    pub(crate) fn start(&self) {
        self.tasks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.tasks.fetch_sub(1, Ordering::Relaxed);
    }

    /// Tasks in flight.
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
    }
}
