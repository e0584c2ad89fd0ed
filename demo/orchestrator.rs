//! A simulated agent orchestrator on top of `genreg`.
//!
//! ```sh
//! cargo run --release --example orchestrator            # runs for 3 seconds
//! cargo run --release --example orchestrator -- 10      # runs for 10 seconds
//! ```
//!
//! Several threads share one `Registry<Arc<Agent>>`:
//!
//! - **workers** (2 threads) spawn agents under auto-generated names (`register_auto`), keep a
//!   small team alive through their `Registration` guards, hot-reload some of them in place
//!   (`Registration::replace`), register short-lived *scouts* weakly (`register_weak`: the
//!   registry does not keep them alive), and retire agents by dropping their guards;
//! - **clients** (2 threads) discover agents by name and invoke them: the well-known services,
//!   the coordinator, and workers *routed by capability and kind* (every agent is registered
//!   with `Metadata`: a kind and capabilities; a client asks for a worker that can `translate`,
//!   or the best match for `[compute, summarize]`, and the registry answers from its index,
//!   never with an agent that is gone); they also upgrade services with `replace_if_same`,
//!   racing each other (exactly one upgrade per version wins);
//! - the **coordinator** thread replays, over and over, the race that MARSYS documents under
//!   "Identity-Safe Unregistration": coordinator A's destructor runs *late*, after coordinator B
//!   has taken the name. A's guard tries to unbind the name, is refused because the binding is
//!   no longer A's, and B stays bound;
//! - a **finalizer** thread is where those late destructors run, like a garbage collector's
//!   finalizer thread in a managed runtime;
//! - a **monitor** thread keeps a live mirror of the registry from its events: `subscribe`
//!   (a snapshot at revision R plus every change after R, no gap, no duplicate), then the
//!   watcher; if it ever falls a whole history behind it gets `Lagged` and subscribes again.
//!   At the end its mirror must equal the registry, name by name and tag by tag;
//! - **executors** (4 threads, one per agent) hold a *lease*: registered with a time to live
//!   (`with_ttl(..).metadata(..)`), they renew it with `Registration::keepalive` from their
//!   loop (a heartbeat). A **reaper** thread (`spawn_reaper`) removes a binding whose lease ran
//!   out (event reason `Expired`); a **prober** thread checks every executor's health with a
//!   synchronous ping and records it (`record_health`: passing, warning or critical, with the
//!   latency and the error), and the registry removes an executor that stays critical
//!   (`Builder::remove_critical_after`, reason `Critical`). Clients send work only to healthy
//!   executors (`find().kind("executor").healthy()`). Two executors fail on purpose: one
//!   *hangs* (stops heartbeating and answering: it expires), one *fails its checks* while still
//!   heartbeating (it is removed as critical). A **supervisor** thread watches the executors'
//!   events and starts a replacement under the same name for each one removed as expired or
//!   critical. When the hung executor wakes up, its keepalive is refused and its guard cannot
//!   unbind its replacement.
//! - a **pool** of three browsers (`register_pool`: MARSYS's `AgentPool`, members `browser_0`
//!   .. `browser_2`, all bound or none: a pool whose member name is taken binds nothing) is
//!   leased per task: **dispatchers** (3 threads) wait for a browser with `acquire_async`
//!   (woken by a release, on a small `block_on` of its own: no runtime) or `acquire_timeout`, and
//!   **branchers** (2 threads) run multi-step branches, each step leasing for the branch's key
//!   (`get_or_acquire` / `acquire_for`: MARSYS's `branch_id`) and getting the same browser,
//!   or giving up on `Exhausted`. Each lease marks its browser held and panics if it already
//!   was. Dispatchers also give each task to the least loaded **analyst** (`least_loaded`,
//!   with tasks counted per binding by `Registry::acquire` on a single agent's name). At the
//!   end the pool's statistics must add up with what its users counted (every lease
//!   released, allocations == releases), every analyst's load is zero, a re-registered analyst
//!   starts at zero, a cancelled wait leaves nothing behind, and the pool is removed while a
//!   lease is out (the lease stays usable). Pool members carry no TTL or health: liveness is
//!   the executors' part.
//!
//! `main` also waits for the coordinator's name (`wait_for`), wakes a supervisor blocked on
//! `Registration::wait_evicted` by evicting its agent, and saves the registry with `snapshot`
//! and restores it into a fresh one (MARSYS's `save_state`/`load_state`, here with agents
//! turned into descriptors and back; `--example persistence` does it through JSON): the tags
//! survive, and a tag from before the restore matches nothing newer.
//!
//! Every thread checks the registry's promises as it goes and panics if one breaks; `main`
//! checks the final state and prints a summary.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use genreg::{
    Error, EventKind, Filter, HealthReport, HealthState, Kind, Lease, Metadata, Pool, PoolOptions,
    PoolRegistration, PoolStats, Reason, Registration, Registry, Tag, WatchError, Watcher,
};

/// Well-known services: registered once by `main`, upgraded by clients, never removed.
const SERVICES: [&str; 4] = ["critic", "planner", "researcher", "writer"];
/// What each service can do (its metadata: kind "service", this capability).
const SERVICE_SKILLS: [&str; 4] = ["critique", "planning", "research", "writing"];
/// What each worker thread's agents can do: every worker can `compute`; thread 0's also
/// `summarize`, thread 1's also `translate`.
const WORKER_SKILLS: [[&str; 2]; 2] = [["compute", "summarize"], ["compute", "translate"]];
/// The registry's bound (`Builder::max_entries`: MARSYS's `BoundedRegistry` and `MAX_AGENTS`).
const MAX_AGENTS: usize = 512;
/// The name coordinators A and B fight over.
const COORDINATOR: &str = "coordinator";
/// How many agents a worker thread keeps registered at once.
const TEAM_SIZE: usize = 16;
const WORKER_THREADS: usize = 2;
const CLIENT_THREADS: usize = 2;
/// Executors: long-lived agents, each on a thread of its own, named `executor-0` ..
/// `executor-3` (a replacement takes the name of the executor it replaces).
const EXECUTORS: usize = 4;
/// An executor's lease: the time to live of its binding, renewed by each heartbeat.
const TTL: Duration = Duration::from_millis(150);
/// How often an executor heartbeats (`keepalive`): fifteen heartbeats per lease.
const HEARTBEAT: Duration = Duration::from_millis(10);
/// How often the prober checks every executor's health.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// An executor critical for this long is removed (`Builder::remove_critical_after`). Longer
/// than the lease, so that an executor that hangs (silent, so also critical) expires first.
const CRITICAL_AFTER: Duration = Duration::from_millis(300);
/// How often the reaper thread removes expired (and too long critical) bindings.
const REAP_EVERY: Duration = Duration::from_millis(10);
/// When the first executors' faults strike, after they start.
const FAULT_AFTER: Duration = Duration::from_millis(100);
/// How long the hung executor stays hung: three leases, time enough to be found dead and
/// replaced before it wakes up.
const HANG_FOR: Duration = TTL.saturating_mul(3);

// ---------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------

/// Agents alive right now (incremented in `Agent::new`, decremented in `Drop`). At the end every
/// agent must have been dropped exactly once: nothing leaked, nothing freed twice.
static AGENTS_ALIVE: AtomicU64 = AtomicU64::new(0);

/// A simulated agent. `version` is bumped by every hot reload (a reload is a new `Agent`).
#[derive(Debug)]
struct Agent {
    role: &'static str,
    version: u64,
    calls: AtomicU64,
    /// Where tasks for an agent that runs on a thread of its own go (see `inbox_shutdown`).
    inbox: Option<mpsc::Sender<u64>>,
    /// What is wrong with it, if anything (`FINE`, `SLOW`, `HUNG`, `FAILING`): what a health
    /// probe finds (see `ping`). Only executors ever go wrong.
    fault: AtomicU8,
}

/// An agent's faults (`Agent::fault`).
const FINE: u8 = 0;
/// Answers, slowly: its checks pass with a warning (still healthy: still sent work).
const SLOW: u8 = 1;
/// Does not answer, and does not heartbeat: its lease runs out.
const HUNG: u8 = 2;
/// Answers with an error, and still heartbeats: it stays critical until it is removed.
const FAILING: u8 = 3;

impl Agent {
    fn new(role: &'static str, version: u64) -> Arc<Agent> {
        Agent::with_inbox(role, version, None)
    }

    fn with_inbox(
        role: &'static str,
        version: u64,
        inbox: Option<mpsc::Sender<u64>>,
    ) -> Arc<Agent> {
        AGENTS_ALIVE.fetch_add(1, Relaxed);
        Arc::new(Agent {
            role,
            version,
            calls: AtomicU64::new(0),
            inbox,
            fault: AtomicU8::new(FINE),
        })
    }

    /// "Runs a task": counts the call and answers with the version that handled it.
    fn invoke(&self, _task: u64) -> u64 {
        self.calls.fetch_add(1, Relaxed);
        self.version
    }

