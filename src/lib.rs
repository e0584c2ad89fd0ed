//! A lock-free, generation-tagged concurrent registry.
//!
//! Programs that run many named workers (agent orchestrators, actor systems, schedulers) bind a
//! name to a live instance, look names up from many threads at once, and unbind names while
//! other threads re-bind them. `genreg` makes that fast and makes it impossible to remove
//! somebody else's binding by mistake.
//!
//! ```
//! use std::sync::Arc;
//! use genreg::{Error, Registry};
//!
//! let registry: Registry<Arc<str>> = Registry::new();
//!
//! // Register: the guard unbinds the name when dropped, if the binding is still its own.
//! let a = registry.register("coordinator", Arc::from("instance A")).unwrap();
//! let tag_a = a.tag();
//!
//! // A second registration of a bound name is refused, naming the current binding.
//! let err = registry.register("coordinator", Arc::from("instance B")).unwrap_err();
//! assert!(matches!(err.error(), Error::AlreadyRegistered { current, .. } if *current == tag_a));
//!
//! // Look up from any thread; the result holds no lock and no guard.
//! assert_eq!(&**registry.get("coordinator").unwrap().value(), "instance A");
//!
//! // A task replaces the coordinator ...
//! registry.unregister_if_same("coordinator", tag_a).unwrap();
//! let b = registry.register("coordinator", Arc::from("instance B")).unwrap();
//! // ... and A's destructor runs late: it cannot remove B.
//! drop(a);
//! assert_eq!(registry.tag_of("coordinator"), Some(b.tag()));
//! ```
//!
//! # Entries and tags
//! An entry is a **name**, a [`Tag`] and a **value**. The tag is
//! `(`[`InstanceId`]`, `[`Generation`]`)`: which object is bound, and which binding this is.
//! Generations come from one registry-wide counter that only increases (also across
//! [`Registry::clear`]), so a tag from an old binding never matches a newer binding of the same
//! name, even one of the same instance: there is no ABA. See [`tag`](crate::Tag).
//!
//! # Names
//! A name is a non-empty UTF-8 string of at most [`MAX_NAME_LEN`] bytes with no control
//! characters. Invalid names are refused with [`Error::InvalidName`]; nothing is truncated or
//! normalised. Errors and guards carry names as [`Name`], which reads as a `&str` and keeps
//! names of up to 23 bytes inline, so that a refusal allocates nothing.
//!
//! # Guards or tags
//! [`Registry::register`] returns a [`Registration`] guard that unbinds the name when dropped
//! (only if the binding is still its own). [`Registry::register_detached`] returns just the
//! [`Tag`]: for callers that keep the tag in a record of their own and unbind with
//! [`unregister_if_same`](Registry::unregister_if_same); it is the cheaper write path.
//!
//! # Operations and consistency
//! Every operation on one name is **linearizable**, and none takes a lock or waits for another
//! thread:
//!
//! | operation | one step |
//! | --- | --- |
//! | [`register`](Registry::register) | one CAS into the first empty slot of the name's probe chain |
//! | [`get`](Registry::get) | loads only; writes no shared memory |
//! | [`unregister_if_same`](Registry::unregister_if_same) | one CAS, node → tombstone, only if the node carries the tag |
//! | [`replace_if_same`](Registry::replace_if_same) | one CAS, node → new node with a new generation |
//!
//! Whole-registry views ([`names`](Registry::names), [`entries`](Registry::entries),
//! [`Pinned::iter`], [`len`](Registry::len)) are **weakly consistent**, like Java's
//! `ConcurrentHashMap`: they never block writers, see every binding present for their whole
//! duration exactly once, and never see freed memory; bindings added or removed meanwhile may or
//! may not appear. [`clear`](Registry::clear) and
//! [`unregister_instance`](Registry::unregister_instance) are a sequence of per-name CASes, not
//! one atomic step.
//!
//! # Memory
//! Removed values are dropped through epochs (crossbeam-epoch): a value is dropped once every
//! thread that was pinned when it was removed has unpinned, so nothing freed is ever reachable.
//! The removed node itself stays as the name's tombstone (a removal allocates nothing), until
//! the name is registered again, reusing the slot, or the table is rebuilt; replaced nodes are
//! freed through epochs whole. The table grows, and rebuilds itself to drop tombstones,
//! incrementally: each writer copies a chunk of 64 slots, readers never help and never wait.
//!
//! With a constant live set, memory stays bounded under any amount of register/unregister
//! churn. Measured by `tests/stress.rs` (`memory_stays_bounded_under_churn`: 1,000 live names,
//! 10 million register/unregister cycles on 3 threads, 2 cores): the table stayed at 2,048
//! slots, removed-but-not-yet-freed values peaked at 50k–121k (what the other threads remove
//! while one is preempted inside a pinned section), and RSS grew by at most ~30 MiB. The test
//! asserts capacity ≤ 4,096, unfreed values ≤ 500k and RSS growth ≤ 128 MiB.
//!
//! **A thread that stays pinned stalls reclamation for everyone.** While a [`Pinned`] handle
//! (or an iterator) lives, every node removed by anyone stays allocated: in
//! `stalled_pinned_thread_holds_back_reclamation`, unfreed values grew exactly with the number
//! of removals (500k after 500k cycles, ~22 MiB per 100k) and fell back to zero once the thread
//! unpinned. Registry methods pin only for the length of one call; keep `Pinned` handles short
//! or [`Pinned::repin`] them.
//!
//! Two smaller delays: a node removed *while a migration runs* can still be pointed at by the
//! old table, so it is freed together with that table, once the migration completes, and
//! migrations advance only as writers come by (a registry that goes idle mid-migration keeps a
//! handful of removed values until the next writes); and a thread's last deferred frees are
//! handed over when its thread-local storage is destroyed, or earlier by
//! [`Registry::collect`].
//!
//! A value's destructor runs on whichever thread collects the garbage, some time after the
//! removal. A panic in it is caught and counted ([`dropped_value_panics`]); the registry is
//! never left inconsistent, since a node is unlinked before it is dropped.
//!
//! # Weak bindings
//! [`Registry::register_weak`] binds without keeping the owner alive (MARSYS's
//! `WeakValueDictionary`). Once the owner is dropped the binding is invisible to every read and
//! never blocks a new registration; it is purged with a CAS on its own tag.
//!
//! # What it does not do
//! - No atomic multi-name transactions; `clear` is not a snapshot.
//! - Capacity never shrinks: memory is bounded by the peak live set, not the current one.
//! - Values are cloned out by the owning API; use `Arc<T>` for values that are costly to clone,
//!   or [`Registry::pin`] to borrow.
#![warn(missing_docs)]

mod error;
mod name;
mod pinned;
mod raw;
mod registration;
mod registry;
mod sync;
mod tag;

pub use crate::error::{Error, Rejected};
pub use crate::name::{InvalidNameReason, MAX_AUTO_PREFIX_LEN, MAX_NAME_LEN, Name};
pub use crate::pinned::{EntryRef, Iter, Pinned};
pub use crate::registration::{Ensured, Registration};
pub use crate::registry::{Builder, Entry, Registry};
pub use crate::tag::{Generation, InstanceId, Tag};
/// Re-exported so that callers can give a registry its own [`Collector`](epoch::Collector).
pub use crossbeam_epoch as epoch;

/// How many value destructors have panicked in this process (each was caught; see the crate
/// docs on memory).
pub fn dropped_value_panics() -> u64 {
    raw::drop_panics()
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
