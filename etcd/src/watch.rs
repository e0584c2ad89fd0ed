//! Events: etcd's watch from a revision, as the core's vocabulary (registered, replaced,
//! removed), resumed after any failure from the next revision, so no event is lost or repeated.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use etcd_client::{EventType, WatchOptions, WatchResponse, WatchResponseStream};
use genreg::Tag;

use crate::registry::{Binding, EtcdRegistry, Why, binding_of, parse_marker, tag_of_kv};
use crate::{Codec, Error};

/// What happened to a name at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind<V> {
    /// The name was free and is now bound.
    Registered(Binding<V>),
    /// The name's binding was replaced ([`replace_if_same`]); `old` is the tag it had (if etcd
    /// still had the previous version).
    ///
    /// [`replace_if_same`]: crate::EtcdRegistry::replace_if_same
    Replaced {
        /// The binding now.
        binding: Binding<V>,
        /// Its tag before.
        old: Option<Tag>,
    },
    /// The binding was removed: by a tag-checked or plain removal, or by its lease's end (the
    /// registry's [`close`](crate::EtcdRegistry::close), or its process gone for longer than
    /// the TTL). `tag` is the removed binding's (if etcd still had it).
    Removed {
        /// The removed binding's tag.
        tag: Option<Tag>,
        /// The lease it lived under (0 if unknown).
        lease: i64,
        /// Why.
        reason: Removal,
    },
}

/// Why a binding was removed: the core's reasons, as etcd can tell them.
///
/// A removal made through this crate writes a marker in its own transaction, so its reason is
/// exact. A removal with no marker is a lease's end when the lease is gone by the time the
/// watch asks etcd about it (one query per lease and response), and something else otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Removal {
    /// A tag-checked removal: [`unregister_if_same`](crate::EtcdRegistry::unregister_if_same),
    /// [`Registration::unregister`](crate::Registration::unregister), a guard dropped.
    IfSame,
    /// [`unregister`](crate::EtcdRegistry::unregister): unconditional.
    Explicit,
    /// The binding's lease ended: its registry [`close`](crate::EtcdRegistry::close)d, or its
    /// process was gone (or cut off from etcd) for longer than the TTL.
    LeaseEnded,
    /// Deleted by something other than genreg-etcd (etcdctl, another client), or the reason
    /// could not be learned (etcd unreachable when the watch asked about the lease).
    Other,
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Removal::IfSame => "unregistered by tag",
            Removal::Explicit => "unregistered",
            Removal::LeaseEnded => "its lease ended",
            Removal::Other => "deleted outside genreg",
        })
    }
}

/// One change, at the etcd revision that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<V> {
    /// The revision of the change. Several changes can share one (a lease's end removes all
    /// its bindings at once).
    pub revision: i64,
    /// The name.
    pub name: String,
    /// What happened.
    pub kind: EventKind<V>,
}

/// A stream of a registry's changes from a revision on: a [`futures_core::Stream`] of
/// `Result<Event<V>, Error>`, or call [`next`](Self::next). It resumes by itself after
/// connection failures and leader changes (from the revision after the last it returned); if
/// etcd has compacted the revisions it needs, it yields [`Error::Compacted`] and then ends:
/// start again from a [`list`](EtcdRegistry::list)'s revision + 1.
pub struct Watch<V, C> {
    /// The watch's state, while no `next` is in flight.
    state: Option<Box<State<V, C>>>,
    /// A `next` in flight (polled by [`Stream::poll_next`]), which hands the state back.
    pending: Option<Pending<V, C>>,
    /// The revision the next event will be at or after, as of the last completed `next`.
    next_rev: i64,
    /// etcd's compaction revision, once met.
    compacted: Option<i64>,
}

type Pending<V, C> =
    Pin<Box<dyn Future<Output = (Box<State<V, C>>, Option<Result<Event<V>, Error>>)> + Send>>;

struct State<V, C> {
    registry: EtcdRegistry<V, C>,
    /// The whole root: the names, and the removal markers that give their reasons.
    raw: RawWatch,
    ready: VecDeque<Result<Event<V>, Error>>,
    /// etcd's compaction revision, once the watch has met it.
    compacted: Option<i64>,
    /// The compaction was reported: the stream has ended.
    ended: bool,
}