    /// A health probe, answered at once: `Ok(None)` all is well, `Ok(Some(warning))` it works
    /// but something is off, `Err(error)` it does not work. A real prober would wait for a
    /// hung agent's answer until a deadline; this one is told at once that none will come.
    fn ping(&self) -> Result<Option<&'static str>, &'static str> {
        match self.fault.load(Relaxed) {
            FINE => Ok(None),
            SLOW => Ok(Some("slow: answered over its latency budget")),
            HUNG => Err("no answer before the probe's deadline"),
            _ => Err("its model backend is unreachable"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        AGENTS_ALIVE.fetch_sub(1, Relaxed);
    }
}

type Agents = Registry<Arc<Agent>>;

// ---------------------------------------------------------------------------------------------
// Statistics (one per thread, summed at the end)
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    /// Every call into the registry.
    ops: u64,
    registrations: u64,
    auto_registrations: u64,
    weak_registrations: u64,
    lookups: u64,
    lookup_misses: u64,
    invocations: u64,
    /// `Registration::replace` by a guard's owner (always succeeds).
    guard_replacements: u64,
    /// `replace_if_same` races between clients.
    upgrades_won: u64,
    upgrades_lost: u64,
    /// Late destructors of coordinator A refused because B holds the name.
    stale_drops_refused: u64,
    stale_unregisters_refused: u64,
    /// Rounds of the late-destructor race played.
    coordinator_rounds: u64,
    /// Weak scouts whose binding vanished when their owner dropped them.
    weak_vanished: u64,
    /// Tasks routed to an agent found by capability or kind (discovery queries).
    routed: u64,
    /// Discovery queries made, and how many found no agent able to do the task.
    queries: u64,
    unroutable: u64,
    /// Agents whose metadata their guard changed (`set_metadata`).
    retagged: u64,
    /// Tasks sent to an executor found by a query for healthy executors, and queries that found
    /// none healthy.
    executor_tasks: u64,
    executor_unroutable: u64,
}

/// The metadata of a worker spawned by worker thread `id`.
fn worker_meta(id: usize) -> Metadata {
    Metadata::builder()
        .kind("worker")
        .capabilities(WORKER_SKILLS[id % WORKER_SKILLS.len()])
        .label("thread", id.to_string())
        .build()
        .expect("valid metadata")
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        self.registrations += o.registrations;
        self.auto_registrations += o.auto_registrations;
        self.weak_registrations += o.weak_registrations;
        self.lookups += o.lookups;
        self.lookup_misses += o.lookup_misses;
        self.invocations += o.invocations;
        self.guard_replacements += o.guard_replacements;
        self.upgrades_won += o.upgrades_won;
        self.upgrades_lost += o.upgrades_lost;
        self.stale_drops_refused += o.stale_drops_refused;
        self.stale_unregisters_refused += o.stale_unregisters_refused;
        self.coordinator_rounds += o.coordinator_rounds;
        self.weak_vanished += o.weak_vanished;
        self.routed += o.routed;
        self.queries += o.queries;
        self.unroutable += o.unroutable;
        self.retagged += o.retagged;
        self.executor_tasks += o.executor_tasks;
        self.executor_unroutable += o.executor_unroutable;
    }
}

// ---------------------------------------------------------------------------------------------
// Workers: register_auto, Registration::replace, register_weak, drop
// ---------------------------------------------------------------------------------------------

fn worker(id: usize, registry: Agents, stop: &AtomicBool) -> Stats {
    let mut s = Stats::default();
    let mut team: VecDeque<Registration<Arc<Agent>>> = VecDeque::new();
    // A scout is owned by the task that uses it; the registry only points at it.
    let mut scouts: VecDeque<(Arc<Agent>, Registration<Arc<Agent>>)> = VecDeque::new();
    let mut round = 0u64;
    // One `Arc<Metadata>` shared by every agent this thread spawns.
    let meta = Arc::new(worker_meta(id));
    let scout_meta = Arc::new(
        Metadata::builder()
            .kind("scout")
            .capability("browse")
            .build()
            .expect("valid metadata"),
    );

    while !stop.load(Relaxed) {
        round += 1;

        // Spawn a worker under a fresh name: `worker-1`, `worker-2`, ... never reused. It is
        // registered with its kind and capabilities, so clients can route work to it.
        let mut guard = registry
            .with_metadata(Arc::clone(&meta))
            .register_auto("worker", Agent::new("worker", 0))
            .expect("register_auto never fails on a collision");
        s.ops += 1;
        s.registrations += 1;
        s.auto_registrations += 1;

        // It is discoverable by name at once, from every thread.
        let entry = registry.get(guard.name()).expect("a guarded name is bound");
        s.ops += 1;
        s.lookups += 1;
        assert_eq!(entry.tag(), guard.tag(), "the binding is the guard's own");
        entry.invoke(round);
        s.invocations += 1;

        // Hot reload every eighth worker: a new agent under the same name and guard.
        if round % 8 == 0 {
            let next = entry.version + 1;
            let tag = guard
                .replace(Agent::new("worker", next))
                .expect("only this guard writes this name");
            s.ops += 1;
            s.guard_replacements += 1;
            assert!(tag.generation() > entry.tag().generation());
            let now = registry.get(guard.name()).expect("a replace leaves no gap");
            s.ops += 1;
            s.lookups += 1;
            assert_eq!((now.tag(), now.version), (tag, next));
        }
        drop(entry);

        // Retire the oldest worker by dropping its guard: the name is unbound at once. Before
        // that it says it is draining (a tag-checked metadata update: no longer `compute`),
        // so no client routes new work to it.
        team.push_back(guard);
        if team.len() > TEAM_SIZE {
            let old = team.pop_front().expect("team is not empty");
            if round % 4 == 0 {
                let draining = meta
                    .to_builder()
                    .without_capability("compute")
                    .label("state", "draining")
                    .build()
                    .expect("valid metadata");
                old.set_metadata(draining).expect("the guard's own binding");
                s.ops += 1;
                s.retagged += 1;
            }
            let name = old.name().to_owned();
            drop(old);
            assert!(
                !registry.contains(&name),
                "dropping a current guard unbinds"
            );
            s.ops += 1;
        }

        // Every 16th round: a weakly registered scout.
        if round % 16 == 0 {
            let scout = Agent::new("scout", 0);
            let name = format!("scout-{id}-{round}");
            let guard = registry
                .with_metadata(Arc::clone(&scout_meta))
                .register_weak(&name, &scout)
                .expect("fresh name");
            s.ops += 1;
            s.registrations += 1;
            s.weak_registrations += 1;
            scouts.push_back((scout, guard));
        }
        if scouts.len() > 4 {
            retire_scout(&registry, scouts.pop_front().expect("not empty"), &mut s);
        }
    }
    // The team's guards drop here and unbind their names.
    for scout in scouts {
        retire_scout(&registry, scout, &mut s);
    }
    s
}

/// The task that owned a weakly registered scout ends: the binding vanishes with the agent.
fn retire_scout(
    registry: &Agents,
    (scout, guard): (Arc<Agent>, Registration<Arc<Agent>>),
    s: &mut Stats,
) {
    let alive = Arc::downgrade(&scout);
    drop(scout);
    // A client that looked the scout up a moment ago may still be using it (it holds a strong
    // reference); the agent dies when that call returns.
    while alive.strong_count() > 0 {
        thread::yield_now();
    }
    // Once the agent is dead its binding is invisible to every read, although its guard lives.
    assert!(
        registry.get(guard.name()).is_none(),
        "a dead weak binding is invisible"
    );
    assert!(!guard.is_current());
    s.ops += 2;
    s.weak_vanished += 1;
    // Dropping the guard now only purges the dead binding (it is still the guard's own).
}

// ---------------------------------------------------------------------------------------------
// Clients: get, get_if, replace_if_same, names
// ---------------------------------------------------------------------------------------------

