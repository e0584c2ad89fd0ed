//! [`Mirror`]: an in-process genreg registry fed by etcd's watch, so that a lookup costs what
//! it costs in-process.
//!
//! The mirror lists the registry at a revision R, then watches from R + 1: every change after
//! the listing arrives, in revision order, none twice. When the watch breaks (a leader change,
//! a lost connection) it resumes from the revision after the last one applied; when etcd has
//! compacted that revision away, the mirror lists again at a new revision and reconciles (names
//! gone are removed, names changed are updated), then watches on: no gap either way.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{EventType, KeyValue};
use genreg::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::registry::{Binding, EtcdRegistry, binding_of};
use crate::retry::retrying;
use crate::watch::RawWatch;
use crate::{Codec, Error};

struct Shared<V> {
    local: Registry<Arc<Binding<V>>>,
    applied: watch::Sender<i64>,
    relists: AtomicU64,
    undecodable: AtomicU64,
}

/// A local, read-only copy of an [`EtcdRegistry`], kept current by a watch task.
///
/// Reads ([`get`](Self::get), [`local`](Self::local)) are in-process genreg reads: lock-free,
/// no network. They see etcd's state as of [`applied`](Self::applied), a revision that only
/// grows; [`wait_for`](Self::wait_for) waits until the mirror has applied a revision (say, the
/// one your own write returned), and [`fenced_get`](Self::fenced_get) answers as etcd would at
/// the moment of the call (linearizable), at the cost of a round trip to etcd.
///
/// Dropping the mirror stops its task.
pub struct Mirror<V> {
    shared: Arc<Shared<V>>,
    fence: Arc<dyn Fn() -> FenceFuture + Send + Sync>,
    /// How long [`sync`](Self::sync) waits for the watch (the registry's retry budget).
    patience: Duration,
    task: JoinHandle<()>,
}

type FenceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, Error>> + Send>>;

impl<V> Drop for Mirror<V> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<V: Send + Sync + 'static> fmt::Debug for Mirror<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("applied", &*self.shared.applied.borrow())
            .field("len", &self.shared.local.len())
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> EtcdRegistry<V, C> {
    /// Starts a mirror: lists every binding (so lookups answer at once, as of that listing's
    /// revision), then follows the watch on a task.
    pub async fn mirror(&self) -> Result<Mirror<V>, Error> {
        self.mirror_with(Registry::builder()).await
    }

    /// [`mirror`](Self::mirror) into a local registry built by `builder`: with
    /// [`events`](genreg::Builder::events) on, for example, in-process watchers of the mirror
    /// (`mirror.local().watch(..)`) see each change it applies.
    pub async fn mirror_with(
        &self,
        builder: genreg::Builder<Arc<Binding<V>>>,
    ) -> Result<Mirror<V>, Error> {
        let shared = Arc::new(Shared {
            local: builder.build(),
            applied: watch::channel(0).0,
            relists: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        });
        let rev = relist(self, &shared).await?;
        shared.relists.store(0, Ordering::Relaxed);
        let task = tokio::spawn(follow(self.clone(), shared.clone(), rev + 1));
        let reg = self.clone();
        let fence = Arc::new(move || -> FenceFuture {
            let reg = reg.clone();
            Box::pin(async move { write_sync_key(&reg).await })
        });
        Ok(Mirror {
            shared,
            fence,
            patience: self.inner.budget.total,
            task,
        })
    }
}

