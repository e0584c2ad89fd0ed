//! [`EtcdRegistry`]: the core's operations as etcd transactions, under one lease per registry.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, KvClient, PutOptions, Txn,
    TxnOp, TxnOpResponse, TxnResponse,
};
use genreg::{Generation, InstanceId, Metadata, Name, Tag};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::codec::{Codec, Json, Record, parse, random_u64, record};
use crate::retry::{Budget, is_lease_not_found, lease_gone, retrying};
use crate::{Error, Rejected};

/// How a registry talks to etcd. `Options::default()` suits a local cluster.
#[derive(Clone, Debug)]
pub struct Options {
    root: String,
    ttl: Duration,
    request_timeout: Duration,
    retry_for: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            root: "genreg/".to_string(),
            ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(2),
            retry_for: Duration::from_secs(10),
        }
    }
}

impl Options {
    /// The key prefix under which this registry lives (default `genreg/`). Registries with
    /// different roots on one etcd never see each other, provided no root is a prefix of
    /// another (`a/` and `a/b/` would overlap; `a/` and `b/` do not).
    pub fn root(mut self, root: impl Into<String>) -> Options {
        self.root = root.into();
        self
    }
    /// The lease's time to live (default 10 s; at least 2 s, whole seconds, as etcd counts):
    /// how long the bindings of a process that died or lost etcd outlive it.
    pub fn ttl(mut self, ttl: Duration) -> Options {
        self.ttl = ttl;
        self
    }
    /// How long one request may take before it counts as an ambiguous failure (default 2 s).
    pub fn request_timeout(mut self, d: Duration) -> Options {
        self.request_timeout = d;
        self
    }
    /// How long a call keeps retrying ambiguous failures before it returns
    /// [`Error::Unavailable`] (default 10 s).
    pub fn retry_for(mut self, d: Duration) -> Options {
        self.retry_for = d;
        self
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::InvalidOption { what });
        if self.root.is_empty() {
            return bad("root: must not be empty (it separates registries on one etcd)".into());
        }
        if self.ttl < Duration::from_secs(2) || self.ttl > Duration::from_secs(9_000_000_000) {
            return bad(format!("ttl {:?}: must be from 2 s to 9e9 s", self.ttl));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            return bad(format!(
                "request_timeout {:?}: must be above zero and at most an hour",
                self.request_timeout
            ));
        }
        if self.retry_for > Duration::from_secs(86_400) {
            return bad(format!("retry_for {:?}: at most a day", self.retry_for));
        }
        Ok(())
    }
}

/// One binding as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding<V> {
    /// The name.
    pub name: String,
    /// Its tag: the instance id the registrant chose, and the revision of the write that made
    /// this version (`mod_revision`; for a binding never replaced, its `create_revision`).
    pub tag: Tag,
    /// The value.
    pub value: V,
    /// The metadata it was registered with ([`EtcdRegistry::register_with`]), which the
    /// mirror's discovery queries see.
    pub metadata: Option<Arc<Metadata>>,
    /// The revision at which the name was bound (etcd's `create_revision`): unchanged by
    /// replacements.
    pub created: i64,
    /// The lease the binding lives under (the registering registry's).
    pub lease: i64,
}

/// The key layout under the root: names under `n/`, `register_auto` counters under `a/`, the
/// mirrors' sync key `s`.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// Everything of this registry's (what a mirror watches).
    pub(crate) root: Vec<u8>,
    pub(crate) names: Vec<u8>,
    auto: Vec<u8>,
    /// The key a mirror's sync writes: its event follows every earlier change in the watch.
    pub(crate) sync: Vec<u8>,
    /// The removal marker, one key: every removal made through this crate writes it (its
    /// reason, a nonce and the name) in its own transaction, so the watch reads the reason at
    /// the removal's revision, and a retried removal recognises its own nonce.
    pub(crate) marker: Vec<u8>,
}

impl Keys {
    fn new(root: &str) -> Keys {
        Keys {
            root: root.as_bytes().to_vec(),
            names: format!("{root}n/").into_bytes(),
            auto: format!("{root}a/").into_bytes(),
            sync: format!("{root}s").into_bytes(),
            marker: format!("{root}r").into_bytes(),
        }
    }
    pub(crate) fn name(&self, name: &str) -> Vec<u8> {
        let mut k = self.names.clone();
        k.extend_from_slice(name.as_bytes());
        k
    }
    /// The name a key stands for, if it is one of this registry's.
    pub(crate) fn name_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(key.strip_prefix(self.names.as_slice())?).ok()
    }
}