/// A tiny deterministic PRNG (xorshift64), so that the example needs no dependencies.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn client(id: usize, registry: Agents, stop: &AtomicBool, upgrades: &[AtomicU64]) -> Stats {
    let mut s = Stats::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    // The last version of each service this client saw: lookups are linearizable, and every
    // upgrade raises the version, so a client never sees a service go back in time.
    let mut last_seen = [0u64; SERVICES.len()];
    let mut directory: Vec<String> = Vec::new();
    let mut i = 0u64;

    while !stop.load(Relaxed) {
        i += 1;

        // 1. Call a well-known service. Services are replaced, never removed, and a replace is
        //    one atomic swap: the name is never observed unbound.
        let k = rng.below(SERVICES.len());
        let service = registry
            .get(SERVICES[k])
            .expect("services are always bound");
        s.ops += 1;
        s.lookups += 1;
        let version = service.invoke(i);
        s.invocations += 1;
        assert!(version >= last_seen[k], "{} went back in time", SERVICES[k]);
        last_seen[k] = version;

        // 2. A fenced read: the value only if the binding is still the one we looked up. If
        //    it is, it is the very same agent (a replacement always has a new tag).
        if let Some(same) = registry.get_if(SERVICES[k], service.tag()) {
            assert!(Arc::ptr_eq(&same, &service), "same tag, same binding");
        }
        s.ops += 1;

        // 3. Now and then, upgrade the service: build version + 1 from what we saw, and swap it
        //    in only if nobody upgraded it since (the other client races us for the same tag).
        if i % 32 == id as u64 {
            let upgraded = Agent::new(service.role, service.version + 1);
            match registry.replace_if_same(SERVICES[k], service.tag(), upgraded) {
                Ok(_) => {
                    s.upgrades_won += 1;
                    upgrades[k].fetch_add(1, Relaxed);
                }
                Err(rejected) => match rejected.error() {
                    Error::TagMismatch { current, .. } => {
                        assert!(current.generation() > service.tag().generation());
                        s.upgrades_lost += 1;
                    }
                    other => panic!("a service is never removed, got {other}"),
                },
            }
            s.ops += 1;
        }

        // 4. Call the coordinator, whichever one is bound right now (if any). Every client
        //    calls it, so the call borrows it (`read`) rather than cloning its `Arc`: no write
        //    to the shared reference count. The call is short; it runs pinned.
        if registry.read(COORDINATOR, |c| c.invoke(i)).is_some() {
            s.invocations += 1;
        } else {
            s.lookup_misses += 1;
        }
        s.ops += 1;
        s.lookups += 1;

        // 5. Routing by capability: a task that needs `translate` goes to a worker that can
        //    (only thread 1's agents can), one that needs `compute` and `summarize` to the best
        //    match. The index never answers with an agent that is gone, nor with one that no
        //    longer has the capability (a draining worker dropped `compute`).
        if i % 16 == 0 {
            let skill = if i % 32 == 0 {
                "translate"
            } else {
                "summarize"
            };
            let found = registry
                .find()
                .kind("worker")
                .capability(skill)
                .limit(4)
                .run()
                .expect("valid query");
            s.ops += 1;
            s.queries += 1;
            match found.get(rng.below(found.len().max(1))) {
                Some(m) => {
                    assert!(m.metadata.has_capability(skill), "{m:?} cannot {skill}");
                    assert!(m.name.starts_with("worker-"));
                    m.value.invoke(i);
                    s.invocations += 1;
                    s.routed += 1;
                }
                None => s.unroutable += 1,
            }
            let best = registry
                .best_match(&["compute", "summarize"])
                .expect("valid capabilities");
            s.ops += 1;
            s.queries += 1;
            if let Some(m) = best {
                assert!(m.metadata.has_capability("compute"), "draining: {m:?}");
                m.value.invoke(i);
                s.invocations += 1;
                s.routed += 1;
            }
        }
        // Work for an executor goes only to a healthy one: its last health check passed (with
        // a warning, maybe). One never checked yet (just started), critical (hung, failing) or
        // gone (expired, removed) is not offered.
        if i % 16 == 8 {
            let ready = registry
                .find()
                .kind("executor")
                .capability("execute")
                .healthy()
                .run()
                .expect("valid query");
            s.ops += 1;
            s.queries += 1;
            match ready.get(rng.below(ready.len().max(1))) {
                Some(m) => {
                    assert!(m.name.starts_with("executor-"), "{m:?}");
                    m.value.invoke(i);
                    s.invocations += 1;
                    s.executor_tasks += 1;
                }
                None => s.executor_unroutable += 1,
            }
        }
        // MARSYS's SmartCoordinator: "find suitable agents" by kind. The services are never
        // removed: the query always finds all four, each with its skill.
        if i % 256 == 0 {
            let services = registry.find_by_kind("service").expect("valid kind");
            s.ops += 1;
            s.queries += 1;
            let names: Vec<&str> = services.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, SERVICES, "the services, sorted by name");
            for (m, skill) in services.iter().zip(SERVICE_SKILLS) {
                assert!(m.metadata.has_capability(skill));
            }
            services[rng.below(services.len())].value.invoke(i);
            s.invocations += 1;
            s.routed += 1;
        }

        // 6. Discovery by name: list the names now and then, and call a worker found there.
        //    The list is a weakly consistent snapshot, so the worker may have gone since.
        if i % 512 == 1 {
            directory = registry.names();
            directory.retain(|n| n.starts_with("worker-") || n.starts_with("scout-"));
            s.ops += 1;
        }
        if !directory.is_empty() {
            let name = &directory[rng.below(directory.len())];
            match registry.get(name) {
                Some(agent) => {
                    agent.invoke(i);
                    s.invocations += 1;
                }
                None => s.lookup_misses += 1,
            }
            s.ops += 1;
            s.lookups += 1;
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The late-destructor race (MARSYS, "Identity-Safe Unregistration")
// ---------------------------------------------------------------------------------------------

/// Where late destructors run: a thread that drops what it is sent, then says so.
struct Finalizer {
    queue: mpsc::Sender<Registration<Arc<Agent>>>,
    done: mpsc::Receiver<()>,
}

impl Finalizer {
    fn start() -> (Finalizer, thread::JoinHandle<()>) {
        let (queue, inbox) = mpsc::channel::<Registration<Arc<Agent>>>();
        let (done_tx, done) = mpsc::channel();
        let handle = thread::spawn(move || {
            for guard in inbox {
                drop(guard); // The late destructor: unregister-if-same with the guard's tag.
                done_tx.send(()).expect("the coordinator waits for it");
            }
        });
        (Finalizer { queue, done }, handle)
    }

    /// Runs `guard`'s destructor on the finalizer thread and waits for it.
    fn drop_late(&self, guard: Registration<Arc<Agent>>) {
        self.queue.send(guard).expect("finalizer alive");
        self.done.recv().expect("finalizer alive");
    }
}

/// How task 1's coordinator A loses the name before B registers.
#[derive(Clone, Copy)]
enum HowAEnds {
    /// A was registered weakly and its task dropped it: the binding vanished with it.
    OwnerDropped,
    /// A supervisor evicted A (identity-safely, with A's tag) while A's task still ran.
    Evicted,
    /// As `Evicted`, but B is *the same instance* re-registered (same `InstanceId`). The late
    /// destructor is still refused: the generation differs, so there is no ABA.
    EvictedThenSameInstance,
}

/// One round of the race. Panics unless A's late destructor is refused and B survives.
fn late_destructor_race(registry: &Agents, finalizer: &Finalizer, round: u64, s: &mut Stats) {
    let how = [
        HowAEnds::OwnerDropped,
        HowAEnds::Evicted,
        HowAEnds::EvictedThenSameInstance,
    ][(round % 3) as usize];

    // 1. Task 1 creates coordinator A and registers it.
    let a = Agent::new("coordinator", 1);
    let guard_a = match how {
        HowAEnds::OwnerDropped => registry.register_weak(COORDINATOR, &a),
        _ => registry.register(COORDINATOR, Arc::clone(&a)),
    }
    .expect("the coordinator name is free between rounds");
    let tag_a = guard_a.tag();
    s.ops += 1;
    s.registrations += 1;

    // 2. Task 1 completes; A's guard (its destructor) has not run yet.
    match how {
        HowAEnds::OwnerDropped => {
            s.weak_registrations += 1;
            let alive = Arc::downgrade(&a);
            drop(a);
            while alive.strong_count() > 0 {
                thread::yield_now(); // A client may still be calling A.
            }
        }
        HowAEnds::Evicted | HowAEnds::EvictedThenSameInstance => {
            let evicted = registry.unregister_if_same(COORDINATOR, tag_a);
            assert_eq!(evicted.expect("A is still bound").tag(), tag_a);
            s.ops += 1;
        }
    }

    // 3. Task 2 creates coordinator B under the same name: the name is free, B registers.
    let b = Agent::new("coordinator", 2);
    let guard_b = match how {
        HowAEnds::EvictedThenSameInstance => {
            registry.register_as(COORDINATOR, tag_a.instance(), Arc::clone(&b))
        }
        _ => registry.register(COORDINATOR, Arc::clone(&b)),
    }
    .expect("A no longer holds the name");
    let tag_b = guard_b.tag();
    s.ops += 1;
    s.registrations += 1;
    assert!(
        tag_b.generation() > tag_a.generation(),
        "generations only increase"
    );

    // 4. A's destructor fires late. MARSYS's old `unregister(name)` would remove B here.
    //    A's guard removes the binding only if it is still A's: it is not, so it is refused.
    if round % 2 == 0 {
        finalizer.drop_late(guard_a); // the implicit way: the guard's Drop
        s.stale_drops_refused += 1;
    } else {
        match guard_a.unregister() {
            // The explicit way, with the evidence: the name is bound to B.
            Err(Error::TagMismatch { current, .. }) => assert_eq!(current, tag_b),
            other => panic!("A's stale unregister must be refused, got {other:?}"),
        }
        s.stale_unregisters_refused += 1;
    }
    s.ops += 1;

    // 5. B survived.
    assert!(
        registry.is_current(COORDINATOR, tag_b),
        "B must survive A's late destructor"
    );
    let bound = registry.get(COORDINATOR).expect("B is bound");
    assert!(Arc::ptr_eq(bound.value(), &b), "the bound coordinator is B");
    s.ops += 2;
    s.lookups += 1;

    // 6. Task 2 completes: B's guard is current, so its drop unbinds the name.
    drop(bound);
    drop(guard_b);
    assert!(!registry.contains(COORDINATOR));
    s.ops += 1;
}

// ---------------------------------------------------------------------------------------------
// The monitor: a live mirror of the registry, from its events
// ---------------------------------------------------------------------------------------------

/// What the monitor saw.
#[derive(Default)]
struct Monitor {
    /// Name -> tag, as the events built it.
    mirror: BTreeMap<String, Tag>,
    events: u64,
    /// Removals by reason: guard dropped, by tag (`unregister_if_same`), weak owner dead, other.
    guard_dropped: u64,
    if_same: u64,
    weak_dead: u64,
    other_removals: u64,
    /// Removals for liveness: a lease that ran out (`Expired`), an executor critical for too
    /// long (`Critical`); each with its name and tag.
    expired: Vec<(String, Tag)>,
    critical: Vec<(String, Tag)>,
    /// `subscribe` calls (1, plus one per `Lagged`).
    subscriptions: u64,
    /// Metadata updates (a draining worker).
    metadata_updates: u64,
    /// Events of the pool's names, left out of the mirror: a snapshot (so a subscription)
    /// leaves pools out, so their events would name bindings the mirror never listed.
    pool_events: u64,
}

/// Whether `name` is one of the pool's names (`browser`, `browser_0` ..).
fn is_pool_name(name: &str) -> bool {
    name == POOL
        || name
            .strip_prefix("browser_")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < POOL_SIZE)
}

/// A snapshot at revision R and a watcher from R: the mirror starts from the snapshot.
fn subscribe(registry: &Agents, m: &mut Monitor) -> Watcher<Arc<Agent>> {
    loop {
        match registry.subscribe(Filter::all()) {
            Ok((snapshot, watcher)) => {
                m.subscriptions += 1;
                m.mirror = snapshot
                    .into_entries()
                    .into_iter()
                    .map(|e| (e.name, e.tag))
                    .collect();
                return watcher;
            }
            // Writers outran the history while the snapshot settled: try again.
            Err(WatchError::Busy) => thread::yield_now(),
            Err(e) => panic!("subscribe: {e}"),
        }
    }
}