impl<V: Send + Sync + 'static> Mirror<V> {
    /// The binding of `name` as of [`applied`](Self::applied): an in-process read.
    pub fn get(&self, name: &str) -> Option<Arc<Binding<V>>> {
        self.shared.local.pin().get(name).map(|e| e.value().clone())
    }

    /// The local registry itself, for every read the core offers (iteration, `len`, `names`,
    /// `tag_of`, watch). Its tags are its own; each value carries etcd's tag
    /// ([`Binding::tag`]). Writing to it only desynchronises the mirror: don't.
    pub fn local(&self) -> &Registry<Arc<Binding<V>>> {
        &self.shared.local
    }

    /// The etcd revision the mirror reflects: every change up to it is applied, none after.
    pub fn applied(&self) -> i64 {
        *self.shared.applied.borrow()
    }

    /// How often the mirror has had to list again because etcd compacted the revisions its
    /// watch needed.
    pub fn relists(&self) -> u64 {
        self.shared.relists.load(Ordering::Relaxed)
    }

    /// Records the codec could not read (left out of the mirror).
    pub fn undecodable(&self) -> u64 {
        self.shared.undecodable.load(Ordering::Relaxed)
    }

    /// Waits until the mirror has applied `revision` (for example the revision of a write this
    /// process made: its tag's generation). Wrap it in a timeout if etcd may be unreachable.
    pub async fn wait_for(&self, revision: i64) {
        let mut rx = self.shared.applied.subscribe();
        let mut grace = Duration::from_millis(50);
        loop {
            if *rx.borrow_and_update() >= revision {
                return;
            }
            if tokio::time::timeout(grace, rx.changed()).await.is_ok() {
                continue;
            }
            // No change under the root has carried the mirror there (the revision may have
            // been made elsewhere in the store): write the sync key, whose revision is above
            // it and whose event reaches the mirror after every earlier change.
            let _ = (self.fence)().await;
            grace = (grace * 2).min(Duration::from_secs(1));
        }
    }

    /// Makes the mirror current: writes the registry's sync key (one small write) and waits
    /// until the mirror has applied it. Every write that completed anywhere before this call is
    /// then visible here. Returns the revision applied.
    ///
    /// (A write rather than etcd's progress reports, which etcd 3.4 can send ahead of events
    /// still in flight on the same watch.)
    ///
    /// Fails with [`Error::Unavailable`] if the mirror has not applied the sync key's revision
    /// within the registry's retry budget ([`Options::retry_for`](crate::Options::retry_for)):
    /// its watch cannot reach a member that has the leader.
    pub async fn sync(&self) -> Result<i64, Error> {
        let rev = (self.fence)().await?;
        let mut rx = self.shared.applied.subscribe();
        let caught_up = async {
            while *rx.borrow_and_update() < rev {
                if rx.changed().await.is_err() {
                    unreachable!("the mirror's revision channel lives as long as the mirror");
                }
            }
        };
        match tokio::time::timeout(self.patience, caught_up).await {
            Ok(()) => Ok(rev),
            Err(_) => Err(Error::Unavailable {
                attempts: 1,
                last: format!(
                    "the mirror's watch did not reach revision {rev} within {:?} (applied {})",
                    self.patience,
                    self.applied()
                ),
            }),
        }
    }

    /// A linearizable lookup: [`sync`](Self::sync), then the local read.
    pub async fn fenced_get(&self, name: &str) -> Result<Option<Arc<Binding<V>>>, Error> {
        self.sync().await?;
        Ok(self.get(name))
    }
}

/// Writes the registry's sync key and returns the revision of the write.
async fn write_sync_key<V: Send + Sync + 'static, C: Codec<V>>(
    reg: &EtcdRegistry<V, C>,
) -> Result<i64, Error> {
    let inner = &reg.inner;
    let key = inner.keys.sync.clone();
    let resp = retrying(inner.budget, || {
        let mut c = inner.kv.clone();
        let k = key.clone();
        async move { c.put(k, Vec::new(), None).await }
    })
    .await?;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Lists every binding and makes the local registry equal to it; returns the listing's
/// revision (now applied).
async fn relist<V: Send + Sync + 'static, C: Codec<V>>(
    reg: &EtcdRegistry<V, C>,
    shared: &Shared<V>,
) -> Result<i64, Error> {
    let (rev, kvs) = reg.inner.list_raw().await?;
    let mut listed: HashMap<String, KeyValue> = HashMap::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(name) = reg.inner.keys.name_of(kv.key()) {
            listed.insert(name.to_string(), kv);
        }
    }
    let gone: Vec<_> = shared
        .local
        .pin()
        .iter()
        .filter(|e| !listed.contains_key(e.name()))
        .map(|e| (e.name().to_string(), e.tag()))
        .collect();
    for (name, tag) in gone {
        let _ = shared.local.unregister_if_same(&name, tag);
    }
    for (name, kv) in &listed {
        put(reg, shared, name, kv);
    }
    shared.relists.fetch_add(1, Ordering::Relaxed);
    shared.applied.send_modify(|a| *a = (*a).max(rev));
    Ok(rev)
}

