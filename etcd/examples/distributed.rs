//! Three processes share one registry through etcd.
//!
//! ```sh
//! cargo run --release -p genreg-etcd --example distributed
//! ```
//!
//! The parent (`[main]`) starts its own etcd on free loopback ports with a temporary data dir
//! ([`genreg_etcd::local::Etcd`]; or uses `GENREG_ETCD_ENDPOINTS=http://host:port,...` if set),
//! watches the registry (`[watch]`) and runs itself twice more as processes `A` and `B`, which
//! coordinate through the registry alone:
//!
//! 1. A registers the agent `planner` (its host and pid, as JSON).
//! 2. B's mirror sees the planner on A; B's own registration is refused with
//!    `AlreadyRegistered { current: A's tag }`; B asks for the agent (`planner.request`).
//!    Both then take three `worker-N` names at the same time with `register_auto`: no
//!    collisions across processes.
//! 3. The agent moves: A removes its binding by tag, B registers `planner` anew.
//! 4. A, late, runs its old cleanup with its old tag: refused with `TagMismatch { current: B's
//!    tag }`, and B's binding is intact (`fenced_get`).
//! 5. A closes (its lease is revoked: its workers go at one revision, `lease_lost()` lists
//!    them, a later write fails with `LeaseLost`); B sees that in its mirror, then closes too.
//!
//! The parent checks the whole history it watched (and the children check what they see):
//! any violation, a failed child or a wait over its bound gives a non-zero exit code. Then it
//! kills etcd and removes its data dir. Tags print as `instance…@rREVISION`.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::future::Future;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genreg_etcd::local::Etcd;
use genreg_etcd::{
    Binding, Error, EtcdRegistry, Event, EventKind, Json, Mirror, Options, Rejected, Removal, Tag,
};
use serde::{Deserialize, Serialize};

/// What every binding holds: where the agent runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Agent {
    process: String,
    host: String,
    pid: u32,
}