/// Follows every change until it has applied every revision up to `caught_up_to` (set by
/// `main` once the writers are done).
fn monitor(registry: Agents, caught_up_to: &AtomicU64) -> Monitor {
    let mut m = Monitor::default();
    let mut watcher = subscribe(&registry, &mut m);
    loop {
        match watcher.next_timeout(Duration::from_millis(20)) {
            Some(Ok(e)) if is_pool_name(e.name()) => m.pool_events += 1,
            Some(Ok(e)) => {
                m.events += 1;
                let current = m.mirror.get(e.name()).copied();
                match e.kind() {
                    EventKind::Registered { tag, .. } => {
                        assert_eq!(current, None, "{e:?}: the name was free");
                        m.mirror.insert(e.name().to_owned(), *tag);
                    }
                    EventKind::Replaced { old, tag, .. } => {
                        assert_eq!(current, Some(*old), "{e:?}: replaces what was bound");
                        m.mirror.insert(e.name().to_owned(), *tag);
                    }
                    EventKind::Unregistered { tag, reason } => {
                        // A weak scout whose agent had died before a (re-)subscription's
                        // snapshot, unpurged, is not in that snapshot (it was invisible): its
                        // purge arrives for a name the mirror never listed. Likewise a binding
                        // past its deadline, or condemned as critical, not yet removed.
                        let unlisted = current.is_none()
                            && matches!(
                                reason,
                                Reason::WeakOwnerDead | Reason::Expired | Reason::Critical
                            );
                        if !unlisted {
                            assert_eq!(current, Some(*tag), "{e:?}: removes what was bound");
                        }
                        m.mirror.remove(e.name());
                        match reason {
                            Reason::GuardDropped => m.guard_dropped += 1,
                            Reason::IfSame => m.if_same += 1,
                            Reason::WeakOwnerDead => m.weak_dead += 1,
                            Reason::Expired => m.expired.push((e.name().to_owned(), *tag)),
                            Reason::Critical => m.critical.push((e.name().to_owned(), *tag)),
                            _ => m.other_removals += 1,
                        }
                    }
                    EventKind::MetadataUpdated { tag } => {
                        assert_eq!(current, Some(*tag), "{e:?}: updates what is bound");
                        m.metadata_updates += 1;
                    }
                    other => panic!("an event this monitor does not know: {other:?}"),
                }
            }
            // A whole history behind: start again from a fresh snapshot.
            Some(Err(WatchError::Lagged { .. })) => watcher = subscribe(&registry, &mut m),
            Some(Err(e)) => panic!("watch: {e}"),
            None => {}
        }
        if watcher.revision().as_raw() >= caught_up_to.load(Relaxed) {
            return m;
        }
    }
}

/// A supervisor blocks until its agent is evicted (woken by the eviction's commit, not by
/// polling); returns how long the wake-up took after the eviction.
fn eviction_notice(registry: &Agents) -> Duration {
    let guard = registry
        .register("supervised", Agent::new("supervised", 0))
        .expect("a free name");
    let tag = guard.tag();
    thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            assert!(guard.wait_evicted(Duration::from_secs(10)), "woken");
            Instant::now()
        });
        thread::sleep(Duration::from_millis(5));
        let evicted_at = Instant::now();
        registry
            .unregister_if_same("supervised", tag)
            .expect("still the supervised agent");
        let woken_at = waiter.join().expect("the supervisor");
        woken_at.saturating_duration_since(evicted_at)
    })
}

/// MARSYS's save_state / load_state: snapshot the registry, turn agents into descriptors
/// (role, version), rebuild agents from them into a fresh registry. Checks that every tag
/// survived and that `stale`, a tag from before the save, matches nothing after it. Returns
/// the number of bindings restored.
fn save_and_load(registry: &Agents, stale: (&str, Tag)) -> usize {
    let saved = registry
        .snapshot()
        .expect("nothing is pinned here")
        .map_values(|_, agent| (agent.role, agent.version));
    let restarted: Agents = Registry::builder().events(1 << 10).build();
    let expected: Vec<(String, Tag)> = saved
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.tag))
        .collect();
    let n = restarted
        .restore(saved.map_values(|_, (role, version)| Agent::new(role, version)))
        .expect("an empty registry");
    for (name, tag) in &expected {
        assert_eq!(
            restarted.tag_of(name),
            Some(*tag),
            "{name}: the tag survives"
        );
    }
    assert!(
        restarted.unregister_if_same(stale.0, stale.1).is_err(),
        "a tag from before the save matches nothing newer"
    );
    // A new registration after the restore gets a generation past every restored one.
    let fresh = restarted
        .register_detached("after-restore", Agent::new("fresh", 0))
        .expect("a free name");
    assert!(
        expected
            .iter()
            .all(|(_, t)| fresh.generation() > t.generation())
    );
    restarted.clear();
    assert!(restarted.collect(), "nothing is pinned here");
    n
}

fn coordinator(registry: Agents, stop: &AtomicBool) -> Stats {
    let mut s = Stats::default();
    let (finalizer, finalizer_thread) = Finalizer::start();
    let mut round = 0;
    while !stop.load(Relaxed) {
        late_destructor_race(&registry, &finalizer, round, &mut s);
        round += 1;
        s.coordinator_rounds += 1;
    }
    drop(finalizer);
    finalizer_thread.join().expect("finalizer panicked");
    s
}

// ---------------------------------------------------------------------------------------------
// Executors: leases (TTL and keepalive), health checks, a reaper, a supervisor
// ---------------------------------------------------------------------------------------------

/// What the first executor of each slot does wrong from `FAULT_AFTER` on: slot 1's hangs,
/// slot 2's fails its health checks, slot 3's is slow (its checks pass with a warning). Their
/// replacements do nothing wrong.
const FIRST_FAULTS: [u8; EXECUTORS] = [FINE, HUNG, FAILING, SLOW];
const HUNG_SLOT: usize = 1;
const FAILING_SLOT: usize = 2;

/// The executors' shared counters (read by `main`).
struct Fleet {
    /// Leases renewed.
    heartbeats: AtomicU64,
    /// The least time a lease had left when its executor renewed it, in µs.
    closest_renewal_us: AtomicU64,
    /// Executors replaced by the supervisor, by the reason of their removal.
    replaced_expired: AtomicU64,
    replaced_critical: AtomicU64,
    /// Whether the first executors of the hung and the failing slots have been replaced.
    hung_replaced: AtomicBool,
    failing_replaced: AtomicBool,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            heartbeats: AtomicU64::new(0),
            closest_renewal_us: AtomicU64::new(u64::MAX),
            replaced_expired: AtomicU64::new(0),
            replaced_critical: AtomicU64::new(0),
            hung_replaced: AtomicBool::new(false),
            failing_replaced: AtomicBool::new(false),
        }
    }
}

/// How an executor's thread ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ExecutorEnd {
    /// The run ended: its guard dropped and unbound its name.
    Stopped,
    /// Its lease ran out (it hung, or its heartbeats were late by a whole lease): its
    /// keepalive was refused.
    LeaseLost { hung: bool },
    /// It was removed as critical for too long while it still heartbeat.
    RemovedCritical,
}

/// An executor's loop: heartbeat (renew the lease) every `HEARTBEAT` until the run ends or the
/// registry lets it go. From `FAULT_AFTER` on it does what `fault` says.
fn executor(
    registry: &Agents,
    guard: Registration<Arc<Agent>>,
    agent: Arc<Agent>,
    fault: u8,
    stop: &AtomicBool,
    fleet: &Fleet,
) -> (Tag, ExecutorEnd) {
    let started = Instant::now();
    let tag = guard.tag();
    let mut struck = fault == FINE;
    let end = loop {
        if stop.load(Relaxed) {
            break ExecutorEnd::Stopped; // the guard drops below: the name is unbound
        }
        if !struck && started.elapsed() >= FAULT_AFTER {
            struck = true;
            agent.fault.store(fault, Relaxed);
            if fault == HUNG {
                // Stuck (a deadlock, a blocking call that never returns): no heartbeat, no
                // answer to probes. Its binding is invisible from its deadline on.
                let hung_at = Instant::now();
                while hung_at.elapsed() < HANG_FOR && !stop.load(Relaxed) {
                    thread::sleep(HEARTBEAT);
                }
            }
        }
        thread::sleep(HEARTBEAT);
        let left = guard.time_left().expect("registered with a lease");
        match guard.keepalive() {
            Ok(deadline) => {
                assert!(deadline.is_some(), "a lease has a deadline");
                fleet.heartbeats.fetch_add(1, Relaxed);
                fleet
                    .closest_renewal_us
                    .fetch_min(left.as_micros() as u64, Relaxed);
            }
            // Too late: the lease ran out (and the name may be someone else's already).
            Err(Error::Expired { .. } | Error::TagMismatch { .. }) if guard.expired() => {
                break ExecutorEnd::LeaseLost {
                    hung: fault == HUNG,
                };
            }
            // Removed for another reason while it heartbeat: critical for too long.
            Err(Error::NotFound { .. } | Error::TagMismatch { .. }) => {
                break ExecutorEnd::RemovedCritical;
            }
            Err(e) => panic!("{}: keepalive: {e}", guard.name()),
        }
    };
    if end != ExecutorEnd::Stopped {
        // Its binding is gone; the name may already be its replacement's. Dropping the guard
        // (its destructor, late) leaves whatever is bound now alone.
        let name = guard.name().to_owned();
        drop(guard);
        assert_ne!(registry.tag_of(&name), Some(tag), "{name} was let go");
    }
    (tag, end)
}

/// What the prober recorded.
#[derive(Default)]
struct Probes {
    rounds: u64,
    passing: u64,
    warning: u64,
    critical: u64,
    /// Probes whose executor was removed (or replaced) before the record: refused by tag.
    refused: u64,
}

