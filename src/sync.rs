//! The one place that names atomics: std's normally, loom's under `--cfg loom`.
//!
//! Every atomic in the map goes through this module so that the loom models
//! (`tests/loom.rs`) explore the real algorithm. crossbeam-epoch must be built in its loom mode
//! as well (`--cfg crossbeam_loom`), or its pins and frees would be invisible to the model and
//! every model would pass after one or two iterations while testing nothing.

#[cfg(all(loom, not(crossbeam_loom)))]
compile_error!(
    "genreg's loom models need crossbeam-epoch in loom mode: \
     RUSTFLAGS=\"--cfg loom --cfg crossbeam_loom\""
);

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, fence};

pub(crate) use std::sync::atomic::Ordering;

/// A process-wide counter that loom does not model.
///
/// Used only for minting [`InstanceId`](crate::InstanceId)s, which must be unique across every
/// registry of the process, so it has to be a `static`, and loom atomics cannot be statics.
/// Its only operation is one `fetch_add`, which cannot race with anything.
pub(crate) use std::sync::atomic::AtomicU64 as StaticAtomicU64;

/// A counter that loom does not model: progress counts that no protocol depends on (how many
/// lists of removed values were handed over, and how many have been freed; see
/// `raw/pending.rs`), shared with jobs that may run after a model's map is gone.
pub(crate) use std::sync::atomic::AtomicUsize as UnmodelledAtomicUsize;

#[cfg(not(loom))]
std::thread_local! {
    /// genreg's own participant in crossbeam-epoch's default collector, one per thread.
    ///
    /// crossbeam's `pin()` reaches its thread-local handle through a call it does not inline;
    /// with a handle of our own, a per-call lookup pins in line (BENCHMARKS.md, "The read
    /// path"). Every pin on the default collector goes through [`pin`], so that a deferred job
    /// and the `flush` that hands it over happen on the same participant (the grace period
    /// depends on it).
    static HANDLE: crossbeam_epoch::LocalHandle = crossbeam_epoch::default_collector().register();
}

/// Pins the current thread on crossbeam-epoch's default collector, through genreg's handle
/// (during thread-local destruction, through a fresh one, as crossbeam's `pin()` does).
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn pin() -> crossbeam_epoch::Guard {
    HANDLE
        .try_with(|h| h.pin())
        .unwrap_or_else(|_| crossbeam_epoch::default_collector().register().pin())
}

/// Whether the current thread is pinned on the default collector, through genreg's handle or
/// crossbeam's own.
#[cfg(not(loom))]
pub(crate) fn is_pinned() -> bool {
    HANDLE.try_with(|h| h.is_pinned()).unwrap_or(false) || crossbeam_epoch::is_pinned()
}

/// Under loom, crossbeam's own handle (a second loom thread-local participant trips loom's
/// teardown: its destructor runs after the execution it belongs to). Which participant pins
/// is not part of any protocol the models check: every pin is one participant's pin either way.
#[cfg(loom)]
#[inline(always)]
pub(crate) fn pin() -> crossbeam_epoch::Guard {
    crossbeam_epoch::pin()
}

/// Under loom, crossbeam's own handle (see [`pin`]).
#[cfg(loom)]
pub(crate) fn is_pinned() -> bool {
    crossbeam_epoch::is_pinned()
}

/// `n` atomics, all zero: a table's slots or a migration's destinations.
///
/// Outside loom, the memory comes zeroed from the allocator (`calloc`, which for a big table
/// maps fresh zero pages), instead of being written zero by zero: the thread that starts a
/// migration does not fault in the whole next table (16 MiB of slots at 2M), its pages are
/// touched by the copies that fill them. (Measured: the insert that starts the migration to 2M
/// slots took most of the insert maxima while growing to 1M names.)
#[cfg(not(loom))]
pub(crate) fn zeroed_atomics(n: usize) -> Box<[AtomicUsize]> {
    let zeros: Box<[usize]> = vec![0usize; n].into_boxed_slice();
    // SAFETY: `AtomicUsize` has the same size, alignment and bit validity as `usize` (std
    // documents it), so a boxed slice of one is a boxed slice of the other, with the same
    // allocation layout for `Box`'s deallocation.
    unsafe { Box::from_raw(Box::into_raw(zeros) as *mut [AtomicUsize]) }
}

/// Loom's atomics are not plain words: made one by one.
#[cfg(loom)]
pub(crate) fn zeroed_atomics(n: usize) -> Box<[AtomicUsize]> {
    (0..n).map(|_| AtomicUsize::new(0)).collect()
}