/// Why a removal was made, as its marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    IfSame = 1,
    Explicit = 2,
}

/// A removal marker: the reason (1 byte), a nonce (8 bytes), the name.
pub(crate) fn marker(why: Why, nonce: u64, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + name.len());
    v.push(why as u8);
    v.extend_from_slice(&nonce.to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

/// A marker's parts.
pub(crate) fn parse_marker(v: &[u8]) -> Option<(Why, u64, &str)> {
    let why = match *v.first()? {
        1 => Why::IfSame,
        2 => Why::Explicit,
        _ => return None,
    };
    let nonce = u64::from_be_bytes(v.get(1..9)?.try_into().ok()?);
    Some((why, nonce, std::str::from_utf8(v.get(9..)?).ok()?))
}

/// A removal of `key` (the binding of `name`) with its marker, and what a failed compare
/// reads back: the key, and the marker (a retry finds its own nonce there if an earlier
/// attempt took effect).
fn removal_txn(
    keys: &Keys,
    when: Vec<Compare>,
    name: &str,
    key: Vec<u8>,
    why: Why,
    nonce: u64,
) -> Txn {
    Txn::new()
        .when(when)
        .and_then([
            TxnOp::delete(key.clone(), None),
            TxnOp::put(keys.marker.clone(), marker(why, nonce, name), None),
        ])
        .or_else([TxnOp::get(key, None), TxnOp::get(keys.marker.clone(), None)])
}

/// Whether the marker read back by a failed removal is this very removal's.
fn marked_by(resp: &TxnResponse, nonce: u64) -> bool {
    resp.op_responses().into_iter().skip(1).any(|r| match r {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .and_then(|kv| parse_marker(kv.value()))
            .is_some_and(|(_, n, _)| n == nonce),
        _ => false,
    })
}

/// The tag of the version `kv` holds.
pub(crate) fn tag_of_kv(kv: &KeyValue) -> Result<Tag, String> {
    let rec = parse(kv.value())?;
    Ok(Tag::new(
        rec.instance,
        Generation::from_raw(kv.mod_revision() as u64),
    ))
}

/// Decodes a stored version into a [`Binding`].
pub(crate) fn binding_of<V, C: Codec<V>>(
    codec: &C,
    name: &str,
    kv: &KeyValue,
) -> Result<Binding<V>, Error> {
    let codec_err = |message| Error::Codec {
        name: name.to_string(),
        message,
    };
    let rec = parse(kv.value()).map_err(codec_err)?;
    let metadata = if rec.metadata.is_empty() {
        None
    } else {
        let m: Metadata = serde_json::from_slice(rec.metadata)
            .map_err(|e| codec_err(format!("metadata: {e}")))?;
        Some(Arc::new(m))
    };
    let value = codec.decode(rec.payload).map_err(codec_err)?;
    Ok(Binding {
        name: name.to_string(),
        tag: Tag::new(rec.instance, Generation::from_raw(kv.mod_revision() as u64)),
        value,
        metadata,
        created: kv.create_revision(),
        lease: kv.lease(),
    })
}

/// Metadata as a record stores it: JSON, or nothing.
fn metadata_bytes(metadata: Option<&Metadata>) -> Vec<u8> {
    metadata.map_or_else(Vec::new, |m| {
        serde_json::to_vec(m).expect("metadata serialises (strings only)")
    })
}

/// What the registry's lease keeper reports when etcd says the lease is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseLost {
    /// The lease.
    pub lease: i64,
    /// The bindings this registry had made under it and not removed or replaced itself, with
    /// the tags it last knew: each went with the lease (or earlier, if another registry removed
    /// or replaced it meanwhile).
    pub bindings: Vec<(String, Tag)>,
}

pub(crate) struct Inner<V, C> {
    pub(crate) client: Client,
    /// The key-value part of `client`: cloned per request (a tenth of a whole client's clone).
    pub(crate) kv: KvClient,
    pub(crate) codec: C,
    pub(crate) keys: Keys,
    pub(crate) budget: Budget,
    lease: i64,
    /// The bindings this registry made (or replaced) and has not seen go, by their current
    /// tags: for [`LeaseLost`], and so that a removal by one of these tags needs no read
    /// first (the revision pins the version, whose instance is known).
    held: Mutex<HashMap<String, Tag>>,
    lost: AtomicBool,
    lost_tx: watch::Sender<Option<LeaseLost>>,
    keeper: Mutex<Option<JoinHandle<()>>>,
    _values: PhantomData<fn() -> V>,
}

