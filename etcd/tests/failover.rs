//! A leader killed under load, on a 3-member etcd cluster.
//!
//! Several registries (each a "process", connected to all three members) work on their own
//! names, on single-use names (bound once, perhaps removed once), and fight over one contested
//! name, while two observers follow with a mirror and a watch each: one connected to every
//! member, one only to the first leader. Mid-workload the leader is SIGKILLed; the workload
//! goes on under the new leader, and the old one is restarted as a follower (the second
//! observer's watch and mirror resume through it). Every operation whose outcome is unknown
//! (`Error::Unavailable` during the election) is settled with a linearizable read, then by
//! retrying, which the contract says is safe. At the end:
//!
//! - every binding a registry believes it holds is in etcd with exactly its tag, value and
//!   lease, and nothing else is bound (read with `list`, and own names with `get`);
//! - at no moment did two registries believe they held the contested name, and every binding
//!   it ever had in etcd was known to exactly one registry;
//! - each watch delivered every change once, in revision order, with no gap: replaying it
//!   gives exactly the final listing, and both watches saw the same history;
//! - each mirror equals a listing after `sync`;
//! - no lease was lost, and each still lives long after it would have expired had its keeper
//!   not renewed it under the new leader.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use genreg_etcd::local::Cluster;
use genreg_etcd::{
    Binding, Error, EtcdRegistry, Event, EventKind, InstanceId, Mirror, Options, Tag,
};
use tokio::task::JoinHandle;

type Reg = EtcdRegistry<String>;

const ROOT: &str = "f/";
const WORKERS: usize = 4;
const OWN_NAMES: usize = 4;
const CONTESTED: &str = "contested";
const SENTINEL: &str = "zz-sentinel";
/// The workers' lease TTL: short, so that only renewals made after the leader change can
/// explain leases still alive at the end (see `KEEP_RUNNING_AFTER_KILL`).
const TTL: Duration = Duration::from_secs(3);
/// Run before the kill.
const RUN_BEFORE_KILL: Duration = Duration::from_millis(2500);
/// Run after the kill. A new leader resets every lease to its TTL plus an election timeout
/// (1 s): without renewals after that, a lease is gone within ~2 s (election) + 3 s + 1 s.
const KEEP_RUNNING_AFTER_KILL: Duration = Duration::from_secs(8);
/// When the killed member is restarted (after the kill).
const RESTART_AFTER: Duration = Duration::from_secs(4);
/// How long settling one ambiguous operation may take (retries through the election).
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

fn worker_options() -> Options {
    // Short request timeouts and retry budgets: operations caught in the election come back
    // as `Unavailable` (outcome unknown) instead of waiting it out.
    Options::default()
        .root(ROOT)
        .ttl(TTL)
        .request_timeout(Duration::from_millis(500))
        .retry_for(Duration::from_millis(1000))
}