/// The health prober: every `PROBE_EVERY`, pings each executor (a synchronous probe) and
/// records what it found with `record_health` (tag-checked: never onto a replacement). An
/// executor recorded critical for `CRITICAL_AFTER` is removed by that record (or by the
/// reaper, whichever comes first), reason `Critical`.
fn prober(registry: Agents, stop: &AtomicBool) -> Probes {
    let mut p = Probes::default();
    while !stop.load(Relaxed) {
        p.rounds += 1;
        let executors = registry.find().kind("executor").run().expect("valid query");
        for m in executors {
            let started = Instant::now();
            let answer = m.value.ping();
            let latency = started.elapsed();
            let report = match answer {
                Ok(None) => HealthReport::new(HealthState::Passing).with_latency(latency),
                Ok(Some(warning)) => HealthReport::new(HealthState::Warning)
                    .with_latency(latency)
                    .with_error(warning),
                Err(error) => HealthReport::new(HealthState::Critical).with_error(error),
            };
            let state = report.state;
            match registry.record_health(&m.name, m.tag, report) {
                Ok(()) => match state {
                    HealthState::Passing => p.passing += 1,
                    HealthState::Warning => p.warning += 1,
                    _ => {
                        p.critical += 1;
                        // Only this thread records the executors' health, so from now on no
                        // query for healthy executors offers this one.
                        let healthy = registry
                            .find()
                            .kind("executor")
                            .healthy()
                            .run()
                            .expect("valid query");
                        assert!(
                            healthy.iter().all(|h| h.tag != m.tag),
                            "{}: recorded critical, yet offered as healthy",
                            m.name
                        );
                        // What the check found, unless this record removed it already.
                        if let Some(h) = registry.health(&m.name).filter(|h| h.tag == m.tag) {
                            assert_eq!(h.state, HealthState::Critical);
                            let last = h.last_check.expect("a report was recorded");
                            assert_eq!(last.error.as_deref(), answer.err());
                        }
                    }
                },
                Err(Error::NotFound { .. } | Error::TagMismatch { .. }) => p.refused += 1,
                Err(e) => panic!("record_health({}): {e}", m.name),
            }
        }
        thread::sleep(PROBE_EVERY);
    }
    p
}

/// What the supervisor saw and did.
#[derive(Default)]
struct Supervision {
    /// The first executor of each slot.
    first: Vec<Tag>,
    /// Executors removed for liveness, as its watcher saw them: slot, tag, reason.
    removals: Vec<(usize, Tag, Reason)>,
    /// Executors started (the first ones, then the replacements).
    started: u64,
    /// How each executor's thread ended.
    ends: Vec<(Tag, ExecutorEnd)>,
    /// Times its watcher fell a whole history behind (it then re-reads every slot).
    lagged: u64,
}

/// Registers an executor under slot `slot`'s name with a lease (and its metadata), and starts
/// its thread, which owns the guard.
fn start_executor<'s>(
    scope: &'s thread::Scope<'s, '_>,
    registry: &Agents,
    meta: &Arc<Metadata>,
    (slot, fault): (usize, u8),
    stop: &'s AtomicBool,
    fleet: &'s Fleet,
) -> (Tag, thread::ScopedJoinHandle<'s, (Tag, ExecutorEnd)>) {
    let agent = Agent::new("executor", 0);
    let guard = registry
        .with_ttl(TTL)
        .metadata(Arc::clone(meta))
        .register(&format!("executor-{slot}"), Arc::clone(&agent))
        .expect("the slot's last executor is gone");
    let tag = guard.tag();
    let r = registry.clone();
    let thread = scope.spawn(move || executor(&r, guard, agent, fault, stop, fleet));
    (tag, thread)
}

/// The supervisor: starts the executors, watches their events, and replaces each one that
/// the registry removes for liveness (expired or critical), under the same name.
fn supervisor<'s>(
    scope: &'s thread::Scope<'s, '_>,
    registry: Agents,
    stop: &'s AtomicBool,
    fleet: &'s Fleet,
) -> Supervision {
    let meta = Arc::new(
        Metadata::builder()
            .kind("executor")
            .capability("execute")
            .build()
            .expect("valid metadata"),
    );
    let watch = || {
        registry
            .watch(Filter::prefix("executor-"), registry.revision())
            .expect("events are on")
    };
    let mut watcher = watch();
    let mut sup = Supervision::default();
    let mut slots = Vec::new();
    let mut threads = Vec::new();
    for (slot, fault) in FIRST_FAULTS.into_iter().enumerate() {
        let (tag, thread) = start_executor(scope, &registry, &meta, (slot, fault), stop, fleet);
        slots.push(tag);
        threads.push(thread);
    }
    sup.first = slots.clone();
    sup.started = EXECUTORS as u64;
    while !stop.load(Relaxed) {
        let mut gone = Vec::new();
        match watcher.next_timeout(Duration::from_millis(20)) {
            Some(Ok(e)) => {
                if let EventKind::Unregistered { tag, reason } = e.kind() {
                    if let Some(slot) = slots.iter().position(|t| t == tag) {
                        sup.removals.push((slot, *tag, *reason));
                        match reason {
                            Reason::Expired => {
                                fleet.replaced_expired.fetch_add(1, Relaxed);
                                gone.push(slot);
                            }
                            Reason::Critical => {
                                fleet.replaced_critical.fetch_add(1, Relaxed);
                                gone.push(slot);
                            }
                            _ => {} // the run is ending: the executor stopped
                        }
                    }
                }
            }
            // A whole history behind: watch from now, and look at every slot instead.
            Some(Err(WatchError::Lagged { .. })) => {
                sup.lagged += 1;
                watcher = watch();
                gone.extend((0..EXECUTORS).filter(|&slot| {
                    !registry.is_current(&format!("executor-{slot}"), slots[slot])
                }));
            }
            Some(Err(e)) => panic!("supervisor: {e}"),
            None => {}
        }
        for slot in gone {
            if stop.load(Relaxed) {
                break;
            }
            let (tag, thread) = start_executor(scope, &registry, &meta, (slot, FINE), stop, fleet);
            if slots[slot] == sup.first[HUNG_SLOT] {
                fleet.hung_replaced.store(true, Relaxed);
            }
            if slots[slot] == sup.first[FAILING_SLOT] {
                fleet.failing_replaced.store(true, Relaxed);
            }
            slots[slot] = tag;
            threads.push(thread);
            sup.started += 1;
        }
    }
    for t in threads {
        sup.ends
            .push(t.join().expect("an executor found a broken invariant"));
    }
    sup
}

// ---------------------------------------------------------------------------------------------
// Pools and load: a pool of browsers leased per task and per branch, analysts picked by load
// ---------------------------------------------------------------------------------------------

/// The pool (MARSYS's `AgentPool`): `browser`, with members `browser_0` .. `browser_2`.
const POOL: &str = "browser";
/// Its members, each exclusive (one lease at a time, MARSYS's default).
const POOL_SIZE: usize = 3;
/// Threads that lease a browser per task (`acquire_async`, now and then `acquire_timeout`).
const DISPATCHERS: usize = 3;
/// Threads that run multi-step branches, each step leasing for the branch's key
/// (`get_or_acquire` / `acquire_for`: MARSYS's `branch_id`).
const BRANCHERS: usize = 2;
/// Single agents picked by their load (`least_loaded("analyst-")`): tasks on them are counted
/// per binding (`Registry::acquire` on an agent's name).
const ANALYSTS: usize = 3;
/// How long a task holds its browser.
const BROWSE_FOR: Duration = Duration::from_micros(100);

/// What the pool's users share: who holds each member now (0: nobody), to check that no member
/// is ever held by two leases at once, and the ids that mark a holder.
struct Occupancy {
    holder: [AtomicU64; POOL_SIZE],
    next_id: AtomicU64,
}

impl Occupancy {
    fn new() -> Occupancy {
        Occupancy {
            holder: std::array::from_fn(|_| AtomicU64::new(0)),
            next_id: AtomicU64::new(1),
        }
    }

    /// Marks member `i` as held by a new holder; panics if someone holds it already.
    fn enter(&self, i: usize) -> u64 {
        let id = self.next_id.fetch_add(1, Relaxed);
        let before = self.holder[i].swap(id, Relaxed);
        assert_eq!(before, 0, "{POOL}_{i} leased twice at once");
        id
    }

    /// Member `i` is let go by `id` (before its lease drops: nobody else can hold it yet).
    fn leave(&self, i: usize, id: u64) {
        let before = self.holder[i].swap(0, Relaxed);
        assert_eq!(before, id, "{POOL}_{i} changed hands while leased");
    }
}

/// What the pool's users did.
#[derive(Default)]
struct PoolUse {
    /// Leases that took a slot of their own: every one is an allocation in the pool's
    /// statistics.
    async_leases: u64,
    blocking_leases: u64,
    branch_leases: u64,
    /// Leases for a key that already held a member (sharing its slot: not an allocation).
    joined: u64,
    /// Refused at once: every member busy (`Exhausted`), or none free within the timeout.
    exhausted: u64,
    timeouts: u64,
    /// Tasks on single analysts, by analyst.
    analyst_tasks: [u64; ANALYSTS],
}

impl PoolUse {
    fn add(&mut self, o: &PoolUse) {
        self.async_leases += o.async_leases;
        self.blocking_leases += o.blocking_leases;
        self.branch_leases += o.branch_leases;
        self.joined += o.joined;
        self.exhausted += o.exhausted;
        self.timeouts += o.timeouts;
        for (a, b) in self.analyst_tasks.iter_mut().zip(o.analyst_tasks) {
            *a += b;
        }
    }

    fn slots_taken(&self) -> u64 {
        self.async_leases + self.blocking_leases + self.branch_leases
    }
}

