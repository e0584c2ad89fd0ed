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
//! // Or borrow it for the length of a closure, with no clone.
//! assert_eq!(registry.read("coordinator", |e| e.value().len()), Some(10));
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
//! Generations are drawn from one registry-wide counter that only increases (also across
//! [`Registry::clear`]) and are never reused, so a tag from an old binding never matches a newer
//! binding of the same name, even one of the same instance: there is no ABA. See
//! [`tag`](crate::Tag).
//!
//! So that registering threads do not all write one counter's cache line, each thread takes
//! generations from that counter 64 at a time. Generations therefore increase along each
//! thread's operations, and a replacement's generation is always greater than the one it
//! replaces, but generations minted on different threads are not ordered by time: compare tags
//! for equality, not to decide which binding is newer.
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
//! | [`get`](Registry::get), [`read`](Registry::read) | loads only; writes no shared memory but the pin (except to purge a dead binding it meets: one CAS); `get` then clones the value |
//! | [`unregister_if_same`](Registry::unregister_if_same) | one CAS, node → tombstone, only if the node carries the tag |
//! | [`replace_if_same`](Registry::replace_if_same) | one CAS, node → new node with a new generation |
//!
//! Whole-registry views ([`names`](Registry::names), [`entries`](Registry::entries),
//! [`Pinned::iter`]) are **weakly consistent**, like Java's `ConcurrentHashMap`, and promise
//! exactly this:
//! - they never block writers and never see freed memory;
//! - a binding present for the whole walk is seen **exactly once**, with its value;
//! - **no name is listed twice**: each name has one slot per table, and a walk reads each slot
//!   once (a name whose slot was copied to a newer table during the walk is read there, once);
//! - a binding added or removed during the walk may or may not be seen; what is seen of a name
//!   is its binding at the instant the walk read its slot.
//!
//! A walk first finishes a migration in progress (copying the remaining slots itself, so that
//! it can walk one table), and skips dead weak bindings. [`len`](Registry::len) is not a walk:
//! it is O(1), a sum of per-thread counters, exact when writers are quiet, and counts a dead
//! weak binding until it is purged. [`clear`](Registry::clear),
//! [`unregister_instance`](Registry::unregister_instance) and
//! [`purge_dead`](Registry::purge_dead) are a walk followed by per-name CASes, not one atomic
//! step.
//!
//! # Memory
//! Removed values are dropped through epochs (crossbeam-epoch): a value is dropped once every
//! thread that was pinned when it was removed has unpinned, so nothing freed is ever reachable.
//! The removed node itself stays as the name's tombstone (a removal allocates nothing), until
//! the name is registered again, reusing the slot, or the table is rebuilt; replaced nodes are
//! freed through epochs whole. The table grows, and rebuilds itself to drop tombstones,
//! incrementally: each writer copies a chunk of 64 slots before it writes; a lookup never
//! helps and never waits (a walk does help, see above).
//!
//! **When a removed value is dropped.** A removal puts the removed node on a list of the
//! registry's (the node itself is the list entry; one list per stripe, 16 stripes, each thread
//! using its own). Every 32 removals on a list, the remover hands that list to the epoch
//! collector's global queue, and the collector drops it once every thread pinned at that
//! moment has unpinned. [`Registry::collect`], called from any thread, hands every list over at
//! once, whatever their lengths, and runs collections until everything handed over has been
//! dropped. So:
//! - when `collect()` returns `true`, every value whose removal returned before the call has
//!   been dropped; it returns `false` after a bounded amount of work if a thread that stays
//!   pinned holds reclamation back (or other threads keep removing faster than it catches
//!   up), and later collections drop the rest;
//! - without `collect()`, about 32 removed values per stripe (at most ~512 in all) wait in an
//!   idle registry, plus what the collector has not yet expired of the last hand-overs (a
//!   collection runs every 128 pins of each thread and at every hand-over);
//! - an orchestrator that waits for a removed value's drop (an agent's inbox closing) calls
//!   `collect()` after the removal.
//!
//! Handing each removal to the global queue at once (a flush) would cost an allocation and a
//! collection attempt per removal: a register + unregister cycle went from ~180 ns to ~620 ns
//! on the benchmark machine, so the list batches them.
//!
//! With a constant live set, memory stays bounded under any amount of register/unregister
//! churn, weak bindings included (a migration never copies a weak binding whose owner died: it
//! becomes a tombstone there). Measured by the crate's stress tests
//! (`memory_stays_bounded_under_churn`: 1,000 live names, 10 million register/unregister
//! cycles on 3 threads, 2 cores): the table stayed at 2,048 slots, removed-but-not-yet-freed
//! values peaked at 50k–121k (what the other threads remove while one is preempted inside a
//! pinned section), and RSS grew by at most ~30 MiB. The test asserts capacity ≤ 4,096,
//! unfreed values ≤ 500k and RSS growth ≤ 128 MiB. With 20,000 weak registrations whose owners
//! died at once, the table stays at 64 slots or fewer.
//!
//! **A thread that stays pinned stalls reclamation for everyone.** While a [`Pinned`] handle
//! (or an iterator) lives, every node removed by anyone stays allocated: in
//! `stalled_pinned_thread_holds_back_reclamation`, unfreed values grew exactly with the number
//! of removals (500k after 500k cycles, ~22 MiB per 100k) and fell back to zero once the thread
//! unpinned. Registry methods pin only for the length of one call; keep `Pinned` handles short
//! or [`Pinned::repin`] them.
//!
//! One more delay, for memory only: a node removed *while a migration runs* can still be
//! pointed at by the old table, so its memory (not its value, which is dropped as any other)
//! is freed together with that table, once the migration completes; migrations advance as
//! writers (and walks) come by, so a registry that goes idle mid-migration keeps a handful of
//! such nodes until the next write.
//!
//! A value's destructor runs on whichever thread collects the garbage, some time after the
//! removal. A panic in it is caught and counted ([`dropped_value_panics`]); the registry is
//! never left inconsistent, since a node is unlinked before it is dropped.
//!
//! # If an internal invariant ever broke
//! The table's protocols are model-checked and tested, but should one of their invariants ever
//! fail (for example a migration finding no room in the next table for a copy, which a bug
//! fixed in this version could cause), the operation that detects it panics with a message
//! that starts with `genreg internal invariant broken` and says which. The registry's memory
//! stays safe (a panic frees and overwrites nothing), but the name whose slot was being copied may stay
//! frozen, and every later write of that name, and anything that finishes the migration
//! (walks, inserts that need room), panics again: treat such a panic as a bug to report, and
//! the registry as unusable for writes. Dropping it is still safe and does not panic: the drop
//! frees each node from the table that owns it, without finishing the migration.
//!
//! # Weak bindings
//! [`Registry::register_weak`] (and [`register_weak_as`](Registry::register_weak_as),
//! [`ensure_registered_weak`](Registry::ensure_registered_weak) with an instance id of the
//! caller's) binds without keeping the owner alive (MARSYS's `WeakValueDictionary`). Once the
//! owner is dropped the binding is invisible to every read and never blocks a new
//! registration. It is purged with a CAS on its own tag by the first read or write that meets
//! it, by the next migration of the table, or by [`purge_dead`](Registry::purge_dead); until
//! then it still counts in [`len`](Registry::len). A replacement of a weak binding stays weak,
//! with the new value as its owner (keep a strong reference to it yourself).
//!
//! # Events, watch, snapshots
//! Built with [`Builder::events`], a registry keeps an **event log**: every committed change
//! (registered, replaced, unregistered, with its [`Reason`]) gets a [`Revision`] and an
//! [`Event`], and the last `history` events stay readable.
//!
//! **Revisions.** A writer draws its revision from one registry-wide counter after it has read
//! the binding its compare-and-swap expects and before the CAS, and publishes the event after
//! the CAS (a writer whose CAS lost publishes a skip). So:
//! - for any one name, revision order **is** commit order: replaying a name's events in
//!   revision order rebuilds its exact history (generations do not give this: they are minted
//!   before the CAS, and racing writers can commit them out of order);
//! - across names, revision order extends real time and causality: a change whose call began
//!   after another's had returned, or that was made after observing it (a read that saw it),
//!   has the higher revision, whatever the names. Two changes to different names whose calls
//!   overlapped may be delivered in the other order than the one in which their CASes landed;
//! - revisions are not dense (a lost CAS leaves a skipped one), and never reused.
//!
//! **Watching.** [`Registry::watch`]`(filter, since)` delivers every event after `since` whose
//! name passes the [`Filter`], each exactly once, in revision order, as a blocking iterator or
//! a `futures_core::Stream` (any executor; no runtime in this crate). A watcher waiting for the
//! next revision is woken by the commit that publishes it, not by polling; a writer stalled
//! between drawing its revision and publishing it (around its CAS) delays delivery of later
//! revisions to watchers (never other writers). Writers never wait for watchers: the history is a ring of `history`
//! events, and a watcher that falls a whole ring behind gets [`WatchError::Lagged`] once and
//! ends; `watch` from a revision older than the ring is refused with
//! [`WatchError::Compacted`]. Either way, [`subscribe`](Registry::subscribe) again.
//!
//! **What an event shows.** A registration or replacement carries a clone of the new value
//! (which the history then keeps alive until its slot is reused), or no value with
//! [`Builder::event_values`]`(false)` and for weak bindings (the history never keeps a weak
//! binding's owner alive). A weak binding whose owner died becomes an `Unregistered` event
//! with [`Reason::WeakOwnerDead`] when it is purged: by the first read or write that meets it,
//! by the next migration of the table, or by [`Registry::purge_dead`], not at the moment the
//! owner is dropped.
//!
//! **Snapshots.** [`Registry::snapshot`] is exact at one revision R (every change up to R, none
//! after), not a weakly consistent walk: it walks the table and applies the events published
//! meanwhile, after waiting for two grace periods of the epoch collector so that every change
//! below R has landed. It waits for threads that stay pinned (and returns
//! [`WatchError::Busy`] rather than wait forever, or at once when called from a thread that
//! holds a [`Pinned`] handle on the default collector). It is a consistent cut at R, which
//! respects causality; across unrelated names it need not be a state that existed at one
//! instant (two names may have committed in the other order than their revisions).
//! [`subscribe`](Registry::subscribe) is a snapshot at R and a watcher from R: no gap, no
//! duplicate. (A weak binding whose owner had died before R but that nobody had purged is not
//! in the snapshot, being invisible; its purge later arrives as an `Unregistered` event for a
//! name the snapshot did not list.)
//! [`Registry::restore`] rebuilds a snapshot's bindings with their original tags into an empty
//! registry, after moving the generation, instance-id, auto-name and revision counters past the
//! snapshot's, so a tag from before a restart matches its own restored binding or nothing. With
//! the `serde` feature, [`Snapshot`] is `Serialize + Deserialize`.
//!
//! **Waiting.** [`Registry::wait_for`] / [`Registry::bound`] (until a name is bound) and
//! [`Registration::wait_evicted`] / [`Registration::evicted`] (until a guard's binding is gone)
//! are woken by commits, whether or not the registry keeps an event log. The death of a weak
//! binding's owner is not a commit: its waiter wakes when the binding is purged (or at its
//! timeout).
//!
//! **Cost.** With the log off, the core operations pay one load and branch per commit (for
//! waiters) and a branch per CAS: measured with callgrind, within 2% of the instructions they
//! took before the log existed. With the log on, each commit also draws from the shared
//! revision counter and allocates its event (with the value's clone), and each event displaced
//! from the ring is freed through the epoch collector: about 540 more instructions per commit
//! (a register + unregister cycle went from ~1,360 to ~2,430 instructions, ~160 to ~265 ns on
//! one thread), whether or not anyone watches. A blocking watcher that keeps up with a busy
//! writer spins briefly and reads in batches (every read pins the epoch, which costs writers
//! when done at their pace); with one such watcher the cycle took ~510 ns, and delivery ran at
//! 85% of a `tokio::sync::broadcast` channel fed the same events, with lower median lag.
//!
//! # Discovery
//! An entry registered through [`Registry::with_metadata`] (every way of registering is
//! there: weak, auto-named, detached, idempotent) carries [`Metadata`]: a kind, a set of
//! capabilities and labels, validated when built ([`MetadataError`] names what is wrong and the
//! limits are in [`discovery`]). It changes only through a tag-checked
//! [`update_metadata`](Registry::update_metadata) (one CAS of a new node with the same tag and
//! value; an [`EventKind::MetadataUpdated`] event). A value replacement keeps the metadata.
//! Entries registered without metadata pay nothing (the same node, no index entry) and are
//! not found by queries.
//!
//! **Queries** ([`Registry::find`], `find_by_*`, [`best_match`](Registry::best_match)) read an
//! index: for each *term* (a kind, a capability, a label `key=value`, "has metadata", and a
//! name's first segment, the part before its first separator `-` `_` `.` `/` `:`), the set of
//! names that carry it, held in the crate's own lock-free map and kept at the registry's commit
//! point by the thread whose change committed. A query reads the smallest set among its
//! conditions, so it costs about what its most selective condition holds, not the registry's
//! size; each candidate is then checked against its binding in the table. A name prefix that
//! runs past the first separator (`find_by_prefix("worker-")`) reads the names under that
//! segment; a prefix with no separator, alone, reads every entry that has metadata.
//!
//! The index is bounded: at most 4,096 distinct terms get a set of their own (about 2.5 KiB
//! each), for the life of the registry. Past that, a query for a term without one reads every
//! entry that has metadata instead, so keep unbounded values (request ids) out of labels and
//! first name segments if queries must stay cheap. What a query promises when writers race
//! with it:
//! - every binding it returns was bound, visible, and carried the returned metadata (which
//!   satisfies every condition) at an instant during the query; it never returns a binding
//!   removed, nor metadata replaced, before the query began;
//! - it returns every binding that matched for the whole query and whose registering (or
//!   updating) call had returned before the query began. A binding whose call is still
//!   running (its change committed, its index entries not yet published) may be missed;
//! - results are sorted by name, each name at most once. Like [`Registry::names`], a query is
//!   not a snapshot: bindings that change while it runs may or may not appear, and two results
//!   need not have coexisted at one instant.
//!
//! [`best_match_by`](Registry::best_match_by) reads every entry with any of the capabilities
//! and scores each from its current metadata: most matches, then the least load (the caller's
//! function), then the least name.
//!
//! **Reserved names** ([`Builder::reserved_names`]) are refused on every binding path,
//! restore included, compared case-insensitively, with [`Error::Reserved`], which lists them.
//!
//! # Bounded capacity
//! [`Builder::max_entries`]`(n)` bounds the registry: never more than `n` live bindings **at
//! any instant**, under any concurrency (MARSYS's `BoundedRegistry`, whose lock this replaces).
//! A registration that would make `n + 1` is refused with [`Error::Full`] and changes nothing;
//! every way of binding counts, a name's own tombstone reused and [`Registry::restore`]
//! included ([`RestoreError::Full`] up front when the snapshot cannot fit), and every removal
//! frees its place before it returns. A place is taken by a compare-and-swap on one counter,
//! only while it is below `n`, right before the registration's own CAS (given back at once if
//! that CAS loses), and released at the commit point of the removal. A weak binding whose owner
//! died (or an expired binding) holds its place until purged: a registration that finds the
//! registry full purges dead bindings and tries once more, so they never cause a refusal. The
//! bound is fixed for the
//! registry's life. Its cost: one read-modify-write on a counter every registering and removing
//! thread shares (measured in the benchmarks); a registry without a bound pays one branch.
//!
//! # Liveness
//! A binding can carry a **time to live**: [`Registry::with_ttl`]`(ttl)` then any way of
//! registering (chained with [`metadata`](RegisterWith::metadata) if wanted). Its owner renews
//! it with [`Registration::keepalive`] (or [`Registry::keepalive`] by tag), each renewal for
//! `ttl` from then. The promises:
//! - **At its deadline a binding is invisible to every read at once** (`get`, `contains`,
//!   `get_if`, `is_current`, `names`, `entries`, queries) and never blocks a new registration
//!   of its name, with or without a reaper: the deadline is checked on every read of a binding
//!   that has one (one load and a clock read; bindings without a TTL pay nothing).
//! - **A keepalive and an expiry never both win.** The deadline is one word; a keepalive
//!   replaces the deadline it read, not yet passed, by a later one (a compare-and-swap); a
//!   removal for expiry first *buries* the binding by replacing the deadline it read, already
//!   passed, by a mark no keepalive accepts (a compare-and-swap on the same word). So a binding
//!   renewed before its deadline is never removed as expired, and an expired one is never
//!   revived: its keepalive fails with [`Error::Expired`], and the owner learns it from
//!   [`Registration::expired`] even after the binding is gone (a binding removed or replaced
//!   before its deadline never reports an expiry). (A read racing a keepalive right at the
//!   deadline may see the binding either way.)
//! - **An expired binding is removed**, with the event reason [`Reason::Expired`], by whichever
//!   comes first: a read or write that meets it (a registration of its name, a removal, a
//!   replacement, a metadata update or health record refused because of it),
//!   [`Registry::purge_dead`], a migration of the table, or a [`Reaper`]. Whether an operation
//!   removed a binding alive or purged a dead one is decided by its compare-and-swap's own
//!   decision, never by the clock afterwards. A reaper keeps a heap of due times, fed at the
//!   commit point with every binding that may fall due (a walk of the table when it
//!   attaches), so a pass costs per binding due, not per entry; its memory follows those
//!   bindings (entries of bindings removed alive are dropped whenever its heap doubles). Run
//!   one on a thread ([`Registry::spawn_reaper`]) or, with the `tokio` feature, as a task
//!   (`Reaper::run`). Until removed, an expired binding counts in [`Registry::len`] (as a dead
//!   weak binding does).
//! - **Time** is the registry's [`Clock`](liveness::Clock) ([`Builder::clock`]): the monotonic
//!   system clock by default; tests move a [`ManualClock`](liveness::ManualClock) and never
//!   sleep to wait for an expiry.
//!
//! **Health** ([`HealthState`]: unknown, passing, warning, critical) is set by a tag-checked
//! call (`V: Clone`: an entry's first record gives it a cell, in a node with a clone of its
//! value), [`Registry::set_health`] or [`Registry::record_health`] (which keeps the check's
//! latency, error and time: [`Registry::health`]). It changes no binding: no event, and guards
//! stay current. [`Query::healthy`] keeps only passing and warning entries. With
//! [`Builder::remove_critical_after`], an entry critical for that long is removed (reason
//! [`Reason::Critical`]) when a record or a reaper finds it so; the decision is a
//! compare-and-swap on the health word that a record of another state defeats, so an entry
//! reported healthy in time is never removed as critical. With the `tokio` feature,
//! `liveness::HealthCheck` probes many entries concurrently, each under a timeout, and records
//! what it finds: a probe that panics or hangs marks its own entry critical and disturbs
//! nothing else.
//!
//! TTL and health are kinds of liveness next to weak bindings: one check decides whether a read
//! sees a binding. Snapshots do not carry them: a restored entry has no TTL and no health.
//!
//! # Pools and load
//! [`Registry::register_pool`]`(name, members)` (MARSYS's `AgentPool`; options through
//! [`register_pool_with`](Registry::register_pool_with) and [`PoolOptions`]) binds `name` and
//! its members' names `{name}_0`, `{name}_1`, ... in the registry's one namespace, each an
//! ordinary binding (events, the bound, the walks see them), and returns a
//! [`PoolRegistration`] guard that dereferences to the [`Pool`] and removes the pool when
//! dropped (unless [`detach`](PoolRegistration::detach)ed). The promises:
//! - **All or nothing.** If any name is taken (by an agent, a pool or a member) or invalid,
//!   the names bound so far are unbound before the call returns, the error names the refused
//!   name, and the values are handed back ([`Rejected::into_parts`]). Readers never see a
//!   member's value before every name is bound (watchers do see the names come and go, reason
//!   [`Reason::PoolRemoved`]).
//! - **One namespace, one owner.** A member cannot be unregistered or replaced alone
//!   ([`Error::PoolMember`]), nor the pool's name ([`Error::IsPool`]: it reads as no value);
//!   [`unregister_pool`](Registry::unregister_pool) of something else is
//!   [`Error::NotAPool`]. Members carry no TTL (keepalives on a pool's names are refused with
//!   [`Error::PoolMember`] or [`Error::IsPool`]); they may carry metadata (discovery finds
//!   them by it) and health records (so `healthy()` queries and `HealthCheck` probes cover
//!   them), but the critical limit never removes a member: it goes only with its pool. The
//!   pool's own name carries neither. [`Registry::kind`] says what a name is ([`Kind`]),
//!   and [`is_pool`](Registry::is_pool), [`pool`](Registry::pool),
//!   [`listing`](Registry::listing), [`normalize`](Registry::normalize),
//!   [`same_logical`](Registry::same_logical), [`instance_count`](Registry::instance_count)
//!   and [`available_count`](Registry::available_count) are MARSYS's `is_pool`, `get_pool`,
//!   `all_with_pools`, `normalize` and counts.
//! - **Leases chosen lock-free by load.** [`Pool::acquire`] reads the members' loads (every
//!   member's for [`Selection::LeastLoaded`], the default, ties from a random start; two random
//!   members' for [`Selection::PowerOfTwo`], then every member's if both are full) and claims a
//!   free slot with one compare-and-swap, repeated only when another acquirer took that slot
//!   first. A lease from a [`Pool`] handle borrows it (`Lease<'_, V>`: no reference count
//!   moves per lease; [`Lease::into_owned`] to keep it longer); one from the registry or a
//!   wait owns a reference to the pool. With [`PoolOptions::timing`] on (the default) a lease
//!   also reads the registry's clock and moves a counter all acquirers share, for the holders'
//!   durations and the peak.
//!   A member has [`max_in_flight`](PoolOptions::max_in_flight) slots, one busy bit each:
//!   1 by default (**exclusive**, as MARSYS), at most [`pool::MAX_IN_FLIGHT`]; it is never held
//!   by more leases than that, and every release frees exactly the slot its lease claimed. When
//!   every member is seen full: [`Error::Exhausted`]` { pool, total, in_use }` (`total` counts
//!   slots), at once. A [`Lease`] dereferences to the value, names what it holds
//!   ([`name`](Lease::name), [`tag`](Lease::tag), [`pool`](Lease::pool),
//!   [`index`](Lease::index), [`key`](Lease::key)) and releases on drop.
//! - **Keyed holds.** [`Pool::acquire_for`]`(key)` and [`Registry::get_or_acquire`] (MARSYS's
//!   `branch_id`) return the member the key holds, sharing its slot, else a new one as
//!   `acquire` picks it; the slot is freed when the key's last lease drops. They never wait;
//!   [`Pool::acquire_for_async`] waits for a release when the key holds nothing and every
//!   member is full.
//! - **Waits woken by releases.** [`Pool::acquire_async`] is a future ([`pool::Acquire`]) on any
//!   runtime or none; [`Pool::acquire_timeout`] blocks a thread; `Pool::acquire_within` (feature
//!   `tokio`) is MARSYS's `acquire_instance_async(timeout)`. None polls: a release wakes one
//!   waiter per freed slot (no herd), after a handshake that cannot lose a wake-up. Waiters are
//!   woken in the order they started waiting, but a freed slot is not handed to the woken
//!   waiter: an acquire that did not wait may take it first, and the woken waiter then waits
//!   again, behind those already waiting (so service is not strictly first come, first
//!   served). A timeout ends in [`Error::Timeout`]; a pool removed meanwhile wakes every waiter
//!   with [`Error::NotFound`].
//! - **Cancellation is safe.** Dropping an [`Acquire`](pool::Acquire) at any point never leaves
//!   a slot taken, and a wake it received but did not use passes to the next waiter.
//! - **Statistics** ([`Pool::stats`], MARSYS's `get_statistics`): [`PoolStats`] with `total`,
//!   `max_in_flight`, `available`, `in_use` (MARSYS's `allocated`), `allocations`,
//!   `releases`, `peak`, `waited` (acquisitions that waited), `average_wait` (over every
//!   allocation, those that did not wait counting zero), `waiting`, and `holders` (member,
//!   key, time held by the registry's clock). The counters are read one by one while leases
//!   come and go: they add up at quiescence (then `allocations == releases + in_use`).
//!   [`Pool::reset_stats`] zeroes them (the peak to the leases out); leases out are untouched
//!   and their releases are counted after the reset.
//! - **Removal while leased.** [`unregister_pool`](Registry::unregister_pool), the guard's drop,
//!   [`unregister_pool_if_same`](Registry::unregister_pool_if_same) (by tag: never a pool
//!   registered later under the name) unbind the pool's name first: that commit closes the
//!   pool (nothing more is leased, members read as no value, waiters wake), then each member
//!   goes (reason [`Reason::PoolRemoved`]). [`clear`](Registry::clear) removes members
//!   first, then pools' names. However a pool's name goes, its members die with it: invisible
//!   at once, never blocking their names, removed by whoever meets them. Leases out stay
//!   usable, and their release is harmless; a pool registered again under the name is a new
//!   pool, untouched by the old one's leases.
//! - **Load on single agents.** [`Registry::acquire`] on an agent's name returns a [`Lease`]
//!   that counts a task on the agent's binding (no limit; it never waits);
//!   [`load`](Registry::load), [`available_count`](Registry::available_count) (an agent with a
//!   task counts as unavailable, unlike MARSYS) and [`least_loaded`](Registry::least_loaded)
//!   (MARSYS's `get_least_loaded(prefix)`; ties to the first name; a pool's own name is left
//!   out, its members are candidates by their leases) read it, as does
//!   [`Query::least_loaded`] over any discovery query. The count lives in the binding
//!   (keyed by its tag), not under the name: a name bound again starts at zero, and the old
//!   binding's tasks ending later do not touch it (MARSYS keys load by name, so a new agent
//!   inherits a dead one's). Picking with `least_loaded` then calling `acquire` is two steps:
//!   another caller may pick the same agent in between.
//! - **Snapshots leave pools out** (a pool is runtime structure: register it again after a
//!   [`restore`](Registry::restore)). The same goes for [`subscribe`](Registry::subscribe)'s
//!   snapshot, while its watcher delivers the pool's events: a mirror built from it should skip
//!   the pool's names.
//!
//! # What it does not do
//! - No atomic multi-name transactions; `clear` is not a snapshot.
//! - Capacity never shrinks: memory is bounded by the peak live set, not the current one.
//! - Values are cloned out by the owning API; use `Arc<T>` for values that are costly to clone,
//!   or [`Registry::pin`] to borrow.
#![warn(missing_docs)]

pub mod discovery;
mod error;
pub mod liveness;
mod name;
mod pinned;
pub mod pool;
mod raw;
mod registration;
mod registry;
mod sync;
mod tag;
mod watch;
mod with;

pub use crate::discovery::{Match, Metadata, MetadataError, Query};
pub use crate::error::{Error, Rejected};
pub use crate::liveness::{HealthReport, HealthState, HealthStatus, Reaper, ReaperThread};
pub use crate::name::{InvalidNameReason, MAX_AUTO_PREFIX_LEN, MAX_NAME_LEN, Name};
pub use crate::pinned::{EntryRef, Iter, Pinned};
pub use crate::pool::{Kind, Lease, Pool, PoolOptions, PoolRegistration, PoolStats, Selection};
pub use crate::registration::{Ensured, Registration};
pub use crate::registry::{Builder, Entry, Registry};
pub use crate::tag::{Generation, InstanceId, Tag};
pub use crate::watch::{
    Counters, Event, EventKind, Filter, Reason, RestoreError, Revision, SNAPSHOT_FORMAT, Snapshot,
    SnapshotEntry, WatchError, Watcher,
};
pub use crate::with::RegisterWith;
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