impl<V, C> fmt::Debug for Watch<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("next_revision", &self.next_rev)
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> EtcdRegistry<V, C> {
    /// Watches every change from `from` on (inclusive). Take `from` from a
    /// [`list`](Self::list)'s revision + 1 to follow a listing without a gap.
    pub fn watch(&self, from: i64) -> Watch<V, C> {
        let from = from.max(1);
        Watch {
            state: Some(Box::new(State {
                registry: self.clone(),
                raw: RawWatch::new(&self.inner.client, &self.inner.keys.root, from),
                ready: VecDeque::new(),
                compacted: None,
                ended: false,
            })),
            pending: None,
            next_rev: from,
            compacted: None,
        }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Watch<V, C> {
    /// The revision the next event will be at or after: a watch started from it misses
    /// nothing (it may repeat events of that revision already returned, when several changes
    /// share one).
    pub fn next_revision(&self) -> i64 {
        self.next_rev
    }

    /// The next change. [`Error::Compacted`] means the watch is over (every later call says
    /// so again); [`Error::Codec`] is a record the codec cannot read, and the watch goes on
    /// after it. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Event<V>, Error> {
        match std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await {
            Some(item) => item,
            None => Err(Error::Compacted {
                requested: self.next_rev,
                compacted: self.compacted.unwrap_or(self.next_rev),
            }),
        }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Stream for Watch<V, C> {
    type Item = Result<Event<V>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.pending.is_none() {
            let mut state = this
                .state
                .take()
                .expect("a watch's state is home between calls");
            this.pending = Some(Box::pin(async move {
                let item = state.next().await;
                (state, item)
            }));
        }
        let fut = this.pending.as_mut().expect("set above");
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((state, item)) => {
                this.pending = None;
                // Events of one revision can be returned one by one: the next one to return
                // is at the front of `ready`, whose revision is where a resumed watch starts.
                this.next_rev = match state.ready.front() {
                    Some(Ok(e)) => e.revision,
                    _ => state.raw.next_revision(),
                };
                this.compacted = state.compacted;
                this.state = Some(state);
                Poll::Ready(item)
            }
        }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> State<V, C> {
    async fn next(&mut self) -> Option<Result<Event<V>, Error>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            if let Some(compacted) = self.compacted {
                self.ended = true;
                return Some(Err(Error::Compacted {
                    requested: self.raw.next_revision(),
                    compacted,
                }));
            }
            match self.raw.pull().await {
                Ok(resp) => self.take(&resp).await,
                Err(compacted) => self.compacted = Some(compacted),
            }
        }
    }

    /// Turns one response's events into `ready`.
    async fn take(&mut self, resp: &WatchResponse) {
        let inner = &self.registry.inner;
        // The removal markers in this response (written in their removal's transaction, so
        // at its revision and in the same response).
        let keys = &inner.keys;
        let mut marked: HashMap<(i64, &str), Removal> = HashMap::new();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if ev.event_type() == EventType::Put && kv.key() == keys.marker.as_slice() {
                if let Some((why, _, name)) = parse_marker(kv.value()) {
                    let why = match why {
                        Why::IfSame => Removal::IfSame,
                        Why::Explicit => Removal::Explicit,
                    };
                    marked.insert((kv.mod_revision(), name), why);
                }
            }
        }
        let mut lease_gone: HashMap<i64, bool> = HashMap::new();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(name) = keys.name_of(kv.key()) else {
                continue; // markers, the sync key, register_auto's counters
            };
            let mut reason = Removal::Other;
            if ev.event_type() == EventType::Delete {
                if let Some(r) = marked.get(&(kv.mod_revision(), name)) {
                    reason = *r;
                } else if let Some(lease) = ev.prev_kv().map(|p| p.lease()).filter(|&l| l != 0) {
                    let gone = match lease_gone.get(&lease) {
                        Some(g) => *g,
                        None => {
                            let g = lease_is_gone(&inner.client, lease).await;
                            lease_gone.insert(lease, g);
                            g
                        }
                    };
                    if gone {
                        reason = Removal::LeaseEnded;
                    }
                }
            }
            self.ready.push_back(to_event(
                &inner.codec,
                name,
                ev.event_type(),
                kv,
                ev.prev_kv(),
                reason,
            ));
        }
    }
}