/// Runs a future to completion on this thread, parked between polls: the pool's `Acquire`
/// needs no runtime, only a waker (here, one that unparks this thread when a release wakes
/// it).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Registers the analysts and the pool, after showing that a pool's registration is all or
/// nothing. Called before the threads start.
fn pool_setup(registry: &Agents) -> (PoolRegistration<Arc<Agent>>, Vec<Registration<Arc<Agent>>>) {
    // All or nothing: `crawler_2` is taken by an agent, so a pool `crawler` of four cannot bind
    // its members; nothing of it stays bound, the error names the collision, the four agents
    // come back.
    let squatter = registry
        .register("crawler_2", Agent::new("squatter", 0))
        .expect("a free name");
    let refused = registry
        .register_pool("crawler", (0..4).map(|_| Agent::new("crawler", 0)))
        .expect_err("crawler_2 is taken");
    let (error, members) = refused.into_parts();
    assert!(
        matches!(&error, Error::AlreadyRegistered { name, .. } if name.as_str() == "crawler_2"),
        "{error}"
    );
    assert_eq!(members.len(), 4, "the members come back");
    for name in ["crawler", "crawler_0", "crawler_1", "crawler_3"] {
        assert!(!registry.contains(name), "{name} stayed bound");
    }
    drop((squatter, members));

    // The pool: its name and `browser_0` .. `browser_2`, in the one namespace of agents.
    let pool = registry
        .register_pool_with(
            POOL,
            (0..POOL_SIZE).map(|_| Agent::new("browser", 0)),
            PoolOptions::new().max_in_flight(1), // exclusive: the default, said aloud
        )
        .expect("free names");
    // MARSYS's is_pool, get_pool, normalize, instance counts.
    assert!(registry.is_pool(POOL) && !registry.is_pool("browser_1"));
    assert!(registry.pool(POOL).is_some_and(|p| p.size() == POOL_SIZE));
    assert_eq!(
        registry.kind("browser_1"),
        Some(Kind::Member {
            pool: POOL.into(),
            index: 1
        })
    );
    assert_eq!(registry.normalize("browser_1"), POOL);
    assert!(registry.same_logical("browser_0", POOL));
    assert_eq!(registry.instance_count(POOL), POOL_SIZE);
    assert_eq!(registry.available_count(POOL), POOL_SIZE);
    // A member goes only with its pool; an agent cannot take a member's name.
    assert!(matches!(
        registry.unregister("browser_1"),
        Err(Error::PoolMember { index: 1, .. })
    ));
    assert!(
        registry
            .register("browser_1", Agent::new("intruder", 0))
            .is_err()
    );

    let analysts = (0..ANALYSTS)
        .map(|i| {
            registry
                .register(&format!("analyst-{i}"), Agent::new("analyst", 0))
                .expect("a free name")
        })
        .collect();
    // MARSYS's all_with_pools: every name, and what it is.
    let listing = registry.listing();
    let kind_of = |name: &str| listing.iter().find(|(n, _)| n == name).map(|(_, k)| k);
    assert_eq!(kind_of(POOL), Some(&Kind::Pool { members: POOL_SIZE }));
    assert_eq!(kind_of("analyst-0"), Some(&Kind::Agent));
    (pool, analysts)
}

/// A task on the least loaded analyst: a lease counted on its binding, so that the next
/// `least_loaded` sees it. Held for as long as the caller keeps it.
fn analyst_task(registry: &Agents, u: &mut PoolUse, s: &mut Stats) -> Lease<'static, Arc<Agent>> {
    let (name, _entry) = registry
        .least_loaded("analyst-")
        .expect("the analysts live for the whole run");
    let task = registry
        .acquire(&name)
        .expect("a single agent takes any number of tasks");
    s.ops += 2;
    assert_eq!((task.pool(), task.name()), (None, name.as_str()));
    assert!(
        registry.load(&name).is_some_and(|l| l >= 1),
        "{name}: the task counts"
    );
    let k: usize = name["analyst-".len()..].parse().expect("analyst-{k}");
    u.analyst_tasks[k] += 1;
    task
}

/// Holds a browser for a task: marks it held (panics if it already was), works, lets it go.
fn browse(lease: Lease<Arc<Agent>>, occupancy: &Occupancy, task: u64, s: &mut Stats) {
    let i = lease.index().expect("a pool's member");
    let id = occupancy.enter(i);
    assert_eq!(lease.pool(), Some(POOL));
    lease.invoke(task);
    s.invocations += 1;
    thread::sleep(BROWSE_FOR);
    occupancy.leave(i, id);
    drop(lease); // released: wakes one waiter, if any
}

/// A dispatcher: each task takes the least loaded analyst, then waits for a browser (woken by
/// a release, no polling), uses it and lets both go.
fn dispatcher(
    id: usize,
    registry: Agents,
    stop: &AtomicBool,
    occupancy: &Occupancy,
) -> (Stats, PoolUse) {
    let (mut s, mut u) = (Stats::default(), PoolUse::default());
    let pool = registry
        .pool(POOL)
        .expect("registered before the threads start");
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n += 1;
        let analysis = analyst_task(&registry, &mut u, &mut s);
        let lease = if n % 8 == id as u64 {
            // The blocking form, for threads without an executor: a timeout, then `Timeout`.
            match pool.acquire_timeout(Duration::from_millis(100)) {
                Ok(lease) => {
                    u.blocking_leases += 1;
                    lease
                }
                Err(Error::Timeout { .. }) => {
                    u.timeouts += 1;
                    continue;
                }
                Err(e) => panic!("acquire_timeout: {e}"),
            }
        } else {
            let lease = block_on(pool.acquire_async()).expect("the pool outlives the run");
            u.async_leases += 1;
            lease
        };
        s.ops += 1;
        browse(lease, occupancy, n, &mut s);
        // The analyst's part of the task, browser let go (its task still counts on it).
        thread::sleep(BROWSE_FOR);
        analysis.invoke(n);
        s.invocations += 1;
        drop(analysis); // the analyst's task ends: its load goes down
    }
    (s, u)
}

/// A brancher: MARSYS's branches, each with a `branch_id`. A branch's first step leases a
/// browser for its key (`get_or_acquire`, through the registry); its later steps lease for the
/// same key (`acquire_for`) and get the same browser, sharing its slot. Never waits: a branch
/// that finds every browser busy (`Exhausted`) gives up and the next one tries.
fn brancher(
    id: usize,
    registry: Agents,
    stop: &AtomicBool,
    occupancy: &Occupancy,
) -> (Stats, PoolUse) {
    let (mut s, mut u) = (Stats::default(), PoolUse::default());
    let pool = registry
        .pool(POOL)
        .expect("registered before the threads start");
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n += 1;
        let key = format!("branch-{id}-{n}");
        let first = match registry.get_or_acquire(POOL, &key) {
            Ok(lease) => lease,
            Err(Error::Exhausted { pool, total, .. }) => {
                assert_eq!((pool.as_str(), total), (POOL, POOL_SIZE));
                u.exhausted += 1;
                thread::sleep(BROWSE_FOR);
                continue;
            }
            Err(e) => panic!("get_or_acquire: {e}"),
        };
        s.ops += 1;
        u.branch_leases += 1;
        assert_eq!(first.key(), Some(key.as_str()));
        assert_eq!(registry.normalize(first.name()), POOL);
        let i = first.index().expect("a pool's member");
        let holder = occupancy.enter(i);
        for step in 1..3 {
            let again = pool.acquire_for(&key).expect("the key holds its browser");
            s.ops += 1;
            u.joined += 1;
            assert_eq!(again.index(), Some(i), "a branch keeps its browser");
            again.invoke(n * 4 + step);
            s.invocations += 1;
            thread::sleep(BROWSE_FOR / 2);
        }
        occupancy.leave(i, holder);
        drop(first); // the key's last lease: the browser is free again
    }
    (s, u)
}

/// What `pool_finale` found, for the summary.
struct PoolReport {
    stats: PoolStats,
    /// How many tasks the re-registered analyst's old binding still had when it was replaced
    /// (its successor started at zero).
    inherited: usize,
}

/// After the run: the pool's statistics add up with what its users counted; every lease was
/// released, every analyst's load is back to zero. Then a cancelled wait, a re-registered
/// analyst starting at zero load, and the pool removed while a lease is out.
fn pool_finale(
    registry: &Agents,
    pool: PoolRegistration<Arc<Agent>>,
    mut analysts: Vec<Registration<Arc<Agent>>>,
    used: &PoolUse,
) -> PoolReport {
    let stats = pool.stats();
    assert_eq!(stats.in_use, 0, "every lease was released");
    assert!(stats.holders.is_empty(), "nobody holds a browser");
    assert_eq!((stats.waiting, stats.available), (0, POOL_SIZE));
    assert_eq!(
        stats.allocations, stats.releases,
        "each allocation released once"
    );
    assert_eq!(
        stats.allocations,
        used.slots_taken(),
        "the pool counted every lease its users took, and no joined one"
    );
    assert!(
        stats.peak.is_some_and(|p| p <= POOL_SIZE),
        "never more leases than members"
    );
    for i in 0..ANALYSTS {
        assert_eq!(
            registry.load(&format!("analyst-{i}")),
            Some(0),
            "every task ended"
        );
    }

    // Task load belongs to the binding, not the name (MARSYS keys it by name): an analyst
    // re-registered while a task of the old one runs starts at zero, and the old task's end
    // does not touch it.
    let old_task = registry.acquire("analyst-0").expect("bound");
    let inherited = registry.load("analyst-0").expect("bound");
    drop(analysts.remove(0));
    let again = registry
        .register("analyst-0", Agent::new("analyst", 1))
        .expect("the name is free again");
    assert_eq!(registry.load("analyst-0"), Some(0));
    drop(old_task);
    assert_eq!(registry.load("analyst-0"), Some(0));
    drop((again, analysts));

    // Every browser leased: the next acquire is refused at once, with the count.
    let all: Vec<_> = (0..POOL_SIZE)
        .map(|_| pool.acquire().expect("free"))
        .collect();
    assert_eq!(
        pool.acquire().map(|_| ()),
        Err(Error::Exhausted {
            pool: POOL.into(),
            total: POOL_SIZE,
            in_use: POOL_SIZE
        })
    );
    // A waiter cancelled mid-wait (a timeout elsewhere dropping the future) leaves nothing
    // behind: it stops counting as waiting, and every slot is leased again after.
    let mut wait = Box::pin(pool.acquire_async());
    let waker = Waker::from(Arc::new(NoWake));
    assert!(
        wait.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(pool.stats().waiting, 1);
    drop(wait);
    assert_eq!(pool.stats().waiting, 0);
    drop(all);

    // A snapshot leaves the pool out (a pool is runtime structure: registered again after a
    // restore).
    let saved = registry.snapshot().expect("nothing pinned here");
    assert!(saved.entries().iter().all(|e| !e.name.starts_with(POOL)));

    // The pool removed while a lease is out: nothing more is leased, members read as nothing,
    // the lease stays usable and its release is harmless.
    let handle: Pool<Arc<Agent>> = (*pool).clone();
    let lease = handle.acquire().expect("free");
    drop(pool); // the guard removes the pool's name and every member
    assert!(!handle.is_open() && registry.kind(POOL).is_none());
    assert!(registry.get("browser_0").is_none());
    assert!(matches!(handle.acquire(), Err(Error::NotFound { .. })));
    assert_eq!(lease.role, "browser");
    drop(lease);
    let end = handle.stats();
    assert_eq!((end.in_use, end.allocations - end.releases), (0, 0));
    PoolReport { stats, inherited }
}

/// A waker that does nothing: for a future polled once, by hand.
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

// ---------------------------------------------------------------------------------------------
// main: start everything, run, check the final state, print the summary
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Shutting an agent down by closing its inbox
// ---------------------------------------------------------------------------------------------

/// An agent that runs on a thread of its own, fed through an inbox whose `Sender` lives in its
/// registry entry, stops when the inbox closes, i.e. when the last `Sender` is dropped. One
/// thread removes the binding; the supervisor (another thread) calls `collect()`, which drops
/// the removed entry at once although it was removed elsewhere. Returns how long the agent
/// waited for its inbox to close after the removal.
fn inbox_shutdown(registry: &Agents) -> Duration {
    let (tx, rx) = mpsc::channel::<u64>();
    let agent_thread = thread::spawn(move || {
        let mut handled = 0;
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(_task) => handled += 1,
                Err(mpsc::RecvTimeoutError::Disconnected) => return handled,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the inbox never closed: the removed entry was never dropped")
                }
            }
        }
    });
    let guard = registry
        .register("mailbox", Agent::with_inbox("mailbox", 0, Some(tx)))
        .expect("a free name");
    for task in 0..3 {
        let agent = registry.get("mailbox").expect("bound");
        agent
            .inbox
            .as_ref()
            .expect("an inbox")
            .send(task)
            .expect("the agent runs");
    }
    // Another thread retires the agent (its guard drops there) and stays alive, idle.
    let (removed_tx, removed_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let remover = thread::spawn(move || {
        drop(guard);
        removed_tx.send(Instant::now()).expect("main waits");
        let _ = done_rx.recv();
    });
    let removed_at = removed_rx.recv().expect("removed");
    // `true`: everything removed before the call is dropped (no thread holds a pin here).
    assert!(registry.collect(), "nothing stays pinned in this demo");
    let handled = agent_thread.join().expect("the agent stopped");
    let waited = removed_at.elapsed();
    assert_eq!(handled, 3, "every task reached the agent");
    done_tx.send(()).expect("the remover waits");
    remover.join().expect("the remover");
    waited
}