impl<V, C> Drop for Inner<V, C> {
    fn drop(&mut self) {
        if let Some(k) = self
            .keeper
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            k.abort();
        }
    }
}

/// A registry whose bindings live in etcd, shared by every process that connects to the same
/// etcd under the same root, with the core's contract: one binding per name, tags that make a
/// stale owner's removal a refusal, typed errors naming the binding there now.
///
/// Each `EtcdRegistry` holds one etcd lease, kept alive by a task; every binding it makes lives
/// under that lease, so the bindings of a process that dies go when its lease's TTL runs out.
/// Clones share the registry (and the lease). When the last clone (and the last guard and
/// mirror made from it) is dropped, the keeper stops and the bindings go when the TTL runs out;
/// [`close`](Self::close) removes them at once.
pub struct EtcdRegistry<V, C = Json> {
    pub(crate) inner: Arc<Inner<V, C>>,
}

impl<V, C> Clone for EtcdRegistry<V, C> {
    fn clone(&self) -> Self {
        EtcdRegistry {
            inner: self.inner.clone(),
        }
    }
}

impl<V, C> fmt::Debug for EtcdRegistry<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("root", &String::from_utf8_lossy(&self.inner.keys.names))
            .field("lease", &format_args!("{:x}", self.inner.lease))
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static> EtcdRegistry<V, Json>
where
    Json: Codec<V>,
{
    /// Connects to etcd at `endpoints`, grants the registry's lease and starts its keeper, with
    /// JSON values and the default [`Options`].
    pub async fn connect<E: AsRef<str>>(endpoints: &[E]) -> Result<Self, Error> {
        Self::connect_with(endpoints, Options::default(), Json).await
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> EtcdRegistry<V, C> {
    /// Connects with the given options and codec. Must run inside a tokio runtime.
    pub async fn connect_with<E: AsRef<str>>(
        endpoints: &[E],
        options: Options,
        codec: C,
    ) -> Result<Self, Error> {
        options.check()?;
        let budget = Budget {
            request: options.request_timeout,
            total: options.retry_for,
        };
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(2), options.request_timeout)
            // A member cut off from the leader fails requests and cancels watches instead of
            // answering from a stale view or keeping a watch open and silent.
            .with_require_leader(true);
        let eps: Vec<&str> = endpoints.iter().map(|e| e.as_ref()).collect();
        let client = retrying(budget, || {
            Client::connect(eps.clone(), Some(connect.clone()))
        })
        .await?;
        let ttl = options.ttl.as_secs() as i64;
        let grant = retrying(budget, || {
            let mut c = client.clone();
            async move { c.lease_grant(ttl, None).await }
        })
        .await?;
        let lease = grant.id();
        let (lost_tx, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            kv: client.kv_client(),
            client,
            codec,
            keys: Keys::new(&options.root),
            budget,
            lease,
            held: Mutex::new(HashMap::new()),
            lost: AtomicBool::new(false),
            lost_tx,
            keeper: Mutex::new(None),
            _values: PhantomData,
        });
        let keeper = tokio::spawn(keep_alive(
            Arc::downgrade(&inner),
            inner.client.clone(),
            lease,
            options.ttl,
            budget,
        ));
        *inner.keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(keeper);
        Ok(EtcdRegistry { inner })
    }

    /// The id of the lease every binding of this registry lives under.
    pub fn lease(&self) -> i64 {
        self.inner.lease
    }

    /// The etcd client, for what this crate does not wrap.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Whether the lease is known to be gone (see [`Error::LeaseLost`]).
    pub fn is_lease_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Acquire)
    }

    /// Waits until this registry's lease is gone, and says which bindings went with it: etcd
    /// said so (the lease expired while the keeper could not reach etcd, or it was revoked
    /// from outside), or [`close`](Self::close) ran (if its revoke could not be confirmed,
    /// the keeper has stopped and the bindings go within one TTL).
    pub async fn lease_lost(&self) -> LeaseLost {
        let mut rx = self.inner.lost_tx.subscribe();
        loop {
            if let Some(l) = rx.borrow_and_update().clone() {
                return l;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `inner`, which `self` keeps alive.
                unreachable!("lease-lost channel closed while the registry is alive");
            }
        }
    }

    fn check_name(name: &str) -> Result<(), Error> {
        Name::validate(name).map_err(|reason| Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    }

    fn check_lease(&self) -> Result<(), Error> {
        if self.is_lease_lost() {
            return Err(Error::LeaseLost {
                lease: self.inner.lease,
            });
        }
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let r = retrying(self.inner.budget, || {
            let mut c = self.inner.kv.clone();
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await;
        match r {
            Err(e) if is_lease_not_found(&e) => {
                self.inner.mark_lost();
                Err(Error::LeaseLost {
                    lease: self.inner.lease,
                })
            }
            r => r,
        }
    }

    /// Binds `name` to `value` under a fresh instance id, if nothing is bound to it.
    ///
    /// One transaction: `create_revision(name) == 0 → put under the lease, else get`. A refusal
    /// is [`Error::AlreadyRegistered`] with the current binding's tag, and gives the value back.
    pub async fn register(&self, name: &str, value: V) -> Result<Registration<V, C>, Rejected<V>> {
        self.register_as(name, fresh_instance(), value).await
    }

    /// [`register`](Self::register) with metadata (a kind, capabilities, labels), stored with
    /// the value: a [`Mirror`](crate::Mirror)'s local registry carries it, so the core's
    /// discovery queries (`mirror.local().find()...`) run on it.
    pub async fn register_with(
        &self,
        name: &str,
        value: V,
        metadata: Metadata,
    ) -> Result<Registration<V, C>, Rejected<V>> {
        self.register_guard(name, fresh_instance(), Some(&metadata), value)
            .await
    }

    /// [`register`](Self::register) under an instance id of the caller's (for example one
    /// stored in a database, so that "the same agent" is recognised across processes).
    ///
    /// As in the core, a name already bound is refused even to the same instance:
    /// [`Error::AlreadyRegistered`] with `current.instance()` equal to yours says the binding
    /// is your instance's. Retries within the call are safe: an attempt whose answer was lost
    /// is recognised by its record (each write carries a unique write id), never confused
    /// with another registration.
    pub async fn register_as(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Registration<V, C>, Rejected<V>> {
        self.register_guard(name, instance, None, value).await
    }

    async fn register_guard(
        &self,
        name: &str,
        instance: InstanceId,
        metadata: Option<&Metadata>,
        value: V,
    ) -> Result<Registration<V, C>, Rejected<V>> {
        match self.try_register(name, instance, metadata, &value).await {
            Ok(tag) => Ok(Registration {
                registry: self.clone(),
                name: name.to_string(),
                tag,
                armed: true,
            }),
            Err(error) => Err(Rejected { error, value }),
        }
    }

    async fn try_register(
        &self,
        name: &str,
        instance: InstanceId,
        metadata: Option<&Metadata>,
        value: &V,
    ) -> Result<Tag, Error> {
        Self::check_name(name)?;
        self.check_lease()?;
        let bytes = record(
            instance,
            &metadata_bytes(metadata),
            &self.encode(name, value)?,
        );
        let key = self.inner.keys.name(name);
        let lease = self.inner.lease;
        // The planted bug `blind_register` (ci/mutants.sh): no compare, so a registration
        // overwrites whatever is bound.
        #[cfg(genreg_mutant = "blind_register")]
        let free: [Compare; 0] = [];
        #[cfg(not(genreg_mutant = "blind_register"))]
        let free = [Compare::create_revision(key.clone(), CompareOp::Equal, 0)];
        let txn = Txn::new()
            .when(free)
            .and_then([TxnOp::put(
                key.clone(),
                bytes.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = match self.txn(txn).await {
            Ok(r) => r,
            Err(e @ Error::Unavailable { .. }) => {
                // Settle it: did an attempt take effect? This call's record (its write id)
                // in place means yes; otherwise the name is not ours.
                return match self.get_kv(&self.inner.keys.name(name)).await {
                    Ok(Some(kv)) if kv.value() == bytes.as_slice() => {
                        let tag = tag_of_kv(&kv).expect("our own record");
                        self.inner.hold(name, tag);
                        Ok(tag)
                    }
                    Ok(Some(kv)) => Err(self.already(name, &kv)),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let tag = if resp.succeeded() {
            Tag::new(instance, Generation::from_raw(revision_of(&resp) as u64))
        } else {
            let Some(kv) = first_kv(&resp) else {
                return Err(Error::Etcd(etcd_client::Error::InvalidArgs(
                    "etcd answered a failed compare on a name with no key".into(),
                )));
            };
            if kv.value() != bytes.as_slice() {
                return Err(self.already(name, &kv));
            }
            // This call's own write, applied by an attempt whose answer was lost (the write id
            // makes the record this call's alone).
            tag_of_kv(&kv).expect("our own record")
        };
        self.inner.hold(name, tag);
        Ok(tag)
    }

    /// The refusal of a registration of `name`, which `kv` holds.
    fn already(&self, name: &str, kv: &KeyValue) -> Error {
        match tag_of_kv(kv) {
            Ok(current) => Error::AlreadyRegistered {
                name: name.to_string(),
                current,
            },
            Err(message) => Error::Codec {
                name: name.to_string(),
                message,
            },
        }
    }

    /// Binds `{prefix}-{n}` with the next number from a counter in etcd shared by every
    /// process, so concurrent callers anywhere never pick the same name; a number whose name
    /// was bound by hand is skipped.
    pub async fn register_auto(
        &self,
        prefix: &str,
        value: V,
    ) -> Result<Registration<V, C>, Rejected<V>> {
        // Every `{prefix}-{n}` must be a valid name: check the longest one.
        if let Err(error) = Self::check_name(&format!("{prefix}-{}", u64::MAX)) {
            return Err(Rejected { error, value });
        }
        let instance = fresh_instance();
        let mut counter = self.inner.keys.auto.clone();
        counter.extend_from_slice(prefix.as_bytes());
        loop {
            // A put with the previous version: etcd's per-key version is the counter, and a
            // retried put only skips a number.
            let r = retrying(self.inner.budget, || {
                let mut c = self.inner.kv.clone();
                let k = counter.clone();
                async move {
                    c.put(k, Vec::new(), Some(PutOptions::new().with_prev_key()))
                        .await
                }
            })
            .await;
            let n = match r {
                Ok(r) => r.prev_key().map_or(1, |kv| kv.version() + 1),
                Err(error) => return Err(Rejected { error, value }),
            };
            let name = format!("{prefix}-{n}");
            match self.try_register(&name, instance, None, &value).await {
                Ok(tag) => {
                    return Ok(Registration {
                        registry: self.clone(),
                        name,
                        tag,
                        armed: true,
                    });
                }
                Err(Error::AlreadyRegistered { .. }) => continue,
                Err(error) => return Err(Rejected { error, value }),
            }
        }
    }

    /// The binding of `name`, read linearizably from etcd (a round trip to the leader). For
    /// lookups at in-process cost, read a [`Mirror`](crate::Mirror).
    pub async fn get(&self, name: &str) -> Result<Option<Binding<V>>, Error> {
        Self::check_name(name)?;
        let key = self.inner.keys.name(name);
        let resp = retrying(self.inner.budget, || {
            let mut c = self.inner.kv.clone();
            let k = key.clone();
            async move { c.get(k, None).await }
        })
        .await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => binding_of(&self.inner.codec, name, kv).map(Some),
        }
    }

    /// Every binding, read linearizably at one revision, which is returned with them. A
    /// record the codec cannot read fails the whole listing ([`Error::Codec`]); a
    /// [`Mirror`](crate::Mirror) leaves such records out and counts them instead.
    pub async fn list(&self) -> Result<(i64, Vec<Binding<V>>), Error> {
        let (rev, kvs) = self.inner.list_raw().await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            if let Some(name) = self.inner.keys.name_of(kv.key()) {
                out.push(binding_of(&self.inner.codec, name, kv)?);
            }
        }
        Ok((rev, out))
    }

    /// Removes the binding of `name` only if it is still the one `tag` names: the same
    /// version (its generation is the revision) and the same instance.
    ///
    /// For a binding this registry made (or replaced), one transaction:
    /// `mod_revision(name) == generation → delete and write the removal marker, else read
    /// back`; the revision pins the version, whose instance this registry knows. For a tag
    /// from elsewhere, a linearizable read first checks the instance. A stale owner's call is
    /// refused with [`Error::TagMismatch`] (or [`Error::NotFound`]) and changes nothing. After
    /// an ambiguous failure the transaction is sent again, and a retry that finds its own
    /// marker (a nonce per call) knows an earlier attempt removed the binding: `Ok`. It never
    /// removes a newer binding.
    pub async fn unregister_if_same(&self, name: &str, tag: Tag) -> Result<(), Error> {
        Self::check_name(name)?;
        let key = self.inner.keys.name(name);
        let rev = tag.generation().as_raw() as i64;
        if rev <= 0 || !self.inner.holds(name, tag) {
            // Not a binding of ours (or a forged generation 0, which etcd's compare would
            // take for "no key"): check the record's instance first.
            match self.get_kv(&key).await? {
                Some(kv)
                    if rev > 0
                        && kv.mod_revision() == rev
                        && tag_of_kv(&kv).is_ok_and(|t| t == tag) => {}
                other => return Err(self.refusal(name, tag, other)),
            }
        }
        let nonce = random_u64();
        let when = vec![Compare::mod_revision(key.clone(), CompareOp::Equal, rev)];
        let resp = self
            .txn(removal_txn(
                &self.inner.keys,
                when,
                name,
                key,
                Why::IfSame,
                nonce,
            ))
            .await?;
        self.inner.unhold(name, tag); // gone now, or (compare failed) gone before
        if resp.succeeded() || marked_by(&resp, nonce) {
            return Ok(());
        }
        Err(self.refusal(name, tag, first_kv(&resp)))
    }

    /// Removes whatever is bound to `name`, whoever bound it: not identity-safe (prefer
    /// [`unregister_if_same`](Self::unregister_if_same)). Returns the tag removed, or `None`
    /// if nothing was bound: a read, then a removal of exactly the version read (again if the
    /// binding changed in between; a retry that finds its own marker stops).
    pub async fn unregister(&self, name: &str) -> Result<Option<Tag>, Error> {
        Self::check_name(name)?;
        let key = self.inner.keys.name(name);
        loop {
            let Some(kv) = self.get_kv(&key).await? else {
                return Ok(None);
            };
            let nonce = random_u64();
            let when = vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )];
            let resp = self
                .txn(removal_txn(
                    &self.inner.keys,
                    when,
                    name,
                    key.clone(),
                    Why::Explicit,
                    nonce,
                ))
                .await?;
            if resp.succeeded() || marked_by(&resp, nonce) {
                let tag = tag_of_kv(&kv).ok();
                if let Some(t) = tag {
                    self.inner.unhold(name, t);
                }
                return Ok(tag);
            }
        }
    }

    /// Replaces the value of `name` only if its binding is still the one `tag` names; returns
    /// the new tag (same instance, the revision of this write). The binding keeps its lease and
    /// its metadata.
    ///
    /// A linearizable read of the current record (for its metadata), then one transaction:
    /// `mod_revision(name) == tag's generation → put, else get`. A retry after an ambiguous
    /// failure that finds this very record in place is a success.
    pub async fn replace_if_same(
        &self,
        name: &str,
        tag: Tag,
        value: V,
    ) -> Result<Tag, Rejected<V>> {
        let payload = match self.encode(name, &value) {
            Ok(p) => p,
            Err(error) => return Err(Rejected { error, value }),
        };
        match self
            .rewrite(name, tag, |rec| {
                record(rec.instance, rec.metadata, &payload)
            })
            .await
        {
            Ok(t) => Ok(t),
            Err(error) => Err(Rejected { error, value }),
        }
    }

    /// Sets the metadata of `name`'s binding, only if it is still the one `tag` names; returns
    /// the new tag. Unlike the core (where metadata lives beside the binding and the tag stays),
    /// etcd stores the metadata in the binding's record, so the write makes a new version and
    /// a new tag: guards follow it through [`Registration::update_metadata`].
    pub async fn update_metadata(
        &self,
        name: &str,
        tag: Tag,
        metadata: Metadata,
    ) -> Result<Tag, Error> {
        let meta = metadata_bytes(Some(&metadata));
        self.rewrite(name, tag, |rec| record(rec.instance, &meta, rec.payload))
            .await
    }

    /// Rewrites the record of `name`'s binding if it is still the one `tag` names: reads it,
    /// builds the new record from it with `new`, and puts that under a compare of the
    /// revision.
    async fn rewrite(
        &self,
        name: &str,
        tag: Tag,
        new: impl FnOnce(&Record<'_>) -> Vec<u8>,
    ) -> Result<Tag, Error> {
        Self::check_name(name)?;
        let key = self.inner.keys.name(name);
        let rev = tag.generation().as_raw() as i64;
        let current = self.get_kv(&key).await?;
        let kv = match current {
            Some(kv) if kv.mod_revision() == rev => kv,
            other => {
                self.inner.unhold(name, tag); // that version is gone
                return Err(self.refusal(name, tag, other));
            }
        };
        let codec_err = |message| Error::Codec {
            name: name.to_string(),
            message,
        };
        let rec = parse(kv.value()).map_err(codec_err)?;
        if rec.instance != tag.instance() {
            // The revision is the binding's, the instance is not: a forged tag.
            return Err(self.refusal(name, tag, Some(kv.clone())));
        }
        let bytes = new(&rec);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(
                key.clone(),
                bytes.clone(),
                Some(PutOptions::new().with_ignore_lease()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        let new_tag = if resp.succeeded() {
            Tag::new(
                tag.instance(),
                Generation::from_raw(revision_of(&resp) as u64),
            )
        } else {
            match first_kv(&resp) {
                // Our own put (the write id makes the bytes ours alone), applied by an attempt
                // whose answer was lost.
                Some(now)
                    if now.value() == bytes.as_slice()
                        && now.create_revision() == kv.create_revision()
                        && now.mod_revision() > rev =>
                {
                    Tag::new(
                        tag.instance(),
                        Generation::from_raw(now.mod_revision() as u64),
                    )
                }
                other => {
                    self.inner.unhold(name, tag);
                    return Err(self.refusal(name, tag, other));
                }
            }
        };
        self.inner.rehold(name, tag, new_tag);
        Ok(new_tag)
    }

    /// The current version of `key`, read linearizably.
    async fn get_kv(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        let mut resp = retrying(self.inner.budget, || {
            let mut c = self.inner.kv.clone();
            let k = key.to_vec();
            async move { c.get(k, None).await }
        })
        .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    fn refusal(&self, name: &str, expected: Tag, kv: Option<KeyValue>) -> Error {
        match kv {
            None => Error::NotFound {
                name: name.to_string(),
            },
            Some(kv) => match tag_of_kv(&kv) {
                Ok(current) => Error::TagMismatch {
                    name: name.to_string(),
                    expected,
                    current,
                },
                Err(message) => Error::Codec {
                    name: name.to_string(),
                    message,
                },
            },
        }
    }

    fn encode(&self, name: &str, value: &V) -> Result<Vec<u8>, Error> {
        self.inner
            .codec
            .encode(value)
            .map_err(|message| Error::Codec {
                name: name.to_string(),
                message,
            })
    }

    /// Revokes the lease: every binding this registry made goes at once (one revision), and
    /// the registry makes no more. Other clones see [`Error::LeaseLost`] from then on. If etcd
    /// cannot confirm the revoke ([`Error::Unavailable`]), the keeper stops all the same, so
    /// the bindings go within one TTL.
    pub async fn close(self) -> Result<(), Error> {
        let lease = self.inner.lease;
        let r = retrying(self.inner.budget, || {
            let mut c = self.inner.client.clone();
            async move { c.lease_revoke(lease).await }
        })
        .await;
        if r.as_ref().is_err_and(|e| !is_lease_not_found(e)) {
            // The revoke could not be confirmed: stop renewing, so that the lease (and every
            // binding under it) ends within its TTL, as a dead process's would, instead of
            // being renewed by a keeper that a surviving clone, guard or mirror keeps alive.
            if let Some(k) = self
                .inner
                .keeper
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                k.abort();
            }
        }
        self.inner.mark_lost();
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl<V, C> Inner<V, C> {
    pub(crate) async fn list_raw(&self) -> Result<(i64, Vec<KeyValue>), Error> {
        let prefix = self.keys.names.clone();
        let mut resp = retrying(self.budget, || {
            let mut c = self.kv.clone();
            let k = prefix.clone();
            async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((rev, resp.take_kvs()))
    }

    fn hold(&self, name: &str, tag: Tag) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), tag);
    }
    fn unhold(&self, name: &str, tag: Tag) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(name) == Some(&tag) {
            held.remove(name);
        }
    }
    fn rehold(&self, name: &str, old: Tag, new: Tag) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = held.get_mut(name) {
            if *t == old {
                *t = new;
            }
        }
    }
    /// Whether this registry made the version `tag` names.
    fn holds(&self, name: &str, tag: Tag) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            == Some(&tag)
    }

    fn mark_lost(&self) {
        if self.lost.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut bindings: Vec<(String, Tag)> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        bindings.sort();
        self.lost_tx.send_replace(Some(LeaseLost {
            lease: self.lease,
            bindings,
        }));
    }
}

/// The lease keeper: a keepalive every third of the TTL, on one stream reopened after any
/// failure. Only etcd's own answer (a TTL of 0, or "lease not found") declares the lease lost:
/// while etcd cannot be reached the keeper keeps trying, since a leader change resets every
/// lease's TTL and the bindings may well survive.
async fn keep_alive<V, C>(
    inner: Weak<Inner<V, C>>,
    client: Client,
    lease: i64,
    ttl: Duration,
    budget: Budget,
) {
    let period = ttl / 3;
    // Each request waits at most a third of the TTL, so that one slow answer cannot outlast
    // the lease by itself.
    let wait = budget.request.min(period);
    let mut stream = None;
    loop {
        if stream.is_none() {
            let mut c = client.clone();
            match tokio::time::timeout(wait, c.lease_keep_alive(lease)).await {
                Ok(Ok(s)) => stream = Some(s),
                // Opening the stream reads etcd's first answer: a TTL of 0 is reported as
                // this error, and means the lease is gone (it expired while the keeper could
                // not reach etcd, say).
                Ok(Err(e)) if lease_gone(&e) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.mark_lost();
                    }
                    return;
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let (keeper, answers) = stream.as_mut().expect("opened above");
        let answer = tokio::time::timeout(wait, async {
            keeper.keep_alive().await?;
            answers.message().await
        })
        .await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match answer {
            Ok(Ok(Some(a))) if a.ttl() > 0 => {
                drop(inner);
                tokio::time::sleep(period).await;
            }
            Ok(Ok(Some(_))) => {
                inner.mark_lost();
                return;
            }
            Ok(Err(e)) if lease_gone(&e) => {
                inner.mark_lost();
                return;
            }
            _ => {
                drop(inner);
                stream = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// An instance id unique across processes with overwhelming probability (never 0).
fn fresh_instance() -> InstanceId {
    InstanceId::from_raw(random_u64().max(1))
}

fn revision_of(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

fn first_kv(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// A binding this process made, as a guard: dropping it inside a tokio runtime removes the
/// binding with [`unregister_if_same`](EtcdRegistry::unregister_if_same) on a task (so only
/// if it is still this binding); outside a runtime, or if that fails, the lease removes it when
/// the registry closes or its process dies. [`detach`](Self::detach) leaves it bound.
pub struct Registration<V: Send + Sync + 'static, C: Codec<V>> {
    registry: EtcdRegistry<V, C>,
    name: String,
    tag: Tag,
    armed: bool,
}

impl<V: Send + Sync + 'static, C: Codec<V>> fmt::Debug for Registration<V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .finish()
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Registration<V, C> {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The binding's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }
    /// Removes the binding now, if it is still this one.
    pub async fn unregister(mut self) -> Result<(), Error> {
        self.armed = false;
        self.registry.unregister_if_same(&self.name, self.tag).await
    }
    /// Replaces the value, if the binding is still this one; the guard follows the new tag.
    pub async fn replace(&mut self, value: V) -> Result<Tag, Rejected<V>> {
        let t = self
            .registry
            .replace_if_same(&self.name, self.tag, value)
            .await?;
        self.tag = t;
        Ok(t)
    }
    /// Sets the binding's metadata, if the binding is still this one; the guard follows the
    /// new tag.
    pub async fn update_metadata(&mut self, metadata: Metadata) -> Result<Tag, Error> {
        let t = self
            .registry
            .update_metadata(&self.name, self.tag, metadata)
            .await?;
        self.tag = t;
        Ok(t)
    }

    /// Leaves the binding in place (it still lives under the registry's lease) and returns its
    /// tag.
    pub fn detach(mut self) -> Tag {
        self.armed = false;
        self.tag
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Drop for Registration<V, C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let registry = self.registry.clone();
            let name = std::mem::take(&mut self.name);
            let tag = self.tag;
            rt.spawn(async move {
                let _ = registry.unregister_if_same(&name, tag).await;
            });
        }
    }
}