/// Whether etcd says `lease` no longer exists (false if it cannot be asked).
async fn lease_is_gone(client: &etcd_client::Client, lease: i64) -> bool {
    let mut c = client.lease_client();
    match tokio::time::timeout(Duration::from_secs(2), c.time_to_live(lease, None)).await {
        Ok(Ok(r)) => r.ttl() < 0,
        Ok(Err(e)) => crate::retry::lease_gone(&e),
        Err(_) => false,
    }
}

/// etcd's watch of the keys under a prefix from a revision on, resumed by itself: after a
/// broken or cancelled stream it opens again (after a pause) from the revision after the last
/// event it returned, so it yields every change once, in order. Both [`Watch`] and the mirror
/// read through it.
pub(crate) struct RawWatch {
    client: etcd_client::Client,
    prefix: Vec<u8>,
    next: i64,
    stream: Option<(etcd_client::WatchRequestSender, WatchResponseStream)>,
}

impl RawWatch {
    pub(crate) fn new(client: &etcd_client::Client, prefix: &[u8], from: i64) -> RawWatch {
        RawWatch {
            client: client.clone(),
            prefix: prefix.to_vec(),
            next: from.max(1),
            stream: None,
        }
    }

    /// The revision the next event will be at or after.
    pub(crate) fn next_revision(&self) -> i64 {
        self.next
    }

    /// Starts again from `from` (after a listing at `from - 1`).
    pub(crate) fn restart_at(&mut self, from: i64) {
        self.stream = None;
        self.next = self.next.max(from);
    }

    /// The next response that carries events (etcd's other answers are skipped). `Err` is
    /// etcd's compaction revision: the revisions from `next_revision()` on are gone.
    pub(crate) async fn pull(&mut self) -> Result<WatchResponse, i64> {
        loop {
            if self.stream.is_none() {
                match self.open().await {
                    Some(s) => self.stream = Some(s),
                    None => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let (_, responses) = self.stream.as_mut().expect("opened above");
            let resp = match responses.message().await {
                Ok(Some(r)) => r,
                _ => {
                    self.stream = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if resp.compact_revision() > 0 {
                self.stream = None;
                return Err(resp.compact_revision());
            }
            if resp.canceled() {
                // Cancelled by etcd (its member lost the leader, say): open again, after a
                // pause.
                self.stream = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if resp.events().is_empty() {
                continue; // created, or a progress report (which 3.4 can send ahead of events)
            }
            for ev in resp.events() {
                if let Some(kv) = ev.kv() {
                    self.next = self.next.max(kv.mod_revision() + 1);
                }
            }
            return Ok(resp);
        }
    }

    async fn open(&self) -> Option<(etcd_client::WatchRequestSender, WatchResponseStream)> {
        let mut c = self.client.clone();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(self.next);
        match tokio::time::timeout(
            Duration::from_secs(5),
            c.watch(self.prefix.clone(), Some(opts)),
        )
        .await
        {
            Ok(Ok(s)) => Some(s.split()),
            _ => None,
        }
    }
}

/// One etcd event as the core's vocabulary.
pub(crate) fn to_event<V, C: Codec<V>>(
    codec: &C,
    name: &str,
    kind: EventType,
    kv: &etcd_client::KeyValue,
    prev: Option<&etcd_client::KeyValue>,
    reason: Removal,
) -> Result<Event<V>, Error> {
    let revision = kv.mod_revision();
    let kind = match kind {
        EventType::Put => {
            let binding = binding_of(codec, name, kv)?;
            if kv.version() == 1 {
                EventKind::Registered(binding)
            } else {
                EventKind::Replaced {
                    binding,
                    old: prev.and_then(|p| tag_of_kv(p).ok()),
                }
            }
        }
        EventType::Delete => EventKind::Removed {
            tag: prev.and_then(|p| tag_of_kv(p).ok()),
            lease: prev.map_or(0, |p| p.lease()),
            reason,
        },
    };
    Ok(Event {
        revision,
        name: name.to_string(),
        kind,
    })
}