/// Makes the local binding of `name` the version `kv` holds (unless it holds a newer one).
fn put<V: Send + Sync + 'static, C: Codec<V>>(
    reg: &EtcdRegistry<V, C>,
    shared: &Shared<V>,
    name: &str,
    kv: &KeyValue,
) {
    let binding = match binding_of(&reg.inner.codec, name, kv) {
        Ok(b) => Arc::new(b),
        Err(_) => {
            shared.undecodable.fetch_add(1, Ordering::Relaxed);
            remove(shared, name, kv.mod_revision());
            return;
        }
    };
    let local = &shared.local;
    let current = local
        .pin()
        .get(name)
        .map(|e| (e.tag(), e.value().tag, e.metadata().cloned()));
    match current {
        Some((_, etcd_tag, _)) if etcd_tag.generation() >= binding.tag.generation() => {}
        Some((local_tag, _, old_meta)) => {
            // The core's replacement keeps the metadata; a change of it follows at once (a
            // reader between the two sees the new value with the old metadata).
            let meta = binding.metadata.clone();
            if let Ok(t) = local.replace_if_same(name, local_tag, binding) {
                if meta != old_meta {
                    let _ = local.update_metadata(name, t, meta.unwrap_or_default());
                }
            }
        }
        None => {
            let registered = match binding.metadata.clone() {
                Some(m) => local.with_metadata(m).register(name, binding),
                None => local.register(name, binding),
            };
            if let Ok(r) = registered {
                r.detach();
            }
        }
    }
}

/// Removes the local binding of `name` if it is older than `revision`.
fn remove<V: Send + Sync + 'static>(shared: &Shared<V>, name: &str, revision: i64) {
    let current = shared
        .local
        .pin()
        .get(name)
        .map(|e| (e.tag(), e.value().tag));
    if let Some((local_tag, etcd_tag)) = current {
        if (etcd_tag.generation().as_raw() as i64) < revision {
            let _ = shared.local.unregister_if_same(name, local_tag);
        }
    }
}

/// The mirror's task: follows the watch from `next` on, forever.
async fn follow<V: Send + Sync + 'static, C: Codec<V>>(
    reg: EtcdRegistry<V, C>,
    shared: Arc<Shared<V>>,
    next: i64,
) {
    let inner = &reg.inner;
    // The whole root: names, and the sync key and counters, which move the applied revision.
    let mut raw = RawWatch::new(&inner.client, &inner.keys.root, next);
    loop {
        let resp = match raw.pull().await {
            Ok(resp) => resp,
            Err(_compacted) => {
                match relist(&reg, &shared).await {
                    Ok(rev) => raw.restart_at(rev + 1),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                continue;
            }
        };
        let mut last = 0;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            last = last.max(kv.mod_revision());
            let Some(name) = inner.keys.name_of(kv.key()) else {
                continue;
            };
            match ev.event_type() {
                EventType::Put => put(&reg, &shared, name, kv),
                EventType::Delete => remove(&shared, name, kv.mod_revision()),
            }
        }
        shared.applied.send_modify(|a| *a = (*a).max(last));
    }
}