type Registry = EtcdRegistry<Agent>;
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The bound on every single wait.
const STEP: Duration = Duration::from_secs(10);
/// The bound on a whole run.
const RUN: Duration = Duration::from_secs(40);

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.as_slice() {
        [cmd, who, endpoints, root] if cmd == "worker" => {
            let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
            let run = async { tokio::time::timeout(RUN, worker(who, &endpoints, root)).await };
            match rt.block_on(run) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("[{who}] FAILED: {e}");
                    ExitCode::FAILURE
                }
                Err(_) => {
                    eprintln!("[{who}] FAILED: not done after {RUN:?}");
                    ExitCode::FAILURE
                }
            }
        }
        [] => parent(&rt),
        _ => {
            eprintln!("usage: distributed (the worker mode is for the example's own use)");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent: etcd, the children, the watch, the checks
// ---------------------------------------------------------------------------------------

fn parent(rt: &tokio::runtime::Runtime) -> ExitCode {
    let started = Instant::now();
    let (etcd, endpoints) = match env::var("GENREG_ETCD_ENDPOINTS") {
        Ok(eps) if !eps.trim().is_empty() => {
            let eps: Vec<String> = eps.split(',').map(|e| e.trim().to_string()).collect();
            println!(
                "[main] using etcd at {} (GENREG_ETCD_ENDPOINTS)",
                eps.join(",")
            );
            (None, eps)
        }
        _ => match Etcd::try_start() {
            Ok(etcd) => {
                println!(
                    "[main] started etcd (pid {}) at {}, data in {}",
                    etcd.pid(),
                    etcd.endpoint(),
                    etcd.dir().display()
                );
                let eps = etcd.endpoints();
                (Some(etcd), eps)
            }
            Err(e) => {
                eprintln!(
                    "[main] FAILED: {e}\n[main] (or point GENREG_ETCD_ENDPOINTS at a running etcd)"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    // A root of its own, so that runs sharing one etcd never see each other.
    let root = format!("genreg-example/{}-{}/", std::process::id(), nanos());
    let outcome =
        rt.block_on(async { tokio::time::timeout(RUN, observe(&endpoints, &root)).await });
    drop(etcd); // kills etcd and removes its data dir
    match outcome {
        Ok(Ok(())) => {
            println!(
                "[main] OK: every check passed, in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("[main] FAILED: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("[main] FAILED: not done after {RUN:?}");
            ExitCode::FAILURE
        }
    }
}

fn options(root: &str) -> Options {
    Options::default().root(root).ttl(Duration::from_secs(5))
}

/// Watches the registry while A and B run, prints every change, then checks the history.
async fn observe(endpoints: &[String], root: &str) -> Result<()> {
    let reg = Registry::connect_with(endpoints, options(root), Json).await?;
    let (rev0, existing) = reg.list().await?;
    check!(
        existing.is_empty(),
        "a fresh root holds {} bindings",
        existing.len()
    );
    println!(
        "[main] registry root {root:?}; watching from revision {}",
        rev0 + 1
    );

    // The watch runs on a task of its own and hands each event over a channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watch = reg.watch(rev0 + 1);
    let watcher = tokio::spawn(async move {
        loop {
            let ev = watch.next().await;
            let stop = ev.is_err();
            if tx.send(ev).is_err() || stop {
                return;
            }
        }
    });

    let mut children = [
        Spawned::start("A", endpoints, root)?,
        Spawned::start("B", endpoints, root)?,
    ];
    let mut events: Vec<Event<Agent>> = Vec::new();
    let mut bound: BTreeSet<String> = BTreeSet::new();
    let mut printer = Printer::default();
    let mut children_done: Option<Instant> = None;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let ev = ev.ok_or("the watch task ended")??;
                match &ev.kind {
                    EventKind::Removed { .. } => {
                        bound.remove(&ev.name);
                    }
                    _ => {
                        bound.insert(ev.name.clone());
                    }
                }
                printer.push(&ev);
                events.push(ev);
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                printer.flush_if_quiet();
                let mut all_ok = true;
                for c in &mut children {
                    match c.poll()? {
                        Some(status) if !status.success() => {
                            return Err(format!("process {} failed ({status})", c.name).into());
                        }
                        Some(_) => {}
                        None => all_ok = false,
                    }
                }
                if all_ok {
                    let since = *children_done.get_or_insert_with(Instant::now);
                    if !events.is_empty() && bound.is_empty() && printer.is_empty() {
                        break;
                    }
                    check!(
                        since.elapsed() < STEP,
                        "A and B are done but these names are still bound: {bound:?}"
                    );
                }
            }
        }
    }
    watcher.abort();

    println!(
        "[main] A and B exited; checking the {} events watched",
        events.len()
    );
    verify(&events)?;
    let (_, left) = reg.list().await?;
    check!(left.is_empty(), "bindings left in etcd: {}", left.len());
    reg.close().await?;
    Ok(())
}

/// What the whole run must have done, as seen by a third process.
fn verify(events: &[Event<Agent>]) -> Result<()> {
    let planner: Vec<&Event<Agent>> = events.iter().filter(|e| e.name == "planner").collect();
    check!(
        planner.len() == 4,
        "\"planner\" changed {} times, not 4: {planner:#?}",
        planner.len()
    );
    let (a, b) = match (
        &planner[0].kind,
        &planner[1].kind,
        &planner[2].kind,
        &planner[3].kind,
    ) {
        (
            EventKind::Registered(a),
            EventKind::Removed {
                tag: gone_a,
                reason: why_a,
                ..
            },
            EventKind::Registered(b),
            EventKind::Removed {
                tag: gone_b,
                lease: lease_b,
                reason: why_b,
            },
        ) => {
            check!(
                *why_a == Removal::IfSame,
                "A's planner went for {why_a}, not by tag"
            );
            check!(
                *why_b == Removal::LeaseEnded,
                "B's planner went for {why_b}, not with B's lease"
            );
            check!(
                *gone_a == Some(a.tag),
                "A's planner removal names {gone_a:?}"
            );
            check!(
                *gone_b == Some(b.tag),
                "B's planner removal names {gone_b:?}"
            );
            check!(
                *lease_b == b.lease,
                "B's planner went with lease {lease_b:x}"
            );
            (a, b)
        }
        _ => return Err(format!("unexpected history of \"planner\": {planner:#?}").into()),
    };
    check!(
        a.value.process == "A" && b.value.process == "B",
        "the planner went {} -> {}",
        a.value.process,
        b.value.process
    );
    check!(
        b.tag.generation() > a.tag.generation(),
        "B's tag is not newer"
    );
    // A's stale cleanup removed nothing: B's binding went only with B's lease, at the revision
    // that also removed B's workers (B's close).
    let at_close = events
        .iter()
        .filter(|e| e.revision == planner[3].revision)
        .filter(|e| matches!(e.kind, EventKind::Removed { lease, .. } if lease == b.lease))
        .count();
    check!(
        at_close == 4,
        "B's close removed {at_close} bindings at once, not 4 (planner + 3 workers)"
    );

    let mut workers: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Registered(w) if e.name.starts_with("worker-") => {
                Some((e.name.as_str(), w.value.process.as_str()))
            }
            _ => None,
        })
        .collect();
    workers.sort();
    let names: BTreeSet<&str> = workers.iter().map(|w| w.0).collect();
    check!(
        workers.len() == 6 && names.len() == 6,
        "register_auto: {workers:?}"
    );
    for p in ["A", "B"] {
        let n = workers.iter().filter(|w| w.1 == p).count();
        check!(n == 3, "process {p} has {n} workers, not 3");
    }
    println!(
        "[main] checked: planner A ({}) -> B ({}), B's binding removed only by B's close; \
         6 distinct workers {}",
        tag(a.tag),
        tag(b.tag),
        names.into_iter().collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

/// Prints the watched events. Removals of one revision are printed together: a lease's end
/// removes all its bindings at one revision, while a removal by tag (or by name) removes one
/// (etcd's events say what changed, not why).
#[derive(Default)]
struct Printer {
    removals: Vec<Event<Agent>>,
    last: Option<Instant>,
}

impl Printer {
    fn push(&mut self, e: &Event<Agent>) {
        if self
            .removals
            .first()
            .is_some_and(|r| r.revision != e.revision)
        {
            self.flush();
        }
        match &e.kind {
            EventKind::Removed { .. } => {
                self.removals.push(e.clone());
                self.last = Some(Instant::now());
            }
            EventKind::Registered(b) => println!(
                "[watch] r{} registered {:?} -> {} (pid {}), tag {}, lease {:x}",
                e.revision,
                e.name,
                b.value.process,
                b.value.pid,
                tag(b.tag),
                b.lease
            ),
            EventKind::Replaced { binding, .. } => println!(
                "[watch] r{} replaced {:?}: tag {}",
                e.revision,
                e.name,
                tag(binding.tag)
            ),
        }
    }

    fn is_empty(&self) -> bool {
        self.removals.is_empty()
    }

    /// Prints the removals held back once no event has come for 50 ms (the events of one
    /// revision come in one watch response).
    fn flush_if_quiet(&mut self) {
        if self
            .last
            .is_some_and(|t| t.elapsed() > Duration::from_millis(50))
        {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let removals = std::mem::take(&mut self.removals);
        self.last = None;
        match removals.as_slice() {
            [] => {}
            [e] => {
                if let EventKind::Removed { tag: t, reason, .. } = e.kind {
                    println!(
                        "[watch] r{} removed {:?} (tag {}): {reason}",
                        e.revision,
                        e.name,
                        t.map_or("?".to_string(), tag)
                    );
                }
            }
            [first, ..] => {
                let (lease, reason) = match first.kind {
                    EventKind::Removed { lease, reason, .. } => (lease, reason),
                    _ => (0, Removal::Other),
                };
                let names: Vec<&str> = removals.iter().map(|e| e.name.as_str()).collect();
                println!(
                    "[watch] r{} removed {} at once (lease {lease:x}): {reason}",
                    first.revision,
                    names.join(" ")
                );
            }
        }
    }
}

/// A child process running this example as `worker NAME`: killed if still running when
/// dropped.
struct Spawned {
    name: &'static str,
    child: Child,
    status: Option<ExitStatus>,
}

impl Spawned {
    fn start(name: &'static str, endpoints: &[String], root: &str) -> Result<Spawned> {
        let exe = env::current_exe()?;
        let child = Command::new(exe)
            .args(["worker", name, &endpoints.join(","), root])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start process {name}: {e}"))?;
        println!("[main] started process {name} (pid {})", child.id());
        Ok(Spawned {
            name,
            child,
            status: None,
        })
    }

    /// Its exit status, once it has exited.
    fn poll(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes A and B
// ---------------------------------------------------------------------------------------

async fn worker(who: &str, endpoints: &[String], root: &str) -> Result<()> {
    let me = Agent {
        process: who.to_string(),
        host: fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into()),
        pid: std::process::id(),
    };
    let reg = Registry::connect_with(endpoints, options(root), Json).await?;
    let mirror = reg.mirror().await?;
    println!(
        "[{who}] connected (pid {}), lease {:x}; mirror at revision {}",
        me.pid,
        reg.lease(),
        mirror.applied()
    );
    match who {
        "A" => process_a(reg, mirror, me).await,
        "B" => process_b(reg, mirror, me).await,
        _ => Err(format!("no process {who:?} in this example").into()),
    }
}

/// A: owns the planner first, hands it over, then runs its stale cleanup.
async fn process_a(reg: Registry, mirror: Mirror<Agent>, me: Agent) -> Result<()> {
    let planner = reg.register("planner", me.clone()).await?;
    let old = planner.tag();
    within("A's own planner in its mirror", mirror.wait_for(rev(old))).await?;
    check!(
        mirror.get("planner").map(|b| b.tag) == Some(old),
        "A's mirror"
    );
    println!(
        "[A] registered \"planner\" ({}, pid {}): tag {}; wait_for(r{}) -> the mirror has it",
        me.host,
        me.pid,
        tag(old),
        rev(old)
    );

    // B asks for the agent: wait for its request (the mirror's local registry wakes on it).
    let request = within(
        "B's planner.request",
        mirror.local().bound("planner.request"),
    )
    .await?;
    println!(
        "[A] mirror: B (pid {}) asks for the planner",
        request.value().value.pid
    );
    // Both processes take worker names now, at the same time.
    let workers = register_workers("A", &reg, &me).await?;
    planner.unregister().await?; // tag-checked: removes exactly the binding A made
    println!(
        "[A] the agent moves: unregistered \"planner\" by its tag {}",
        tag(old)
    );

    let on_b = until("the planner on B", || {
        mirror.get("planner").filter(|b| b.value.process == "B")
    })
    .await?;
    println!("[A] mirror: \"planner\" is on B now, tag {}", tag(on_b.tag));

    // The late cleanup of the agent that moved away, still holding the old tag.
    match reg.unregister_if_same("planner", old).await {
        Err(Error::TagMismatch {
            expected, current, ..
        }) => {
            check!(
                expected == old && current == on_b.tag,
                "the refusal names {current}"
            );
            println!(
                "[A] late cleanup unregister_if_same(\"planner\", {}) refused: \
                 TagMismatch {{ current: {} }} (B's)",
                tag(old),
                tag(current)
            );
        }
        other => return Err(format!("late cleanup with a stale tag: {other:?}").into()),
    }
    let now = mirror
        .fenced_get("planner")
        .await?
        .ok_or("planner unbound")?;
    check!(now.tag == on_b.tag, "B's binding changed: {}", now.tag);
    println!(
        "[A] fenced_get(\"planner\"): still B's (tag {}), nothing changed",
        tag(now.tag)
    );

    // Closing revokes the lease: every binding A still holds goes at one revision.
    let handle = reg.clone();
    reg.close().await?;
    let lost = within("lease_lost", handle.lease_lost()).await?;
    let names: Vec<&str> = lost.bindings.iter().map(|(n, _)| n.as_str()).collect();
    let expected: BTreeSet<&str> = workers.iter().map(String::as_str).collect();
    check!(
        names.iter().copied().collect::<BTreeSet<_>>() == expected,
        "lease_lost lists {names:?}, not {workers:?}"
    );
    println!(
        "[A] closed: lease {:x} revoked; lease_lost() lists {}",
        lost.lease,
        names.join(" ")
    );
    match handle.register("planner", me).await {
        Err(Rejected {
            error: Error::LeaseLost { lease },
            ..
        }) => println!("[A] a registration after close: LeaseLost {{ lease: {lease:x} }}"),
        other => return Err(format!("a write after close: {other:?}").into()),
    }
    Ok(())
}

/// B: sees the planner on A, is refused, asks for it, takes it over and keeps it.
async fn process_b(reg: Registry, mirror: Mirror<Agent>, me: Agent) -> Result<()> {
    let on_a: Arc<Binding<Agent>> = within("A's planner", mirror.local().bound("planner"))
        .await?
        .value()
        .clone();
    println!(
        "[B] mirror (applied r{}): \"planner\" is on {} (pid {}), tag {}, lease {:x}",
        mirror.applied(),
        on_a.value.process,
        on_a.value.pid,
        tag(on_a.tag),
        on_a.lease
    );
    check!(
        on_a.value.process == "A",
        "the planner is on {}",
        on_a.value.process
    );

    match reg.register("planner", me.clone()).await {
        Err(Rejected {
            error: Error::AlreadyRegistered { current, .. },
            ..
        }) => {
            check!(current == on_a.tag, "the refusal names {current}");
            println!(
                "[B] register(\"planner\") refused: AlreadyRegistered {{ current: {} }} (A's)",
                tag(current)
            );
        }
        other => return Err(format!("registering a bound name: {other:?}").into()),
    }
    let request = reg.register("planner.request", me.clone()).await?;
    println!("[B] registered \"planner.request\": asks A to move the agent here");
    register_workers("B", &reg, &me).await?;

    until("A to free the planner", || {
        mirror.get("planner").is_none().then_some(())
    })
    .await?;
    let planner = reg.register("planner", me.clone()).await?;
    let mine = planner.tag();
    within("B's planner in its mirror", mirror.wait_for(rev(mine))).await?;
    println!(
        "[B] the name is free: registered \"planner\", tag {}",
        tag(mine)
    );

    // A closes once its late cleanup is done: its lease's bindings leave the mirror at once.
    let of_a: Vec<String> = names_under(&mirror, on_a.lease);
    until("A's lease to end", || {
        names_under(&mirror, on_a.lease).is_empty().then_some(())
    })
    .await?;
    println!(
        "[B] mirror (applied r{}): A's lease {:x} ended, {} gone",
        mirror.applied(),
        on_a.lease,
        of_a.join(" ")
    );
    let now = mirror
        .fenced_get("planner")
        .await?
        .ok_or("planner unbound")?;
    check!(now.tag == mine, "B's planner changed: {}", now.tag);
    let at = mirror.sync().await?;
    println!(
        "[B] fenced_get(\"planner\"): still mine (tag {}); sync() at r{at}: {}",
        tag(now.tag),
        mirror.local().names().join(" ")
    );

    request.unregister().await?;
    planner.detach(); // it lives as long as the lease
    reg.close().await?;
    println!("[B] closed: lease revoked, the planner and B's workers go with it");
    Ok(())
}

/// Three `register_auto("worker", ...)` at once; the names, in order.
async fn register_workers(who: &str, reg: &Registry, me: &Agent) -> Result<Vec<String>> {
    let (x, y, z) = tokio::join!(
        reg.register_auto("worker", me.clone()),
        reg.register_auto("worker", me.clone()),
        reg.register_auto("worker", me.clone()),
    );
    let mut names = Vec::new();
    for r in [x, y, z] {
        let r = r?;
        names.push(r.name().to_string());
        r.detach(); // it lives as long as the lease
    }
    names.sort_by_key(|n| (n.len(), n.clone()));
    println!(
        "[{who}] register_auto(\"worker\") x3 at once -> {}",
        names.join(" ")
    );
    Ok(names)
}

/// The names the mirror holds under `lease`, sorted.
fn names_under(mirror: &Mirror<Agent>, lease: i64) -> Vec<String> {
    mirror
        .local()
        .entries()
        .into_iter()
        .filter(|(_, e)| e.value().lease == lease)
        .map(|(n, _)| n)
        .collect()
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| format!("timed out after {STEP:?} waiting for {what}").into())
}

/// Polls `check` (an in-process mirror read) until it gives something.
async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    within(what, async {
        loop {
            if let Some(found) = check() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn rev(t: Tag) -> i64 {
    t.generation().as_raw() as i64
}

fn tag(t: Tag) -> String {
    format!("{:06x}…@r{}", t.instance().as_raw() >> 40, rev(t))
}

fn nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