async fn connect(endpoints: &[String], options: Options) -> Reg {
    EtcdRegistry::connect_with(endpoints, options, genreg_etcd::Json)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Runs `op` until it gives an answer that is not `Unavailable` (SETTLE_LIMIT at most).
async fn until_available<T, F, Fut>(what: &str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        match op().await {
            Err(Error::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => {
                return r.map_err(|e| match e {
                    Error::Unavailable { .. } => panic!("{what}: unavailable for {SETTLE_LIMIT:?}"),
                    e => e,
                });
            }
        }
    }
}

/// A linearizable read that waits out the election.
async fn get(reg: &Reg, name: &str) -> Option<Binding<String>> {
    until_available(name, || reg.get(name))
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
}

/// A lease's remaining TTL (-1: gone), through the raw client, which may still pick the dead
/// member: failed requests are retried.
async fn lease_ttl(reg: &Reg, lease: i64) -> i64 {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        match reg.client().clone().lease_time_to_live(lease, None).await {
            Ok(r) => return r.ttl(),
            Err(e) if Instant::now() < deadline => {
                eprintln!("lease_time_to_live: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("lease_time_to_live: {e}"),
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    ok_after_kill: AtomicU64,
    refused: AtomicU64,
    unknown: AtomicU64,
    unknown_applied: AtomicU64,
}

/// What every worker shares.
struct Shared {
    stop: AtomicBool,
    killed: AtomicBool,
    /// The registry that believes it holds the contested name, and its tag.
    believer: Mutex<Option<(usize, Tag)>>,
    /// Every acquisition of the contested name, by whom.
    acquisitions: Mutex<Vec<(usize, Tag)>>,
    counts: Counts,
}

impl Shared {
    fn ok(&self) {
        self.counts.ok.fetch_add(1, Ordering::Relaxed);
        if self.killed.load(Ordering::Relaxed) {
            self.counts.ok_after_kill.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One "process": a registry, and what it believes it holds.
struct Worker {
    id: usize,
    reg: Reg,
    shared: Arc<Shared>,
    /// Own names: the tag and value held, or free.
    own: Vec<Option<(Tag, String)>>,
    /// Single-use names: each registered once, perhaps removed once, then never touched
    /// again, so that an event a watch or mirror misses is never made good by a later one.
    /// The tag and value held, or `None` once removed.
    logs: BTreeMap<String, Option<(Tag, String)>>,
    contested: Option<Tag>,
    next_instance: u64,
    rng: u64,
}

impl Worker {
    fn own_name(id: usize, i: usize) -> String {
        format!("w{id}-n{i}")
    }

    fn instance(&mut self) -> InstanceId {
        self.next_instance += 1;
        InstanceId::from_raw(((self.id as u64 + 1) << 40) | self.next_instance)
    }

    fn random(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    async fn run(mut self) -> Worker {
        while !self.shared.stop.load(Ordering::Relaxed) {
            // Own names, the contested name, and (three times as often) single-use names.
            let pick = (self.random() % (OWN_NAMES as u64 + 4)) as usize;
            if pick == OWN_NAMES {
                self.contest().await;
            } else if pick > OWN_NAMES {
                self.log_step().await;
            } else {
                self.own_step(pick).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self
    }

    /// Registers `name` under a fresh instance, settling an unknown outcome: a read shows
    /// whether the registration took effect (then its binding carries this very instance under
    /// this registry's lease, and a retry returns it as its own); if not, the retry is safe.
    /// `Err` is the tag of someone else's binding.
    async fn register(&mut self, name: &str, value: &str) -> Result<Tag, Tag> {
        let instance = self.instance();
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            assert!(Instant::now() < deadline, "register {name}: never settled");
            match self.reg.register_as(name, instance, value.into()).await {
                Ok(g) => {
                    self.shared.ok();
                    return Ok(g.detach());
                }
                Err(rej) => match rej.error {
                    // Refused naming this very instance: an earlier attempt of this worker's
                    // (a call that ended `Unavailable`) took effect after all. Never a second
                    // owner: the binding is this instance's, under this registry's lease.
                    Error::AlreadyRegistered { current, .. } if current.instance() == instance => {
                        let b = get(&self.reg, name).await.expect("our binding");
                        assert_eq!((b.tag, b.lease), (current, self.reg.lease()));
                        assert_eq!(b.value, value);
                        self.shared
                            .counts
                            .unknown_applied
                            .fetch_add(1, Ordering::Relaxed);
                        self.shared.ok();
                        return Ok(current);
                    }
                    Error::AlreadyRegistered { current, .. } => {
                        self.shared.counts.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(current);
                    }
                    Error::Unavailable { .. } => {
                        self.shared.counts.unknown.fetch_add(1, Ordering::Relaxed);
                        let Some(b) = get(&self.reg, name).await else {
                            continue;
                        };
                        if b.tag.instance() != instance {
                            continue; // not ours (yet): the retry will tell
                        }
                        self.shared
                            .counts
                            .unknown_applied
                            .fetch_add(1, Ordering::Relaxed);
                        assert_eq!(
                            b.lease,
                            self.reg.lease(),
                            "{name}: ours, under another lease"
                        );
                        assert_eq!(b.value, value);
                        // The safe-retry contract: a new call never makes a second owner; it
                        // is refused, naming this instance's binding.
                        let again = until_available(name, || async {
                            self.reg
                                .register_as(name, instance, value.into())
                                .await
                                .map(|g| g.detach())
                                .map_err(|r| r.error)
                        })
                        .await;
                        match again {
                            Err(Error::AlreadyRegistered { current, .. }) => {
                                assert_eq!(current, b.tag, "{name}: the retry found another tag")
                            }
                            Ok(t) => {
                                panic!("{name}: a second owner ({t}) of an applied registration")
                            }
                            Err(e) => panic!("{name}: retry of an applied registration: {e}"),
                        }
                        self.shared.ok();
                        return Ok(b.tag);
                    }
                    e => panic!("worker {}: register {name}: {e}", self.id),
                },
            }
        }
    }

    /// Removes this worker's binding `tag` of `name`, settling an unknown outcome. A refusal
    /// naming another binding means ours is gone (only its owner removes a binding here, so
    /// only an earlier attempt of this very call can have removed it); `others_may_bind` says
    /// whether another registry may have bound the name since.
    async fn unregister(&mut self, name: &str, tag: Tag, others_may_bind: bool) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "unregister {name}: never settled"
            );
            match self.reg.unregister_if_same(name, tag).await {
                Ok(()) | Err(Error::NotFound { .. }) => {
                    self.shared.ok();
                    return;
                }
                Err(Error::TagMismatch { current, .. }) if others_may_bind => {
                    assert_ne!(current, tag);
                    self.shared.ok();
                    return;
                }
                Err(Error::Unavailable { .. }) => {
                    self.shared.counts.unknown.fetch_add(1, Ordering::Relaxed);
                    match get(&self.reg, name).await {
                        Some(b) if b.tag == tag => continue, // not applied: retry
                        Some(b) => {
                            assert!(others_may_bind, "{name}: {tag} replaced by {:?}", b.tag);
                        }
                        None => {}
                    }
                    self.shared
                        .counts
                        .unknown_applied
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.ok();
                    return;
                }
                Err(e) => panic!("worker {}: unregister {name} {tag}: {e}", self.id),
            }
        }
    }

    /// Replaces the value of an own name, settling an unknown outcome; returns the new tag.
    async fn replace(&mut self, name: &str, tag: Tag, value: &str) -> Tag {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            assert!(Instant::now() < deadline, "replace {name}: never settled");
            let error = match self.reg.replace_if_same(name, tag, value.into()).await {
                Ok(t) => {
                    assert!(t > tag && t.instance() == tag.instance());
                    self.shared.ok();
                    return t;
                }
                Err(rej) => rej.error,
            };
            let unknown = matches!(error, Error::Unavailable { .. });
            match error {
                Error::Unavailable { .. } => {
                    self.shared.counts.unknown.fetch_add(1, Ordering::Relaxed);
                }
                // A retry after an attempt that took effect finds our own new version.
                Error::TagMismatch { current, .. } if current.instance() == tag.instance() => {}
                e => panic!("worker {}: replace {name} {tag}: {e}", self.id),
            }
            let b = get(&self.reg, name)
                .await
                .unwrap_or_else(|| panic!("{name}: an own binding vanished during a replace"));
            if b.tag == tag {
                continue; // not applied: retry
            }
            assert_eq!(
                (b.tag.instance(), b.value.as_str(), b.lease),
                (tag.instance(), value, self.reg.lease()),
                "{name}: replaced by someone else"
            );
            assert!(b.tag > tag);
            if unknown {
                self.shared
                    .counts
                    .unknown_applied
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.shared.ok();
            return b.tag;
        }
    }

    async fn own_step(&mut self, i: usize) {
        let name = Self::own_name(self.id, i);
        let n = self.random() % 1_000_000;
        let value = format!("w{}-v{n}", self.id);
        match self.own[i].clone() {
            None => match self.register(&name, &value).await {
                Ok(t) => self.own[i] = Some((t, value)),
                Err(current) => panic!("{name}: an own name bound by someone else ({current})"),
            },
            Some((tag, _)) if self.random() % 2 == 0 => {
                let t = self.replace(&name, tag, &value).await;
                self.own[i] = Some((t, value));
            }
            Some((tag, _)) => {
                self.unregister(&name, tag, false).await;
                self.own[i] = None;
            }
        }
    }

    async fn log_step(&mut self) {
        let oldest_held = self
            .logs
            .iter()
            .find_map(|(n, h)| h.as_ref().map(|(t, _)| (n.clone(), *t)));
        match oldest_held {
            Some((name, tag)) if self.random() % 4 == 0 => {
                self.unregister(&name, tag, false).await;
                self.logs.insert(name, None);
            }
            _ => {
                let name = format!("w{}-l{:05}", self.id, self.logs.len());
                let value = format!("w{}-log", self.id);
                match self.register(&name, &value).await {
                    Ok(t) => self.logs.insert(name, Some((t, value))),
                    Err(current) => {
                        panic!("{name}: a fresh name bound by someone else ({current})")
                    }
                };
            }
        }
    }

    async fn contest(&mut self) {
        match self.contested {
            Some(tag) => {
                {
                    let mut b = self.shared.believer.lock().unwrap();
                    assert_eq!(*b, Some((self.id, tag)), "the believer slot moved under us");
                    *b = None; // no longer believed held from here on
                }
                self.unregister(CONTESTED, tag, true).await;
                self.contested = None;
            }
            None => {
                let value = format!("w{}", self.id);
                if let Ok(tag) = self.register(CONTESTED, &value).await {
                    let mut b = self.shared.believer.lock().unwrap();
                    assert!(
                        b.is_none(),
                        "worker {} holds {CONTESTED} as {tag} while {:?} believes it holds it",
                        self.id,
                        *b
                    );
                    *b = Some((self.id, tag));
                    self.shared
                        .acquisitions
                        .lock()
                        .unwrap()
                        .push((self.id, tag));
                    self.contested = Some(tag);
                }
            }
        }
    }
}

/// Replays watch events into name -> tag, checking each against the state before it: a
/// registration of a free name, a replacement or removal of the very tag there. A missed or
/// repeated event breaks one of these.
fn replay(events: &[Event<String>]) -> BTreeMap<String, Tag> {
    let mut state = BTreeMap::new();
    let mut last_rev = 0;
    for e in events {
        assert!(
            e.revision > last_rev,
            "revisions out of order or repeated: {} after {last_rev} ({e:?})",
            e.revision
        );
        last_rev = e.revision;
        match &e.kind {
            EventKind::Registered(b) => {
                assert_eq!(b.name, e.name);
                assert_eq!(b.tag.generation().as_raw() as i64, e.revision);
                let before = state.insert(e.name.clone(), b.tag);
                assert!(
                    before.is_none(),
                    "{e:?} over {before:?}: a removal was missed"
                );
            }
            EventKind::Replaced { binding, old } => {
                assert_eq!(binding.tag.generation().as_raw() as i64, e.revision);
                let before = state.insert(e.name.clone(), binding.tag);
                assert!(before.is_some(), "{e:?} of a free name");
                assert_eq!(
                    before, *old,
                    "{e:?}: the replaced version was not the one seen"
                );
            }
            EventKind::Removed { tag, .. } => {
                let before = state.remove(&e.name);
                assert!(before.is_some(), "{e:?} of a free name");
                assert_eq!(
                    before, *tag,
                    "{e:?}: the removed version was not the one seen"
                );
            }
        }
    }
    state
}

/// An observer: a registry with default (patient) budgets, a mirror, and a watch from the
/// empty start on a task that collects events up to the sentinel.
struct Observer {
    reg: Reg,
    mirror: Mirror<String>,
    watcher: JoinHandle<Vec<Event<String>>>,
}

impl Observer {
    async fn start(endpoints: &[String]) -> Observer {
        let reg = connect(endpoints, Options::default().root(ROOT)).await;
        let (rev0, empty) = reg.list().await.unwrap();
        assert!(empty.is_empty());
        let mirror = reg.mirror().await.unwrap();
        let mut watch = reg.watch(rev0 + 1);
        let watcher = tokio::spawn(async move {
            let mut events = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(60), watch.next()).await {
                    Ok(Ok(e)) => {
                        let end = e.name == SENTINEL;
                        events.push(e);
                        if end {
                            return events;
                        }
                    }
                    Ok(Err(e)) => panic!("watch failed after {} events: {e}", events.len()),
                    Err(_) => panic!("watch: nothing for 60 s after {} events", events.len()),
                }
            }
        });
        Observer {
            reg,
            mirror,
            watcher,
        }
    }

    /// After the sentinel is written: the watch replayed up to `rev` is `listed`, and the
    /// mirror after a sync equals a listing at the sync's revision. Returns the events up to
    /// `rev`.
    async fn check(
        self,
        who: &str,
        rev: i64,
        listed: &BTreeMap<String, Tag>,
    ) -> Vec<Event<String>> {
        let events = tokio::time::timeout(Duration::from_secs(30), self.watcher)
            .await
            .unwrap_or_else(|_| panic!("{who}: the watch did not reach the sentinel in 30 s"))
            .unwrap();
        let (upto, after): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.revision <= rev);
        assert_eq!(
            after.len(),
            1,
            "{who}: only the sentinel after the listing: {after:?}"
        );
        assert_eq!(after[0].name, SENTINEL);
        let replayed = replay(&upto);
        assert_eq!(
            &replayed, listed,
            "{who}: the watch replayed against the listing at {rev}"
        );

        let synced = tokio::time::timeout(Duration::from_secs(30), self.mirror.sync())
            .await
            .unwrap_or_else(|_| panic!("{who}: mirror sync took over 30 s"))
            .unwrap();
        let mirrored: BTreeMap<String, (Tag, String, i64)> = self
            .mirror
            .local()
            .pin()
            .iter()
            .map(|e| {
                let b = e.value();
                (b.name.clone(), (b.tag, b.value.clone(), b.lease))
            })
            .collect();
        let (rev2, listing) = self.reg.list().await.unwrap();
        assert_eq!(
            rev2, synced,
            "{who}: a write between the sync and the listing"
        );
        let listed2: BTreeMap<String, (Tag, String, i64)> = listing
            .into_iter()
            .map(|b| (b.name.clone(), (b.tag, b.value, b.lease)))
            .collect();
        assert_eq!(mirrored, listed2, "{who}: the mirror at {synced}");
        assert_eq!(self.mirror.relists(), 0, "{who}: nothing was compacted");
        assert!(!self.reg.is_lease_lost(), "{who}: lease lost");
        upto
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_under_load() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let eps = cluster.endpoints();
    let first_leader = tokio::task::block_in_place(|| cluster.leader());
    eprintln!(
        "cluster up in {:?}, leader m{first_leader}",
        started.elapsed()
    );

    // Two observers: one through every member; one only through the leader, whose watch and
    // mirror therefore lose their member and resume when it comes back.
    let observer = Observer::start(&eps).await;
    let bound = Observer::start(&[cluster.member_endpoint(first_leader)]).await;

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        believer: Mutex::new(None),
        acquisitions: Mutex::new(Vec::new()),
        counts: Counts::default(),
    });
    let mut tasks = Vec::new();
    for id in 0..WORKERS {
        let w = Worker {
            id,
            reg: connect(&eps, worker_options()).await,
            shared: shared.clone(),
            own: vec![None; OWN_NAMES],
            logs: BTreeMap::new(),
            contested: None,
            next_instance: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1),
        };
        tasks.push(tokio::spawn(w.run()));
    }

    tokio::time::sleep(RUN_BEFORE_KILL).await;
    let ok_before = shared.counts.ok.load(Ordering::Relaxed);
    assert!(ok_before > 0, "no operation succeeded before the kill");
    let leader = tokio::task::block_in_place(|| cluster.leader());
    if leader != first_leader {
        eprintln!("note: leadership moved to m{leader} before the kill");
    }
    tokio::task::block_in_place(|| cluster.kill(leader));
    shared.killed.store(true, Ordering::Relaxed);
    let killed_at = Instant::now();
    eprintln!("killed leader m{leader} after {ok_before} successful operations");
    let new_leader = tokio::task::block_in_place(|| {
        cluster.wait_healthy_quorum();
        cluster.leader()
    });
    assert_ne!(new_leader, leader);
    eprintln!("new leader m{new_leader} after {:?}", killed_at.elapsed());

    // The old leader comes back as a follower while the workload goes on.
    tokio::time::sleep(RESTART_AFTER.saturating_sub(killed_at.elapsed())).await;
    tokio::task::block_in_place(|| {
        cluster.restart(leader);
        cluster.wait_member_healthy(leader);
    });
    eprintln!("m{leader} back after {:?}", killed_at.elapsed());

    tokio::time::sleep(KEEP_RUNNING_AFTER_KILL.saturating_sub(killed_at.elapsed())).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut workers = Vec::new();
    for t in tasks {
        match t.await {
            Ok(w) => workers.push(w),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let c = &shared.counts;
    eprintln!(
        "operations: {} ok ({} after the kill), {} refused, {} with unknown outcome \
         ({} of which had taken effect); {:?} after the kill",
        c.ok.load(Ordering::Relaxed),
        c.ok_after_kill.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.unknown.load(Ordering::Relaxed),
        c.unknown_applied.load(Ordering::Relaxed),
        killed_at.elapsed()
    );
    assert!(
        c.ok_after_kill.load(Ordering::Relaxed) > 0,
        "nothing succeeded after the kill"
    );

    // Leases: none lost; each still has time to live, long after a lease left alone since
    // the leader change would have expired.
    for w in &workers {
        assert!(!w.reg.is_lease_lost(), "worker {} lost its lease", w.id);
        let ttl = lease_ttl(&observer.reg, w.reg.lease()).await;
        assert!(ttl > 0, "worker {}'s lease: TTL {ttl}", w.id);
    }

    // What the workers believe against a linearizable listing, and a read of each name.
    let (rev, listing) = observer.reg.list().await.unwrap();
    let listed: BTreeMap<String, Binding<String>> =
        listing.into_iter().map(|b| (b.name.clone(), b)).collect();
    let mut believed: BTreeMap<String, (Tag, String, i64)> = BTreeMap::new();
    for w in &workers {
        for (i, held) in w.own.iter().enumerate() {
            let name = Worker::own_name(w.id, i);
            let got = get(&w.reg, &name).await;
            match held {
                Some((tag, value)) => {
                    let got = got.unwrap_or_else(|| panic!("{name}: held as {tag}, not in etcd"));
                    assert_eq!(
                        (got.tag, &got.value, got.lease),
                        (*tag, value, w.reg.lease()),
                        "{name}"
                    );
                    believed.insert(name, (*tag, value.clone(), w.reg.lease()));
                }
                None => assert!(got.is_none(), "{name}: believed free, bound as {got:?}"),
            }
        }
    }
    for w in &workers {
        for (name, held) in &w.logs {
            if let Some((tag, value)) = held {
                believed.insert(name.clone(), (*tag, value.clone(), w.reg.lease()));
            }
        }
    }
    let believers: Vec<(usize, Tag)> = workers
        .iter()
        .filter_map(|w| w.contested.map(|t| (w.id, t)))
        .collect();
    assert!(
        believers.len() <= 1,
        "several believe they hold it: {believers:?}"
    );
    assert_eq!(*shared.believer.lock().unwrap(), believers.first().copied());
    if let Some(&(id, tag)) = believers.first() {
        believed.insert(
            CONTESTED.into(),
            (tag, format!("w{id}"), workers[id].reg.lease()),
        );
    }
    let listed_state: BTreeMap<String, (Tag, String, i64)> = listed
        .iter()
        .map(|(n, b)| (n.clone(), (b.tag, b.value.clone(), b.lease)))
        .collect();
    assert_eq!(
        listed_state, believed,
        "etcd at {rev} against what the workers believe"
    );

    // The watches: every change once, in order, no gap; replayed, each is the listing. The
    // mirrors equal a listing after a sync.
    observer
        .reg
        .register(SENTINEL, "end".into())
        .await
        .unwrap()
        .detach();
    let listed_tags: BTreeMap<String, Tag> =
        listed.iter().map(|(n, b)| (n.clone(), b.tag)).collect();
    let history = observer.check("observer", rev, &listed_tags).await;
    let bound_history = bound
        .check("leader-bound observer", rev, &listed_tags)
        .await;
    assert_eq!(bound_history, history, "two watches, two histories");

    // Every binding the contested name ever had was some worker's acquisition, and each
    // acquisition one of those bindings.
    let in_history: BTreeSet<Tag> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Registered(b) if e.name == CONTESTED => Some(b.tag),
            _ => None,
        })
        .collect();
    let acquisitions = shared.acquisitions.lock().unwrap().clone();
    let acquired: BTreeSet<Tag> = acquisitions.iter().map(|&(_, t)| t).collect();
    assert_eq!(acquired.len(), acquisitions.len());
    assert_eq!(in_history, acquired, "the contested name's owners");
    eprintln!(
        "{} events up to revision {rev}; the contested name changed hands {} times; \
         done in {:?}",
        history.len(),
        acquired.len(),
        started.elapsed()
    );
}