/// MARSYS's "Registry full": four threads at once try to register twice as many agents as
/// there are places left. Exactly the free places are taken, every other registration is
/// refused with `Full` (its agent handed back), and the bound is never passed. Returns the
/// places that were free.
fn bounded_burst(registry: &Agents) -> usize {
    let free = MAX_AGENTS - registry.len();
    let per_thread = free / 2 + 1;
    let (won, full) = (AtomicU64::new(0), AtomicU64::new(0));
    let guards: Vec<Registration<Arc<Agent>>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (won, full) = (&won, &full);
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..per_thread {
                        match registry.register(&format!("burst-{t}-{i}"), Agent::new("burst", 0)) {
                            Ok(guard) => {
                                won.fetch_add(1, Relaxed);
                                mine.push(guard);
                            }
                            Err(rejected) => match rejected.error() {
                                Error::Full { capacity, .. } => {
                                    assert_eq!(*capacity, MAX_AGENTS);
                                    full.fetch_add(1, Relaxed);
                                }
                                other => panic!("a burst name is fresh: {other}"),
                            },
                        }
                    }
                    mine
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a burst thread"))
            .collect()
    });
    assert_eq!(
        won.load(Relaxed) as usize,
        free,
        "exactly the free places are taken"
    );
    assert_eq!(
        full.load(Relaxed) as usize,
        4 * per_thread - free,
        "every other registration is refused"
    );
    assert_eq!(registry.len(), MAX_AGENTS);
    drop(guards); // every burst agent leaves: their places are free again
    assert_eq!(registry.len(), MAX_AGENTS - free);
    free
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("usage: orchestrator [SECONDS]"),
        None => 3.0,
    };
    // With an event log of 64k changes, and events that carry tags only: removed agents are
    // then dropped as soon as they are collected, not kept alive by the history.
    // Bounded to MAX_AGENTS live agents at any instant. An agent recorded critical for
    // CRITICAL_AFTER is removed.
    let registry: Agents = Registry::builder()
        .events(1 << 16)
        .event_values(false)
        .max_entries(MAX_AGENTS)
        .remove_critical_after(CRITICAL_AFTER)
        .build();
    // Removes each expired binding (and each critical for too long) when its time comes.
    let reaper = registry.spawn_reaper(REAP_EVERY);

    // The services live for the whole run: `detach` keeps their bindings past their guards.
    // They carry metadata (kind "service" and a skill), which their upgrades keep.
    for (name, skill) in SERVICES.iter().zip(SERVICE_SKILLS) {
        let meta = Metadata::builder()
            .kind("service")
            .capability(skill)
            .build()
            .expect("valid metadata");
        let guard = registry
            .with_metadata(meta)
            .register(name, Agent::new(name, 0));
        guard.expect("a fresh registry").detach();
    }
    let upgrades: Vec<AtomicU64> = SERVICES.iter().map(|_| AtomicU64::new(0)).collect();
    let first_service_tag = registry.tag_of(SERVICES[0]).expect("bound");
    let caught_up_to = AtomicU64::new(u64::MAX);
    // The browsers' pool and the analysts, before any thread starts.
    let (pool, analysts) = pool_setup(&registry);
    let occupancy = Occupancy::new();
    let mut pool_use = PoolUse::default();
    let mut pool_report = None;

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut total = Stats::default();
    let mut watched = Monitor::default();
    let mut coordinator_seen = false;
    let fleet = Fleet::new();
    let mut supervision = Supervision::default();
    let mut probes = Probes::default();
    thread::scope(|scope| {
        let (stop, upgrades, caught_up_to, fleet) = (&stop, &upgrades, &caught_up_to, &fleet);
        let occupancy = &occupancy;
        let r = registry.clone();
        let monitor_thread = scope.spawn(move || monitor(r, caught_up_to));
        // If a thread panics (a broken invariant), the monitor must stop too, or the scope
        // would wait for it forever: it stops at any revision once this is 0.
        struct StopMonitor<'a>(&'a AtomicU64, &'a AtomicBool);
        impl Drop for StopMonitor<'_> {
            fn drop(&mut self) {
                if thread::panicking() {
                    self.1.store(true, Relaxed);
                    self.0.store(0, Relaxed);
                }
            }
        }
        let _stop_monitor = StopMonitor(caught_up_to, stop);
        let mut threads = Vec::new();
        for id in 0..WORKER_THREADS {
            let r = registry.clone(); // clones share one registry
            threads.push(scope.spawn(move || worker(id, r, stop)));
        }
        for id in 0..CLIENT_THREADS {
            let r = registry.clone();
            threads.push(scope.spawn(move || client(id, r, stop, upgrades)));
        }
        let r = registry.clone();
        threads.push(scope.spawn(move || coordinator(r, stop)));
        let mut pool_threads = Vec::new();
        for id in 0..DISPATCHERS {
            let r = registry.clone();
            pool_threads.push(scope.spawn(move || dispatcher(id, r, stop, occupancy)));
        }
        for id in 0..BRANCHERS {
            let r = registry.clone();
            pool_threads.push(scope.spawn(move || brancher(id, r, stop, occupancy)));
        }
        let r = registry.clone();
        let supervisor_thread = scope.spawn(move || supervisor(scope, r, stop, fleet));
        let r = registry.clone();
        let prober_thread = scope.spawn(move || prober(r, stop));

        // Waits for the coordinator thread's first binding (woken by its commit).
        coordinator_seen = registry
            .wait_for(COORDINATOR, Duration::from_secs(10))
            .is_some();
        thread::sleep(Duration::from_secs_f64(seconds));
        // The executors' faults strike 100 ms in, and both faulty executors are replaced well
        // within a second; a shorter run waits for that (a stopped supervisor is joined below).
        let deadline = Instant::now() + Duration::from_secs(10);
        let replaced = || fleet.hung_replaced.load(Relaxed) && fleet.failing_replaced.load(Relaxed);
        while !replaced() && !supervisor_thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the faulty executors were not replaced"
            );
            thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Relaxed);
        for t in threads {
            total.add(&t.join().expect("a thread found a broken invariant"));
        }
        supervision = supervisor_thread
            .join()
            .expect("the supervisor (or an executor) found a broken invariant");
        probes = prober_thread
            .join()
            .expect("the prober found a broken invariant");
        for t in pool_threads {
            let (s, u) = t.join().expect("a pool user found a broken invariant");
            total.add(&s);
            pool_use.add(&u);
        }
        pool_report = Some(pool_finale(&registry, pool, analysts, &pool_use));
        // The writers are done: the monitor catches up with the last revision, then stops.
        registry.purge_dead();
        caught_up_to.store(registry.revision().as_raw(), Relaxed);
        watched = monitor_thread
            .join()
            .expect("the monitor found a broken invariant");
    });
    assert!(coordinator_seen, "wait_for saw the coordinator bound");
    let elapsed = started.elapsed().as_secs_f64();
    drop(reaper); // stops and joins the reaper thread

    // Every guard has been dropped: only the four services are left, each at the version that
    // its winning upgrades produced (each won `replace_if_same` raised it by exactly one).
    // `len` is O(1) and counts a weak scout whose agent died until something purges it.
    let names = registry.names();
    registry.purge_dead();
    let live = registry.len();
    assert_eq!(
        live,
        names.len(),
        "len() agrees with names() when nothing runs"
    );
    assert_eq!(names, SERVICES, "only the services outlive the run");
    let mut final_tags = Vec::new();
    for (k, name) in SERVICES.iter().enumerate() {
        let service = registry.get(name).expect("services are bound");
        let won = upgrades[k].load(Relaxed);
        assert_eq!(service.version, won, "{name}: an upgrade was lost");
        final_tags.push(service.tag());
    }
    assert_eq!(
        total.stale_drops_refused + total.stale_unregisters_refused,
        total.coordinator_rounds,
        "every round of the race ended with A's late destructor refused"
    );

    let row = |label: &str, n: u64, note: &str| {
        println!("{}", format!("  {label:<26}{n:>12}  {note}").trim_end());
    };
    println!(
        "genreg orchestrator: {elapsed:.1} s, {} threads on {} cores",
        // workers, clients, coordinator, monitor, supervisor, prober, reaper, executors, and
        // the pool's users
        WORKER_THREADS + CLIENT_THREADS + 5 + EXECUTORS + DISPATCHERS + BRANCHERS,
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    let t = &total;
    let per_second = format!("{:.2} M ops/s", t.ops as f64 / elapsed / 1e6);
    row("registry operations", t.ops, &per_second);
    let kinds = format!(
        "{} by register_auto, {} weak",
        t.auto_registrations, t.weak_registrations
    );
    row("registrations", t.registrations, &kinds);
    let misses = format!(
        "{} found nothing (agent gone, or none bound)",
        t.lookup_misses
    );
    row("lookups", t.lookups, &misses);
    row("invocations", t.invocations, "");
    let how = format!(
        "{} by guards; {} by replace_if_same, {} more lost that race",
        t.guard_replacements, t.upgrades_won, t.upgrades_lost
    );
    row("replacements", t.guard_replacements + t.upgrades_won, &how);
    let refused = t.stale_drops_refused + t.stale_unregisters_refused;
    let how = format!(
        "{} late guard drops, {} explicit; B survived every time",
        t.stale_drops_refused, t.stale_unregisters_refused
    );
    row("stale unregisters refused", refused, &how);
    row(
        "weak agents vanished",
        t.weak_vanished,
        "binding gone with the agent",
    );
    let how = format!(
        "tasks, by capability and kind; {} queries, {} found nobody able; {} workers retagged",
        t.queries, t.unroutable, t.retagged
    );
    row("routed by discovery", t.routed, &how);
    // Discovery after the run: only the services carry metadata now, and the index holds
    // exactly their entries ("has metadata", kind, skill): nothing stale was left behind by
    // the thousands of agents that came and went.
    let found: Vec<String> = registry
        .find()
        .run()
        .expect("no condition")
        .into_iter()
        .map(|m| m.name) // (a `Match` holds a clone of its agent: keep only the name)
        .collect();
    assert_eq!(found, SERVICES);
    assert_eq!(registry.discovery_index_len(), SERVICES.len() * 3);
    let names_note = format!("len() == names().len(): {names:?}");
    row("live entries at end", live as u64, &names_note);

    // The monitor's mirror, built from events only, equals the registry.
    let state: BTreeMap<String, Tag> = registry
        .entries()
        .into_iter()
        .map(|(n, e)| (n, e.tag()))
        .collect();
    assert_eq!(
        watched.mirror, state,
        "the events rebuild the registry exactly"
    );
    let w = &watched;
    let how = format!(
        "{} subscribe(s); removals: {} guard dropped, {} by tag, {} weak owner dead, \
         {} expired, {} critical, {} other; {} metadata updates",
        w.subscriptions,
        w.guard_dropped,
        w.if_same,
        w.weak_dead,
        w.expired.len(),
        w.critical.len(),
        w.other_removals,
        w.metadata_updates
    );
    row("events watched", w.events, &how);
    row(
        "mirror == registry",
        w.mirror.len() as u64,
        "entries, rebuilt from events alone",
    );

    // The executors. The hung one's lease ran out: its keepalive was refused when it woke up,
    // and it was removed once, as expired. The failing one heartbeat all along but stayed
    // critical: removed once, as critical. Both were replaced.
    let sup = &supervision;
    let (hung, failing) = (sup.first[HUNG_SLOT], sup.first[FAILING_SLOT]);
    let end_of = |tag: Tag| sup.ends.iter().find(|(t, _)| *t == tag).map(|&(_, e)| e);
    assert_eq!(
        end_of(hung),
        Some(ExecutorEnd::LeaseLost { hung: true }),
        "the hung executor's lease ran out"
    );
    assert_eq!(
        end_of(failing),
        Some(ExecutorEnd::RemovedCritical),
        "the failing executor was removed as critical"
    );
    let ends = |what: fn(&ExecutorEnd) -> bool| sup.ends.iter().filter(|(_, e)| what(e)).count();
    let leases_lost = ends(|e| matches!(e, ExecutorEnd::LeaseLost { .. }));
    let removed_critical = ends(|e| *e == ExecutorEnd::RemovedCritical);
    assert_eq!(
        removed_critical, 1,
        "only the failing executor was critical for long"
    );
    assert_eq!(
        sup.ends.len() as u64,
        sup.started,
        "every executor's thread ended"
    );
    let reasons = |tag: Tag| -> Vec<Reason> {
        sup.removals
            .iter()
            .filter(|(_, t, _)| *t == tag)
            .map(|&(_, _, r)| r)
            .collect()
    };
    let seen = |list: &[(String, Tag)], tag: Tag| list.iter().filter(|(_, t)| *t == tag).count();
    // (A watcher that fell a whole history behind missed some events: these hold without lag.)
    if sup.lagged == 0 {
        assert_eq!(reasons(hung), [Reason::Expired], "removed once, as expired");
        assert_eq!(
            reasons(failing),
            [Reason::Critical],
            "removed once, as critical"
        );
        assert_eq!(
            fleet.replaced_expired.load(Relaxed) as usize,
            leases_lost,
            "every executor that lost its lease was replaced, once"
        );
        assert_eq!(fleet.replaced_critical.load(Relaxed), 1);
    }
    if w.subscriptions == 1 {
        assert_eq!(seen(&w.expired, hung), 1, "the monitor saw it expire, once");
        assert_eq!(seen(&w.critical, failing), 1);
        assert_eq!(w.expired.len(), leases_lost, "only lapsed leases expire");
        assert_eq!(w.critical.len(), 1);
    }
    assert!(t.executor_tasks > 0, "clients found healthy executors");
    let f = &fleet;
    let closest = f.closest_renewal_us.load(Relaxed) as f64 / 1e3;
    let how = format!(
        "keepalives, one per {} ms per executor, lease {} ms; the closest had {closest:.0} ms left",
        HEARTBEAT.as_millis(),
        TTL.as_millis()
    );
    row("leases renewed", f.heartbeats.load(Relaxed), &how);
    let p = &probes;
    let how = format!(
        "{} passing, {} warning, {} critical ({} rounds; {} refused: gone meanwhile)",
        p.passing, p.warning, p.critical, p.rounds, p.refused
    );
    row(
        "health checks recorded",
        p.passing + p.warning + p.critical,
        &how,
    );
    let how = format!(
        "tasks, only to healthy executors (find().healthy()); {} queries found none healthy yet",
        t.executor_unroutable
    );
    row("routed to executors", t.executor_tasks, &how);
    let how = format!(
        "executor-{HUNG_SLOT} hung: invisible at its deadline, reaped (Expired), replaced{}",
        match leases_lost - 1 {
            0 => String::new(),
            late => format!("; {late} more lost a lease to late heartbeats"),
        }
    );
    row("expired, then replaced", leases_lost as u64, &how);
    let how = format!(
        "executor-{FAILING_SLOT} failed its checks for {} ms: removed (Critical), replaced",
        CRITICAL_AFTER.as_millis()
    );
    row("critical, then replaced", removed_critical as u64, &how);

    // The pool: its statistics (MARSYS's get_statistics) agree with what its users counted.
    let PoolReport {
        stats: ps,
        inherited,
    } = pool_report.expect("the finale ran");
    let u = &pool_use;
    let how = format!(
        "of {POOL}'s {} exclusive members: {} async, {} blocking, {} by branch key (+{} joined); \
         all released",
        ps.total, u.async_leases, u.blocking_leases, u.branch_leases, u.joined
    );
    row("pool leases allocated", ps.allocations, &how);
    let how = format!(
        "waited for a release (average over all {} µs); peak {} of {}; {} branches found it \
         exhausted, {} timed out",
        ps.average_wait.as_micros(),
        ps.peak.unwrap_or(0),
        ps.total,
        u.exhausted,
        u.timeouts
    );
    row("pool waits", ps.waited, &how);
    let how = format!(
        "tasks on analysts picked by least_loaded: {:?}; a re-registered one started at 0 \
         (its old binding had {inherited})",
        u.analyst_tasks
    );
    row("task leases by load", u.analyst_tasks.iter().sum(), &how);
    row(
        "pool events (not mirrored)",
        w.pool_events,
        "a snapshot leaves pools out; removed while leased: lease usable, release harmless",
    );
    let woke = eviction_notice(&registry);
    row(
        "evicted -> supervisor woken",
        woke.as_micros() as u64,
        "µs: wait_evicted, woken by the eviction's commit",
    );
    let restored = save_and_load(&registry, (SERVICES[0], first_service_tag));
    row(
        "saved and restored",
        restored as u64,
        "bindings, tags intact; stale tags match nothing newer",
    );

    let free = bounded_burst(&registry);
    row(
        "bound held under a burst",
        free as u64,
        &format!("places taken of {MAX_AGENTS}; every other registration refused: Full"),
    );

    let waited = inbox_shutdown(&registry);
    row(
        "inbox closed after removal",
        waited.as_micros() as u64,
        "µs: unregister, then collect() from another thread",
    );

    // Shut down: unbind the services identity-safely, then let epoch reclamation free every
    // removed binding. Every agent ever created must be dropped exactly once.
    for (name, tag) in SERVICES.iter().zip(final_tags) {
        registry
            .unregister_if_same(name, tag)
            .expect("the service is still ours");
    }
    assert!(registry.is_empty());
    // Every thread has finished: `collect` hands over what the registry still holds and
    // drops every removed agent before it returns.
    assert!(registry.collect(), "nothing is pinned any more");
    assert_eq!(
        AGENTS_ALIVE.load(Relaxed),
        0,
        "every removed agent is dropped once collect() returns"
    );
    drop(registry);
    row(
        "agents alive at exit",
        0,
        "all dropped by epoch reclamation: nothing leaked",
    );
}
