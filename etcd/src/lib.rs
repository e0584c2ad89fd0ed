//! genreg's contract on etcd: a registry shared by many processes on many machines.
//!
//! [`EtcdRegistry`] gives the core's operations (register, tag-checked removal and replacement,
//! `register_auto`, guards, events) to processes that share one etcd cluster. Each operation is
//! one etcd transaction, so a stale owner on one machine can never remove the newer binding made
//! on another:
//!
//! | core | etcd |
//! | --- | --- |
//! | a tag's generation | the revision of the write that made the binding's current version (`mod_revision`; for a binding never replaced, its `create_revision`) |
//! | `register` | `txn(create_revision(name) == 0 → put under the lease, else get)`: a refusal names the current tag |
//! | `unregister_if_same` | `txn(mod_revision(name) == generation → delete and write the removal marker, else get)` (a tag this registry did not make: its instance read first) |
//! | `replace_if_same` | `txn(mod_revision(name) == generation → put keeping the lease, else get)`: a new tag |
//! | `register_auto` | a shared counter key (its version is the number), then `register` |
//! | a registration guard | the registry's lease, kept alive by a task and revoked by [`EtcdRegistry::close`] |
//! | events | etcd's watch from a revision ([`Watch`]); compaction is [`Error::Compacted`] |
//! | an event's reason | a marker written in the removal's own transaction ([`Removal::IfSame`], [`Removal::Explicit`]); none, and the lease gone: [`Removal::LeaseEnded`] |
//!
//! Tags are the core's [`Tag`]: the instance id is stored with the value, the generation is an
//! etcd revision. Revisions are unique across the whole store, so a tag can only ever match the
//! version it was read from.
//!
//! # Failures and retries
//! A request that fails ambiguously (no answer in time, a leader change, a broken connection)
//! is sent again until [`Options::retry_for`] runs out, and each is built so that a retry is
//! safe. Every write stores a record with a unique write id, and every removal writes a
//! marker with a unique nonce, in its own transaction: a retry that finds its own record or
//! marker knows an earlier attempt took effect and succeeds; a removal or replacement
//! compares the revision it was given, so a retry can never touch a newer binding. A call that
//! still ends [`Error::Unavailable`] may or may not have taken effect: read the name.
//!
//! # Leases
//! Every binding lives under its registry's lease (TTL [`Options::ttl`], 10 s by default, 2 s at
//! least). A keeper task renews it every third of the TTL. If the process dies, its bindings go
//! when the TTL runs out. If etcd says the lease is gone, [`EtcdRegistry::lease_lost`] reports it
//! with every binding that went with it, and later writes fail with [`Error::LeaseLost`]. When
//! etcd elects a new leader, it resets every lease's TTL to its full length: a binding of a dead
//! process can outlive it by up to one TTL plus the election.
//!
//! # Reads: the mirror
//! [`EtcdRegistry::get`] and [`EtcdRegistry::list`] are linearizable reads from etcd (a round
//! trip). A [`Mirror`] is an in-process genreg registry fed by the watch: lookups cost what they
//! cost in-process, as of the revision it has applied ([`Mirror::applied`]), which it can wait
//! for ([`Mirror::wait_for`], [`Mirror::sync`]); [`Mirror::fenced_get`] is a linearizable lookup.
//! Metadata registered with [`EtcdRegistry::register_with`] travels in the record, so the
//! core's discovery queries run on the mirror's local registry ([`Mirror::local`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), genreg_etcd::Error> {
//! use genreg_etcd::EtcdRegistry;
//!
//! let registry = EtcdRegistry::<String>::connect(&["http://127.0.0.1:2379"]).await?;
//! let reg = registry.register("planner", "host-a:7000".to_string()).await?;
//! let mirror = registry.mirror().await?;
//! mirror.wait_for(reg.tag().generation().as_raw() as i64).await;
//! assert_eq!(mirror.get("planner").unwrap().value, "host-a:7000");
//! // A stale tag is refused, whoever holds it and wherever it runs.
//! reg.unregister().await?;
//! # Ok(()) }
//! ```
//!
//! # Throwaway servers
//! For tests, examples and benchmarks, [`local`] starts etcd servers on loopback (one member, or
//! a cluster) on free ports, and kills and removes them on drop.

#![warn(missing_docs)]

mod codec;
mod error;
pub mod local;
mod mirror;
mod registry;
mod retry;
mod watch;

pub use codec::{Bytes, Codec, Json};
pub use error::{Error, Rejected};
pub use genreg::{Generation, InstanceId, Metadata, Tag};
pub use mirror::Mirror;
pub use registry::{Binding, EtcdRegistry, LeaseLost, Options, Registration};
pub use watch::{Event, EventKind, Removal, Watch};
