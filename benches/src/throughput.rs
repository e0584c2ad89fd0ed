//! Multi-threaded throughput of genreg and its peers, side by side, on fixed operation mixes;
//! plus insert tail latency while a table grows from empty, and memory per entry.
//!
//! ```text
//! cargo run --release -p genreg-bench --bin throughput             # full run (~10-15 min here)
//! cargo run --release -p genreg-bench --bin throughput -- --quick  # one short pass (< 1 min, CI)
//! ```
//!
//! A binary of the `benches/` workspace member (genreg-bench), which has the peers as
//! dependencies. Run it from the repository root: the default paths below are relative to the
//! working directory.
//!
//! Options: `--quick`, `--secs S` (per cell), `--reps R` (cells are repeated and the median
//! kept), `--sizes 1000,1000000`, `--csv PATH` (default `target/throughput.csv`),
//! `--svg PATH` (default `benches/throughput.svg`; the quick pass writes
//! `target/throughput-quick.svg` unless told), `--only WORKLOAD`, `--modes handle,read,get`
//! (the lookup modes of read-hit, read-halfmiss and registry-98/1/1; default all three, the
//! quick pass `handle,get`), `--no-extras` (skip latency and memory), `--replot CSV`.
//!
//! Lookup modes (how a cell's threads read; see [`Mode`]): `handle` reads through each peer's
//! reusable handle re-pinned every [`BATCH`] operations, borrowed (peers without one: per call);
//! `read` makes every lookup a per-call borrowed read ([`Peer::peek`], genreg's
//! `Registry::read`); `get` a per-call lookup returning an owned clone of the value's `Arc`
//! ([`Peer::get`], genreg's `Registry::get`), dropped after its id is checked. In the per-call
//! modes no handle is held at all (writes of the registry mix are per call too): a held handle
//! would make every per-call pin a nested, cheap one. Churn, conflict and snapshot read through
//! the handle only (mode `handle`). Cells are labelled `workload·mode` (e.g. `read-hit·get`);
//! the CSV has a `mode` column (rows of CSVs written before it are `handle`).
//!
//! Every operation's result is checked (a read of a name that must be bound must return its
//! own binding; a registration of a free name owned by the thread must succeed; an
//! `unregister_if_same` with the thread's own current tag must succeed; a stale tag must never
//! remove anything; an iteration must see every stable binding exactly once). Failures are
//! counted per cell and reported; genreg's make the process exit with status 1 (a peer's are
//! its own findings).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

#[path = "../benches/peers/mod.rs"]
mod peers;
use peers::*;

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// 100% lookups of bound names.
    ReadHit,
    /// 50% lookups of bound names, 50% of names never bound.
    ReadHalfMiss,
    /// 98% get, 1% register, 1% unregister_if_same.
    Registry,
    /// 80% get, 10% register, 10% unregister_if_same.
    Churn,
    /// Stale-tag unregisters racing get + unregister_if_same + re-registers of 64 shared names.
    Conflict,
    /// One thread iterating while `threads` others run the registry mix.
    Snapshot,
}

const WORKLOADS: [Workload; 6] = [
    Workload::ReadHit,
    Workload::ReadHalfMiss,
    Workload::Registry,
    Workload::Churn,
    Workload::Conflict,
    Workload::Snapshot,
];

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::ReadHit => "read-hit",
            Workload::ReadHalfMiss => "read-halfmiss",
            Workload::Registry => "registry-98/1/1",
            Workload::Churn => "churn-80/10/10",
            Workload::Conflict => "conflict",
            Workload::Snapshot => "snapshot",
        }
    }
    /// Whether the workload runs in every lookup mode (the others read through the handle).
    fn has_modes(self) -> bool {
        matches!(
            self,
            Workload::ReadHit | Workload::ReadHalfMiss | Workload::Registry
        )
    }
}

/// How a cell's threads look names up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Through the peer's reusable handle ([`Peer::handle`] + [`Handle::peek`]), re-pinned every
    /// [`BATCH`] operations, borrowed; [`PerCall`] for peers without a handle. Writes through it.
    Handle,
    /// Each lookup a per-call borrowed read ([`Peer::peek`]: genreg's `Registry::read`). No
    /// handle held; writes per call.
    Read,
    /// Each lookup a per-call [`Peer::get`] returning an owned clone of the value's `Arc`
    /// (genreg's `Registry::get`), dropped after the check. No handle held; writes per call.
    Get,
}

const MODES: [Mode; 3] = [Mode::Handle, Mode::Read, Mode::Get];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Handle => "handle",
            Mode::Read => "read",
            Mode::Get => "get",
        }
    }
    /// One sentence for the markdown tables.
    fn describe(self) -> &'static str {
        match self {
            Mode::Handle => {
                "lookups through each peer's reusable handle re-pinned every 64 operations, \
                 borrowed (per call for peers without one: scc-HashMap, dashmap, the std maps, \
                 the ceiling; Mutex<HashMap<Weak>> must upgrade, a clone, to read)"
            }
            Mode::Read => {
                "each lookup a per-call borrowed read (`Peer::peek`; genreg `Registry::read`), \
                 no handle held; Mutex<HashMap<Weak>> must upgrade (a clone) to read"
            }
            Mode::Get => {
                "each lookup a per-call `get` returning an owned clone of the value's `Arc` \
                 (genreg `Registry::get`), no handle held"
            }
        }
    }
}

/// A cell's label: `workload·mode`.
fn cell_label(wl: Workload, mode: Mode) -> String {
    format!("{}·{}", wl.label(), mode.label())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dist {
    Uniform,
    Zipf,
}

impl Dist {
    fn label(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipf => "zipf",
        }
    }
}

/// Zipf exponent for skewed names (YCSB's default).
const ZIPF_S: f64 = 0.99;
/// Name length in the harness (16 bytes, as in the peer figures BENCHMARKS.md quotes).
const NAME_LEN: usize = 16;
/// Shared names in the conflict workload.
const CONTESTED: usize = 64;
/// Operations between stop-flag checks and handle refreshes (re-pinning).
const BATCH: usize = 64;
/// Pre-generated name indices per thread and cell (the stream wraps).
const STREAM: usize = 1 << 16;

struct Config {
    quick: bool,
    secs: f64,
    reps: usize,
    sizes: Vec<usize>,
    threads: Vec<usize>,
    dists: Vec<Dist>,
    workloads: Vec<Workload>,
    /// The lookup modes of the workloads that have them ([`Workload::has_modes`]).
    modes: Vec<Mode>,
    csv: String,
    svg: String,
    extras: bool,
    grow_to: usize,
}

impl Config {
    /// The modes `wl` runs in: the configured ones if it has modes, `handle` otherwise.
    fn modes_of(&self, wl: Workload) -> Vec<Mode> {
        if wl.has_modes() {
            self.modes.clone()
        } else {
            vec![Mode::Handle]
        }
    }
}

fn parse_args() -> Config {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter().position(|a| a == flag).map(|i| {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone()
        })
    };
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut threads: Vec<usize> = (1..=n).collect();
    threads.push(2 * n);
    let sizes = value("--sizes")
        .map(|s| s.split(',').map(|x| x.parse().expect("--sizes")).collect())
        .unwrap_or_else(|| {
            if quick {
                vec![1_000]
            } else {
                vec![1_000, 1_000_000]
            }
        });
    let workloads = match value("--only") {
        Some(w) => WORKLOADS
            .iter()
            .copied()
            .filter(|x| x.label().starts_with(w.as_str()))
            .collect(),
        None => WORKLOADS.to_vec(),
    };
    let modes = match value("--modes") {
        Some(m) => {
            let want: Vec<&str> = m.split(',').map(str::trim).collect();
            for w in &want {
                assert!(
                    MODES.iter().any(|x| x.label() == *w),
                    "--modes: unknown mode {w} (handle, read, get)"
                );
            }
            MODES
                .iter()
                .copied()
                .filter(|x| want.contains(&x.label()))
                .collect()
        }
        None if quick => vec![Mode::Handle, Mode::Get],
        None => MODES.to_vec(),
    };
    Config {
        quick,
        secs: value("--secs")
            .map(|s| s.parse().expect("--secs"))
            .unwrap_or(if quick { 0.06 } else { 0.25 }),
        reps: value("--reps")
            .map(|s| s.parse().expect("--reps"))
            .unwrap_or(if quick { 1 } else { 3 }),
        sizes,
        threads: if quick { vec![1, n] } else { threads },
        dists: vec![Dist::Uniform, Dist::Zipf],
        workloads,
        modes,
        csv: value("--csv").unwrap_or_else(|| "target/throughput.csv".into()),
        svg: value("--svg").unwrap_or_else(|| {
            if quick {
                "target/throughput-quick.svg".into()
            } else {
                "benches/throughput.svg".into()
            }
        }),
        extras: !args.iter().any(|a| a == "--no-extras"),
        grow_to: if quick { 100_000 } else { 1_000_000 },
    }
}

// ---------------------------------------------------------------------------------------------
// One table and the names around it

/// The names of one table size. Indices `0..n` are stable (bound before any cell, never
/// written); thread `t` owns the churn pool `n + t*pool .. n + (t+1)*pool`; the conflict
/// workload shares `n .. n + CONTESTED`. Values are `Payload { id: index }`, kept alive here
/// (so the weak-value peer's bindings stay alive).
struct Universe {
    n: usize,
    pool: usize,
    vals: Vec<Val>,
    /// For each thread count `t`: a permutation of `0 .. n + t*pool`, mapping popularity
    /// rank to name index (so hot names are spread over the table). Index 0: over `0..n`.
    perms: Vec<Vec<u32>>,
}

impl Universe {
    fn new(n: usize, max_threads: usize) -> Universe {
        let pool = (n / 64).max(CONTESTED);
        let total = n + max_threads * pool;
        let vals = (0..total as u64)
            .map(|id| Val::new(Payload { id }))
            .collect();
        let mut perms = vec![permutation(n, 11)];
        for t in 1..=max_threads {
            perms.push(permutation(n + t * pool, 11 + t as u64));
        }
        Universe {
            n,
            pool,
            vals,
            perms,
        }
    }
    fn owned(&self, t: usize) -> std::ops::Range<usize> {
        self.n + t * self.pool..self.n + (t + 1) * self.pool
    }
}

/// A stream of name indices: ranks drawn uniformly or Zipf over `perm`, mapped through it.
fn stream(perm: &[u32], dist: Dist, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let zipf = Zipf::new(perm.len() as u64, ZIPF_S);
    (0..STREAM)
        .map(|_| {
            let r = match dist {
                Dist::Uniform => rng.below(perm.len() as u64),
                Dist::Zipf => zipf.sample(&mut rng),
            };
            perm[r as usize]
        })
        .collect()
}

struct CellResult {
    /// Operations per second of the measured threads (median of the repetitions).
    ops_per_sec: f64,
    failures: u64,
    /// Snapshot: entries visited per second by the iterating thread.
    extra: f64,
}

fn nm(buf: &mut [u8; 64], i: u32, miss: bool) -> &str {
    name_into(buf, u64::from(i), NAME_LEN, miss)
}

/// Runs one cell (one repetition) and returns (ops/s, failures, extra).
/// One cell's key streams, shared by every peer (so that all see the same names in the same
/// order): per thread, name indices and the names themselves laid out in stream order (reading
/// the query name is then a sequential, prefetched access; only the map's accesses are random).
struct Streams {
    idx: Vec<Vec<u32>>,
    hit: Vec<Vec<[u8; NAME_LEN]>>,
    miss: Vec<Vec<[u8; NAME_LEN]>>,
}

impl Streams {
    fn new(u: &Universe, wl: Workload, dist: Dist, threads: usize, rep: usize) -> Streams {
        let idx: Vec<Vec<u32>> = (0..threads)
            .map(|t| {
                let seed = (rep * 131 + t * 7 + threads * 1009) as u64 + 1;
                match wl {
                    Workload::ReadHit | Workload::ReadHalfMiss => stream(&u.perms[0], dist, seed),
                    Workload::Conflict => {
                        let perm: Vec<u32> = permutation(CONTESTED, 5)
                            .into_iter()
                            .map(|r| r + u.n as u32)
                            .collect();
                        stream(&perm, dist, seed)
                    }
                    _ => stream(&u.perms[threads], dist, seed),
                }
            })
            .collect();
        let names = |miss: bool| -> Vec<Vec<[u8; NAME_LEN]>> {
            idx.iter()
                .map(|st| {
                    st.iter()
                        .map(|&i| {
                            let mut buf = [0u8; 64];
                            let mut out = [0u8; NAME_LEN];
                            out.copy_from_slice(
                                name_into(&mut buf, u64::from(i), NAME_LEN, miss).as_bytes(),
                            );
                            out
                        })
                        .collect()
                })
                .collect()
        };
        let hit = names(false);
        let miss = if wl == Workload::ReadHalfMiss {
            names(true)
        } else {
            Vec::new()
        };
        Streams { idx, hit, miss }
    }
}

#[inline]
fn as_name(b: &[u8; NAME_LEN]) -> &str {
    // SAFETY: built from ASCII names.
    unsafe { std::str::from_utf8_unchecked(b) }
}

/// The `get` mode's stand-in for a handle: every lookup is a per-call [`Peer::get`] (an owned
/// clone of the value's `Arc`, dropped once its id is read), every write a per-call one, as in
/// [`PerCall`] (whose lookups are the `read` mode's per-call [`Peer::peek`]).
struct PerCallGet<'a, P>(&'a P);

impl<P: Peer> Handle for PerCallGet<'_, P> {
    type Tag = P::Tag;
    #[inline(always)]
    fn peek(&self, name: &str) -> Option<(P::Tag, u64)> {
        self.0.get(name).map(|(tag, v)| (tag, v.id))
    }
    #[inline]
    fn register(&self, name: &str, v: &Val) -> Option<P::Tag> {
        self.0.register(name, v)
    }
    #[inline]
    fn unregister_if_same(&self, name: &str, tag: P::Tag) -> bool {
        self.0.unregister_if_same(name, tag)
    }
}

/// Runs one cell (one repetition) for one peer and returns (ops/s, failures, extra). Every
/// operation of the measured threads goes through `h = open()`, opened again every [`BATCH`]
/// operations: the peer's handle (mode `handle`), or a per-call stand-in (`read`: [`PerCall`],
/// `get`: [`PerCallGet`]), which holds nothing.
#[allow(clippy::too_many_arguments)]
fn run_once<P: Peer, H: Handle<Tag = P::Tag>>(
    p: &P,
    open: impl Fn() -> H + Sync,
    u: &Universe,
    st: &Streams,
    wl: Workload,
    mode: Mode,
    dist: Dist,
    threads: usize,
    secs: f64,
    rep: usize,
) -> (f64, u64, f64) {
    let failures = AtomicU64::new(0);
    let fail = |what: &str| {
        if failures.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!(
                "  FAILURE [{} {} {} t={threads}]: {what}",
                P::NAME,
                cell_label(wl, mode),
                dist.label()
            );
        }
    };
    let mixers = threads;
    let iterator = wl == Workload::Snapshot;

    // Untimed setup: half of each thread's pool bound (in bulk, for copy-on-write's sake).
    let mut live: Vec<VecDeque<(u32, P::Tag)>> = (0..mixers).map(|_| VecDeque::new()).collect();
    let mut free: Vec<Vec<u32>> = (0..mixers).map(|_| Vec::new()).collect();
    if matches!(
        wl,
        Workload::Registry | Workload::Churn | Workload::Snapshot
    ) {
        let mut batch = Vec::new();
        for (t, free) in free.iter_mut().enumerate() {
            for (j, i) in u.owned(t).enumerate() {
                if j % 2 == 0 {
                    batch.push((t, i as u32));
                } else {
                    free.push(i as u32);
                }
            }
        }
        let tags = p.bulk_register(
            &mut batch
                .iter()
                .map(|&(_, i)| (name(u64::from(i), NAME_LEN), u.vals[i as usize].clone())),
        );
        for (&(t, i), tag) in batch.iter().zip(tags) {
            live[t].push_back((i, tag));
        }
    }

    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(mixers + usize::from(iterator) + 1);
    let total_ops = AtomicU64::new(0);
    let visited = AtomicU64::new(0);
    let ends = Mutex::new(Vec::new());
    let universe_end = (u.n + threads * u.pool) as u64;
    let started = {
        let live = &mut live;
        let free = &mut free;
        std::thread::scope(|s| {
            for (t, (live, free)) in live.iter_mut().zip(free.iter_mut()).enumerate() {
                let stream = &st.idx[t];
                let hits = &st.hit[t];
                let misses = st.miss.get(t);
                let (stop, barrier, total_ops, ends, fail, open) =
                    (&stop, &barrier, &total_ops, &ends, &fail, &open);
                s.spawn(move || {
                    let mut rng = Rng(0xA5A5_5A5A_1234_5678 ^ ((t as u64 + 1) << 32) ^ rep as u64);
                    let mut buf = [0u8; 64];
                    let mut ops = 0u64;
                    let mut k = 0usize;
                    let mut stale: Vec<Option<P::Tag>> = vec![None; CONTESTED];
                    barrier.wait();
                    let mut h = open();
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..BATCH {
                            let at = k & (STREAM - 1);
                            let i = stream[at];
                            k += 1;
                            match wl {
                                Workload::ReadHit => match h.peek(as_name(&hits[at])) {
                                    Some((_, id)) if id == u64::from(i) => {}
                                    r => fail(&format!("read of bound name {i} gave {r:?}")),
                                },
                                Workload::ReadHalfMiss => {
                                    let miss = rng.next_u64() & 1 == 0;
                                    let q = if miss {
                                        &misses.expect("miss names")[at]
                                    } else {
                                        &hits[at]
                                    };
                                    match (h.peek(as_name(q)), miss) {
                                        (None, true) => {}
                                        (Some((_, id)), false) if id == u64::from(i) => {}
                                        (r, _) => {
                                            fail(&format!("read of {i} (miss={miss}) gave {r:?}"))
                                        }
                                    }
                                }
                                Workload::Registry | Workload::Churn | Workload::Snapshot => {
                                    let r = rng.below(100);
                                    let (reads, regs) = if wl == Workload::Churn {
                                        (80, 90)
                                    } else {
                                        (98, 99)
                                    };
                                    let mut op = if r < reads {
                                        0
                                    } else if r < regs {
                                        1
                                    } else {
                                        2
                                    };
                                    if op == 1 && free.is_empty() {
                                        op = 2;
                                    }
                                    if op == 2 && live.is_empty() {
                                        op = 1;
                                    }
                                    match op {
                                        0 => match h.peek(as_name(&hits[at])) {
                                            Some((_, id)) if id == u64::from(i) => {}
                                            None if i as usize >= u.n => {} // a churn name, unbound now
                                            r => fail(&format!("read of {i} gave {r:?}")),
                                        },
                                        1 => {
                                            let j = free
                                                .swap_remove(rng.below(free.len() as u64) as usize);
                                            match h.register(
                                                nm(&mut buf, j, false),
                                                &u.vals[j as usize],
                                            ) {
                                                Some(tag) => live.push_back((j, tag)),
                                                None => {
                                                    fail(&format!(
                                                        "register of own free name {j} refused"
                                                    ));
                                                    free.push(j);
                                                }
                                            }
                                        }
                                        _ => {
                                            let (j, tag) = live.pop_front().expect("live");
                                            if h.unregister_if_same(nm(&mut buf, j, false), tag) {
                                                free.push(j);
                                            } else {
                                                fail(&format!(
                                                    "unregister_if_same of own binding {j} refused"
                                                ));
                                            }
                                        }
                                    }
                                }
                                Workload::Conflict => {
                                    let slot = i as usize - u.n;
                                    let r = rng.below(10);
                                    if r < 4 && stale[slot].is_some() {
                                        // A tag this thread itself removed: stale forever.
                                        let tag = stale[slot].unwrap();
                                        if h.unregister_if_same(as_name(&hits[at]), tag) {
                                            fail(&format!("stale tag removed binding of {i}"));
                                        }
                                    } else if r < 7 {
                                        let name = as_name(&hits[at]);
                                        if let Some((tag, id)) = h.peek(name) {
                                            if id != u64::from(i) {
                                                fail(&format!("read of {i} gave id {id}"));
                                            }
                                            if h.unregister_if_same(name, tag) {
                                                stale[slot] = Some(tag);
                                            }
                                            ops += 1;
                                        }
                                    } else {
                                        let _ = h.register(as_name(&hits[at]), &u.vals[i as usize]);
                                    }
                                }
                            }
                            ops += 1;
                        }
                        // Re-pin: a handle held for a whole cell would stall reclamation.
                        drop(h);
                        h = open();
                    }
                    drop(h);
                    ends.lock().unwrap().push(Instant::now());
                    total_ops.fetch_add(ops, Ordering::Relaxed);
                });
            }
            if iterator {
                let (stop, barrier, visited, fail) = (&stop, &barrier, &visited, &fail);
                s.spawn(move || {
                    barrier.wait();
                    let mut seen_total = 0u64;
                    // Weak consistency is the contract: each stable binding (never written
                    // during the cell) exactly once, no id from outside the universe. A churn
                    // name removed and bound again during the walk may be met twice, in its
                    // old and its new place, by any weakly consistent iterator.
                    let mut times = vec![0u8; u.n];
                    while !stop.load(Ordering::Relaxed) {
                        let mut bad = 0u64;
                        times.fill(0);
                        let seen = p.for_each(&mut |_, id| {
                            if id >= universe_end {
                                bad += 1;
                            } else if (id as usize) < u.n {
                                let t = &mut times[id as usize];
                                *t = t.saturating_add(1);
                            }
                        });
                        let wrong = times.iter().filter(|&&t| t != 1).count();
                        if bad > 0 || wrong > 0 {
                            fail(&format!(
                                "iteration saw {seen} entries: {bad} bad ids, {wrong} of {} \
                                 stable bindings not seen exactly once",
                                u.n
                            ));
                        }
                        seen_total += seen as u64;
                    }
                    visited.fetch_add(seen_total, Ordering::Relaxed);
                });
            }
            barrier.wait();
            let started = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
            started
        })
    };
    let end = ends
        .into_inner()
        .unwrap()
        .into_iter()
        .max()
        .unwrap_or_else(Instant::now);
    let elapsed = end.duration_since(started).as_secs_f64();

    // Untimed teardown: the churn region is left empty for the next cell.
    let mut rest: Vec<(String, P::Tag)> = Vec::new();
    for l in live {
        rest.extend(
            l.into_iter()
                .map(|(i, t)| (name(u64::from(i), NAME_LEN), t)),
        );
    }
    let expected = rest.len();
    if p.bulk_unregister(&rest) != expected {
        failures.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "  FAILURE [{}]: teardown could not remove every own binding",
            P::NAME
        );
    }
    if wl == Workload::Conflict {
        let mut left = Vec::new();
        for i in u.n..u.n + CONTESTED {
            let nmx = name(i as u64, NAME_LEN);
            if let Some((t, _)) = p.peek(&nmx) {
                left.push((nmx, t));
            }
        }
        p.bulk_unregister(&left);
    }
    let ops = total_ops.load(Ordering::Relaxed) as f64;
    let extra = visited.load(Ordering::Relaxed) as f64 / elapsed;
    (ops / elapsed, failures.load(Ordering::Relaxed), extra)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// The matrix

/// `(workload, mode, dist, size, threads, peer) -> result`
struct Row {
    workload: Workload,
    mode: Mode,
    dist: Dist,
    size: usize,
    threads: usize,
    peer: &'static str,
    r: CellResult,
}

/// A peer's table, type-erased so that every peer's table can be alive at once and the
/// peers can be interleaved cell by cell (ratios then come from runs minutes, not seconds,
/// apart on this noisy machine).
trait Runner {
    fn name(&self) -> &'static str;
    fn runs(&self, wl: Workload, threads: usize, names: usize) -> bool;
    fn cheap_writes(&self) -> bool;
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        u: &Universe,
        st: &Streams,
        wl: Workload,
        mode: Mode,
        dist: Dist,
        threads: usize,
        secs: f64,
        rep: usize,
    ) -> (f64, u64, f64);
}

struct Table<P>(P);

impl<P: Peer> Runner for Table<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn runs(&self, wl: Workload, threads: usize, names: usize) -> bool {
        // Copy-on-write at 1M names: every write copies the whole map (~0.1-0.2 s here), so a
        // write-heavy cell is a handful of operations that take minutes to finish. Its 1k
        // figures and its 1M registry-98/1/1 figure already make the point.
        let cow_skip = !P::CHEAP_WRITES
            && names > 100_000
            && matches!(
                wl,
                Workload::Churn | Workload::Conflict | Workload::Snapshot
            );
        (P::CONCURRENT || (threads == 1 && wl != Workload::Snapshot)) && !cow_skip
    }
    fn cheap_writes(&self) -> bool {
        P::CHEAP_WRITES
    }
    fn run(
        &self,
        u: &Universe,
        st: &Streams,
        wl: Workload,
        mode: Mode,
        dist: Dist,
        threads: usize,
        secs: f64,
        rep: usize,
    ) -> (f64, u64, f64) {
        let p = &self.0;
        match mode {
            Mode::Handle => run_once(p, || p.handle(), u, st, wl, mode, dist, threads, secs, rep),
            Mode::Read => run_once(p, || PerCall(p), u, st, wl, mode, dist, threads, secs, rep),
            Mode::Get => run_once(
                p,
                || PerCallGet(p),
                u,
                st,
                wl,
                mode,
                dist,
                threads,
                secs,
                rep,
            ),
        }
    }
}

/// Builds every peer's table of the stable names.
struct Build<'a> {
    u: &'a Universe,
    t0: Instant,
    out: Vec<Box<dyn Runner>>,
}

impl Visit for Build<'_> {
    fn visit<P: Peer>(&mut self) {
        let u = self.u;
        let start = Instant::now();
        let p = P::with_capacity(u.n);
        let _ =
            p.bulk_register(&mut (0..u.n).map(|i| (name(i as u64, NAME_LEN), u.vals[i].clone())));
        println!(
            "[{:>5.0}s] built {:<30} {} names in {:.2}s",
            self.t0.elapsed().as_secs_f64(),
            P::NAME,
            u.n,
            start.elapsed().as_secs_f64()
        );
        self.out.push(Box::new(Table(p)));
    }
}

/// Runs every cell of one table size, peers interleaved (their order rotates every repetition).
fn run_size(
    cfg: &Config,
    u: &Universe,
    t0: Instant,
    rows: &mut Vec<Row>,
    done: &mut usize,
    total: usize,
) {
    let mut b = Build {
        u,
        t0,
        out: Vec::new(),
    };
    each_peer(&mut b);
    let tables = b.out;
    for &wl in &cfg.workloads {
        for &dist in &cfg.dists {
            for &threads in &cfg.threads {
                // The modes of one (workload, dist, threads) run back to back, each a cell of
                // its own whose peers are interleaved and rotated as in any cell.
                for mode in cfg.modes_of(wl) {
                    *done += 1;
                    let line = run_cell(cfg, u, &tables, rows, wl, mode, dist, threads);
                    println!(
                        "[{:>5.0}s] {:>4}/{total} {line}",
                        t0.elapsed().as_secs_f64(),
                        *done
                    );
                }
            }
        }
    }
}

/// Runs one cell (workload, mode, dist, threads) for every peer that runs it, peers
/// interleaved (their order rotates every repetition); pushes a row per peer and returns the
/// cell's printed line (without its time and counter).
#[allow(clippy::too_many_arguments)]
fn run_cell(
    cfg: &Config,
    u: &Universe,
    tables: &[Box<dyn Runner>],
    rows: &mut Vec<Row>,
    wl: Workload,
    mode: Mode,
    dist: Dist,
    threads: usize,
) -> String {
    let active: Vec<&dyn Runner> = tables
        .iter()
        .map(|t| &**t)
        .filter(|t| t.runs(wl, threads, u.n))
        .collect();
    let mut res: Vec<Vec<(f64, u64, f64)>> = vec![Vec::new(); active.len()];
    for rep in 0..cfg.reps {
        let st = Streams::new(u, wl, dist, threads, rep);
        for k in 0..active.len() {
            let j = (k + rep) % active.len();
            let t = active[j];
            let secs = if !t.cheap_writes()
                && u.n > 100_000
                && !matches!(wl, Workload::ReadHit | Workload::ReadHalfMiss)
            {
                // Every write copies a 1M-entry map: give it time for a few writes.
                cfg.secs.max(0.5)
            } else {
                cfg.secs
            };
            res[j].push(t.run(u, &st, wl, mode, dist, threads, secs, rep));
        }
    }
    let mut line = format!(
        "{} {} {} t={}:",
        u.n,
        dist.label(),
        cell_label(wl, mode),
        threads
    );
    let mut g = f64::NAN;
    for (t, r) in active.iter().zip(res) {
        let mut rates: Vec<f64> = r.iter().map(|x| x.0).collect();
        let mut extras: Vec<f64> = r.iter().map(|x| x.2).collect();
        let failures = r.iter().map(|x| x.1).sum();
        let ops = median(&mut rates);
        if t.name() == "genreg" {
            g = ops;
            let _ = write!(line, " genreg {}", fmt_mops(ops / 1e6));
        } else {
            let _ = write!(line, " | {} {}", short(t.name()), ratio_str(g, ops));
        }
        if failures > 0 {
            let _ = write!(line, " FAIL({failures})");
        }
        rows.push(Row {
            workload: wl,
            mode,
            dist,
            size: u.n,
            threads,
            peer: t.name(),
            r: CellResult {
                ops_per_sec: ops,
                failures,
                extra: median(&mut extras),
            },
        });
    }
    line
}

fn short(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

// ---------------------------------------------------------------------------------------------
// Insert latency while growing, and memory per entry: each in a fresh child process per peer

struct Child<'a> {
    mode: &'a str,
    peer: &'a str,
    n: usize,
    out: Option<String>,
}

impl Visit for Child<'_> {
    fn visit<P: Peer>(&mut self) {
        // The full name, or its first word (`benches/instr.sh` passes `ceiling` for
        // `ceiling (unsync, inline keys)`).
        if P::NAME != self.peer && P::NAME.split(' ').next() != Some(self.peer) {
            return;
        }
        let n = self.n;
        let nvals = if matches!(self.mode, "mem" | "lat") {
            n
        } else {
            1 << 21
        };
        let vals: Vec<Val> = (0..nvals as u64)
            .map(|id| Val::new(Payload { id }))
            .collect();
        let mut buf = [0u8; 64];
        match self.mode {
            "mem" => {
                let before = rss_bytes();
                let p = P::with_capacity(0);
                if P::CHEAP_WRITES {
                    for (i, v) in vals.iter().enumerate() {
                        p.register(name_into(&mut buf, i as u64, NAME_LEN, false), v)
                            .expect("register");
                    }
                } else {
                    p.bulk_register(
                        &mut (0..n).map(|i| (name(i as u64, NAME_LEN), vals[i].clone())),
                    );
                }
                p.settle();
                let after = rss_bytes();
                assert_eq!(p.for_each(&mut |_, _| {}), n);
                self.out = Some(format!("{}", (after as f64 - before as f64) / n as f64));
                std::mem::forget(p); // no need to pay for the drop
            }
            "lat" => {
                let p = P::with_capacity(0);
                let mut lat: Vec<u32> = Vec::with_capacity(n);
                // The most CPU time one insert took on its own thread (page faults included,
                // preemption not): the wall-clock maximum on a shared VM is mostly the time the
                // thread spent descheduled. Read outside the wall-clock window.
                let mut cpu_max = 0u64;
                let t0 = Instant::now();
                for (i, v) in vals.iter().enumerate() {
                    let name = name_into(&mut buf, i as u64, NAME_LEN, false);
                    let c = thread_cpu_ns();
                    let s = Instant::now();
                    let r = p.register(name, v);
                    let d = s.elapsed();
                    cpu_max = cpu_max.max(thread_cpu_ns().saturating_sub(c));
                    assert!(r.is_some(), "register of a fresh name refused");
                    lat.push(d.as_nanos().min(u128::from(u32::MAX)) as u32);
                }
                let total = t0.elapsed().as_secs_f64();
                lat.sort_unstable();
                let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
                self.out = Some(format!(
                    "{} {} {} {} {:.1} {}",
                    q(0.5),
                    q(0.99),
                    q(0.999),
                    lat[lat.len() - 1],
                    total * 1e9 / n as f64,
                    cpu_max
                ));
                std::mem::forget(p);
            }
            op => {
                // Profiling loops (`--child OP PEER N`), run under
                // `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*prof_loop*'`
                // so that only the loop is counted: see BENCHMARKS.md.
                let table: usize = std::env::var("PROF_NAMES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1024);
                let p = P::with_capacity(table);
                let tags = p.bulk_register(
                    &mut (0..table).map(|i| (name(i as u64, NAME_LEN), vals[i].clone())),
                );
                // A stream of 65,536 lookups at least (the harness's), each name as often: a
                // short cycle of the same names in the same order is learnt by the branch
                // predictor, which then hides the probes' data-dependent branches (measured:
                // papaya's hit 6.5 ns in a cycle of 1,024, 10.6 ns in this stream).
                let total = table.max(STREAM);
                let order = (3..).flat_map(|seed| permutation(table, seed)).take(total);
                let arena = Arena::new(order.map(|i| {
                    if op == "miss" {
                        miss_name(u64::from(i), NAME_LEN)
                    } else {
                        name(u64::from(i), NAME_LEN)
                    }
                }));
                let pool: Vec<String> = (table..table + 1024)
                    .map(|i| name(i as u64, NAME_LEN))
                    .collect();
                let mut stale = tags.clone();
                if op == "stale" {
                    for (i, t) in stale.iter_mut().enumerate() {
                        let nmx = name(i as u64, NAME_LEN);
                        assert!(p.unregister_if_same(&nmx, *t));
                        let _ = p.register(&nmx, &vals[i]).expect("re-register");
                    }
                }
                let stable: Vec<String> = (0..table).map(|i| name(i as u64, NAME_LEN)).collect();
                let start = Instant::now();
                let sum = prof_dispatch(&p, op, n, &arena, &stable, &pool, &vals, &mut stale);
                let ns = start.elapsed().as_nanos() as f64 / n as f64;
                self.out = Some(format!("{sum} {ns:.1} ns/op"));
            }
        }
    }
}

/// Runs the loop of `op` that callgrind counts (`--toggle-collect='*prof_loop*'`). Each op's
/// loop is a function of its own, never inlined here: so the compiler's inlining decisions for
/// one op (one big function holding every loop has one inlining budget) cannot change another
/// op's count.
#[allow(clippy::too_many_arguments)]
fn prof_dispatch<P: Peer>(
    p: &P,
    op: &str,
    n: usize,
    arena: &Arena,
    stable: &[String],
    pool: &[String],
    vals: &[Val],
    tags: &mut [P::Tag],
) -> u64 {
    let m = arena.len();
    assert!(m.is_power_of_two(), "PROF_NAMES must be a power of two");
    match op {
        "hit" | "miss" => prof_loop_hit(p, n, arena),
        "peek" => prof_loop_peek(p, n, arena),
        "get" => prof_loop_get(p, n, arena),
        "cycle" => prof_loop_cycle(p, n, pool, vals),
        "stale" => prof_loop_stale(p, n, stable, tags),
        "replace" => prof_loop_replace(p, n, stable, vals, tags),
        "iter" => prof_loop_iter(p, n),
        _ => panic!("unknown op {op}"),
    }
}

#[inline(never)]
fn prof_loop_hit<P: Peer>(p: &P, n: usize, arena: &Arena) -> u64 {
    let (mut sum, m) = (0u64, arena.len());
    let h = p.handle();
    for k in 0..n {
        sum += std::hint::black_box(h.peek(arena.get(k & (m - 1)))).map_or(1, |x| x.1);
    }
    sum
}

#[inline(never)]
fn prof_loop_peek<P: Peer>(p: &P, n: usize, arena: &Arena) -> u64 {
    let (mut sum, m) = (0u64, arena.len());
    for k in 0..n {
        sum += std::hint::black_box(p.peek(arena.get(k & (m - 1)))).map_or(1, |x| x.1);
    }
    sum
}

#[inline(never)]
fn prof_loop_get<P: Peer>(p: &P, n: usize, arena: &Arena) -> u64 {
    let (mut sum, m) = (0u64, arena.len());
    for k in 0..n {
        sum += std::hint::black_box(p.get(arena.get(k & (m - 1)))).map_or(1, |x| x.1.id);
    }
    sum
}

#[inline(never)]
fn prof_loop_cycle<P: Peer>(p: &P, n: usize, pool: &[String], vals: &[Val]) -> u64 {
    let mut sum = 0u64;
    for k in 0..n {
        let i = k % pool.len();
        let t = p
            .register(&pool[i], &vals[i % vals.len()])
            .expect("register");
        assert!(p.unregister_if_same(&pool[i], t));
        sum += 1;
    }
    sum
}

#[inline(never)]
fn prof_loop_stale<P: Peer>(p: &P, n: usize, stable: &[String], tags: &[P::Tag]) -> u64 {
    let mut sum = 0u64;
    for k in 0..n {
        let i = k % stable.len();
        assert!(!p.unregister_if_same(&stable[i], tags[i]));
        sum += 1;
    }
    sum
}

#[inline(never)]
fn prof_loop_replace<P: Peer>(
    p: &P,
    n: usize,
    stable: &[String],
    vals: &[Val],
    tags: &mut [P::Tag],
) -> u64 {
    let mut sum = 0u64;
    for k in 0..n {
        let i = k % stable.len();
        tags[i] = p
            .replace_if_same(&stable[i], tags[i], &vals[i % vals.len()])
            .expect("replace");
        sum += 1;
    }
    sum
}

#[inline(never)]
fn prof_loop_iter<P: Peer>(p: &P, n: usize) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        sum += p.for_each(&mut |len, id| {
            std::hint::black_box((len, id));
        }) as u64;
    }
    sum
}

/// This thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`; 0 where there is none).
fn thread_cpu_ns() -> u64 {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid, writable `struct timespec` (two 64-bit fields on the 64-bit
        // Linux targets this harness runs on), and the clock id is Linux's.
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return 0;
        }
        (ts.sec as u64) * 1_000_000_000 + ts.nsec as u64
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    {
        0
    }
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Names(Vec<(&'static str, bool, bool)>);

impl Visit for Names {
    fn visit<P: Peer>(&mut self) {
        self.0.push((P::NAME, P::CONCURRENT, P::CHEAP_WRITES));
    }
}

fn peer_names() -> Vec<(&'static str, bool, bool)> {
    let mut v = Names(Vec::new());
    each_peer(&mut v);
    v.0
}

fn run_child(mode: &str, peer: &str, n: usize) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args(["--child", mode, peer, &n.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "  child {mode} {peer} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// Output: tables, CSV, SVG

fn ratio_str(x: f64, g: f64) -> String {
    if g > 0.0 {
        format!("{:.2}x", x / g)
    } else {
        "-".into()
    }
}

/// The (workload, mode) pairs that have rows, workloads in `cfg`'s order, modes in
/// [`MODES`]' order.
fn cells(cfg: &Config, rows: &[Row]) -> Vec<(Workload, Mode)> {
    cfg.workloads
        .iter()
        .flat_map(|&wl| MODES.iter().map(move |&m| (wl, m)))
        .filter(|&(wl, m)| rows.iter().any(|r| r.workload == wl && r.mode == m))
        .collect()
}

fn print_tables(cfg: &Config, rows: &[Row]) -> String {
    let peers = peer_names();
    let cells = cells(cfg, rows);
    let mut md = String::new();
    for &size in &cfg.sizes {
        for &dist in &cfg.dists {
            for &(wl, mode) in &cells {
                let _ = writeln!(
                    md,
                    "\n#### {} names, {}, {} (Mops/s; in brackets: genreg's throughput / the peer's)\n",
                    size,
                    dist.label(),
                    cell_label(wl, mode)
                );
                if wl.has_modes() {
                    let _ = writeln!(md, "Mode `{}`: {}.\n", mode.label(), mode.describe());
                }
                let mut head = String::from("| peer |");
                let mut sep = String::from("| --- |");
                for t in &cfg.threads {
                    let _ = write!(head, " {t} thr |");
                    sep.push_str(" --- |");
                }
                let _ = writeln!(md, "{head}\n{sep}");
                let find = |peer: &str, t: usize| {
                    rows.iter().find(|r| {
                        r.workload == wl
                            && r.mode == mode
                            && r.dist == dist
                            && r.size == size
                            && r.threads == t
                            && r.peer == peer
                    })
                };
                for (peer, _, _) in &peers {
                    let mut line = format!("| {peer} |");
                    let mut any = false;
                    for &t in &cfg.threads {
                        match (find(peer, t), find("genreg", t)) {
                            (Some(r), Some(g)) => {
                                any = true;
                                let mops = r.r.ops_per_sec / 1e6;
                                let cell = if *peer == "genreg" {
                                    format!(" **{}** |", fmt_mops(mops))
                                } else {
                                    format!(
                                        " {} ({}) |",
                                        fmt_mops(mops),
                                        ratio_str(g.r.ops_per_sec, r.r.ops_per_sec)
                                    )
                                };
                                line.push_str(&cell);
                                if r.r.failures > 0 {
                                    line.push_str(&format!(" FAIL {} |", r.r.failures));
                                }
                            }
                            _ => line.push_str(" |"),
                        }
                    }
                    if any {
                        let _ = writeln!(md, "{line}");
                    }
                }
                if wl == Workload::Snapshot {
                    let mut line =
                        String::from("\nIterating thread, million entries visited per second:");
                    for (peer, _, _) in &peers {
                        if let Some(r) = find(peer, cfg.threads[cfg.threads.len() - 1]) {
                            let _ = write!(line, " {peer} {:.1};", r.r.extra / 1e6);
                        }
                    }
                    let _ = writeln!(
                        md,
                        "{line} (with {} mixing threads)",
                        cfg.threads[cfg.threads.len() - 1]
                    );
                }
            }
        }
    }
    print!("{md}");
    md
}

/// An axis label for 10^e.
fn decade(e: f64) -> String {
    let e = e as i32;
    match e {
        0.. => format!("{}", 10u64.pow(e as u32)),
        -3..=-1 => format!("{}", 10f64.powi(e)),
        _ => format!("1e{e}"),
    }
}

fn fmt_mops(m: f64) -> String {
    if m >= 10.0 {
        format!("{m:.1}")
    } else if m >= 0.1 {
        format!("{m:.2}")
    } else {
        format!("{m:.4}")
    }
}

/// Splits one CSV line (fields may be double-quoted).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Reads a CSV written by [`write_csv`] back (for `--replot`), by its header's column names.
/// CSVs written before the `mode` column have none: their rows are mode `handle`.
fn read_csv(path: &str, mut cfg: Config) -> (Config, Vec<Row>) {
    let text = std::fs::read_to_string(path).expect("read CSV");
    let mut lines = text.lines();
    let head = csv_fields(lines.next().expect("CSV header"));
    let col = |name: &str| head.iter().position(|h| h == name);
    let need = |name: &str| col(name).unwrap_or_else(|| panic!("CSV: no column {name}"));
    let (c_wl, c_dist, c_names, c_threads, c_peer) = (
        need("workload"),
        need("dist"),
        need("names"),
        need("threads"),
        need("peer"),
    );
    let (c_mops, c_fail, c_extra) = (need("mops"), need("failures"), need("iter_mentries_per_s"));
    let c_mode = col("mode");
    let peers = peer_names();
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let mut f = csv_fields(line);
        if f.len() == head.len() + 1 {
            // An early CSV left the ceiling's name ("ceiling (unsync, inline keys)") unquoted.
            let tail = f.remove(c_peer + 1);
            f[c_peer] = format!("{},{tail}", f[c_peer]);
        }
        let workload = *WORKLOADS
            .iter()
            .find(|w| w.label() == f[c_wl])
            .expect("workload");
        let mode = match c_mode {
            Some(c) => *MODES.iter().find(|m| m.label() == f[c]).expect("mode"),
            None => Mode::Handle,
        };
        let dist = if f[c_dist] == "zipf" {
            Dist::Zipf
        } else {
            Dist::Uniform
        };
        let peer = peers.iter().find(|p| p.0 == f[c_peer]).expect("peer").0;
        rows.push(Row {
            workload,
            mode,
            dist,
            size: f[c_names].parse().expect("names"),
            threads: f[c_threads].parse().expect("threads"),
            peer,
            r: CellResult {
                ops_per_sec: f[c_mops].parse::<f64>().expect("mops") * 1e6,
                failures: f[c_fail].parse().expect("failures"),
                extra: f[c_extra].parse::<f64>().expect("extra") * 1e6,
            },
        });
    }
    let uniq = |get: &dyn Fn(&Row) -> usize| {
        let mut v: Vec<usize> = rows.iter().map(get).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    cfg.sizes = uniq(&|r| r.size);
    cfg.threads = uniq(&|r| r.threads);
    cfg.workloads = WORKLOADS
        .iter()
        .copied()
        .filter(|w| rows.iter().any(|r| r.workload == *w))
        .collect();
    cfg.dists = [Dist::Uniform, Dist::Zipf]
        .into_iter()
        .filter(|d| rows.iter().any(|r| r.dist == *d))
        .collect();
    cfg.modes = MODES
        .iter()
        .copied()
        .filter(|m| rows.iter().any(|r| r.workload.has_modes() && r.mode == *m))
        .collect();
    (cfg, rows)
}

fn write_csv(path: &str, rows: &[Row]) -> std::io::Result<()> {
    let mut s = String::from(
        "workload,mode,dist,names,threads,peer,mops,genreg_ratio,failures,iter_mentries_per_s\n",
    );
    for r in rows {
        let g = rows
            .iter()
            .find(|g| {
                g.peer == "genreg"
                    && g.workload == r.workload
                    && g.mode == r.mode
                    && g.dist == r.dist
                    && g.size == r.size
                    && g.threads == r.threads
            })
            .map_or(f64::NAN, |g| g.r.ops_per_sec / r.r.ops_per_sec);
        let _ = writeln!(
            s,
            "{},{},{},{},{},\"{}\",{:.6e},{:.3},{},{:.6e}",
            r.workload.label(),
            r.mode.label(),
            r.dist.label(),
            r.size,
            r.threads,
            r.peer,
            r.r.ops_per_sec / 1e6,
            g,
            r.r.failures,
            r.r.extra / 1e6
        );
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, s)
}

const COLORS: [&str; 9] = [
    "#d62728", "#1f77b4", "#2ca02c", "#98df8a", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f",
];

/// The chart's panels: every (workload, mode) with rows, except the `handle` mode of
/// read-halfmiss and registry-98/1/1 where they also ran per call (read-hit keeps all three, for
/// the handle against per-call comparison; the tables and the CSV have every cell).
fn chart_panels(cfg: &Config, rows: &[Row]) -> Vec<(Workload, Mode)> {
    let all = cells(cfg, rows);
    all.iter()
        .copied()
        .filter(|&(wl, m)| {
            !(m == Mode::Handle
                && wl.has_modes()
                && wl != Workload::ReadHit
                && all.iter().any(|&(w, o)| w == wl && o != Mode::Handle))
        })
        .collect()
}

/// `1000` -> `1k`, `1000000` -> `1M`.
fn fmt_size(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Throughput vs threads: one panel per workload·mode (columns, wrapped into bands of at most
/// six), one row per (names, distribution) in each band; log-scale y (Mops/s), one line per
/// peer, genreg thick red. The ceiling is a dot at 1 thread.
fn write_svg(path: &str, cfg: &Config, rows: &[Row], machine: &str) -> std::io::Result<()> {
    let peers = peer_names();
    let (pw, ph) = (250.0, 190.0);
    let (ml, mt) = (60.0, 110.0);
    let combos: Vec<(usize, Dist)> = cfg
        .sizes
        .iter()
        .flat_map(|&s| cfg.dists.iter().map(move |&d| (s, d)))
        .collect();
    let panels = chart_panels(cfg, rows);
    let bands = panels.len().div_ceil(6).max(1);
    let cols = panels.len().div_ceil(bands).max(1);
    let band_h = combos.len() as f64 * (ph + 45.0);
    let band_gap = 30.0;
    let width = ml + cols as f64 * (pw + 50.0) + 20.0;
    let hidden: Vec<String> = cells(cfg, rows)
        .into_iter()
        .filter(|c| !panels.contains(c))
        .map(|(wl, m)| cell_label(wl, m))
        .collect();
    let foot = if hidden.is_empty() { 20.0 } else { 34.0 };
    let height = mt + bands as f64 * band_h + (bands - 1) as f64 * band_gap + foot;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{ml}" y="22" font-size="16" font-weight="bold">genreg vs peers: throughput (Mops/s, log scale) vs threads</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{ml}" y="40" fill="#555">{}</text>"##,
        xml(machine)
    );
    // Legend
    for (k, (peer, _, _)) in peers.iter().enumerate() {
        let x = ml + (k % 5) as f64 * 230.0;
        let y = 60.0 + (k / 5) as f64 * 18.0;
        let w = if k == 0 { 4 } else { 2 };
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="{w}"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            COLORS[k % COLORS.len()],
            x + 30.0,
            y + 4.0,
            xml(peer)
        );
    }
    if panels.iter().any(|&(wl, _)| wl.has_modes()) {
        let _ = writeln!(
            s,
            r##"<text x="{ml}" y="100" fill="#555">Lookup modes (workload·mode): handle = through each peer's handle re-pinned every 64 operations, borrowed (per call without one); read = per call, borrowed; get = per call, an owned Arc clone.</text>"##
        );
    }
    let tmax = *cfg.threads.iter().max().unwrap_or(&1) as f64;
    let tmin = *cfg.threads.iter().min().unwrap_or(&1) as f64;
    for (ri, &(size, dist)) in combos.iter().enumerate() {
        for (pi, &(wl, mode)) in panels.iter().enumerate() {
            let (band, ci) = (pi / cols, pi % cols);
            let x0 = ml + ci as f64 * (pw + 50.0);
            let y0 = mt + band as f64 * (band_h + band_gap) + ri as f64 * (ph + 45.0) + 15.0;
            let cell: Vec<&Row> = rows
                .iter()
                .filter(|r| {
                    r.size == size
                        && r.dist == dist
                        && r.workload == wl
                        && r.mode == mode
                        && r.r.ops_per_sec > 0.0
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-weight="bold" font-size="10.5">{} · {} names · {}</text>"#,
                x0,
                y0 - 4.0,
                cell_label(wl, mode),
                fmt_size(size),
                dist.label()
            );
            let _ = writeln!(
                s,
                r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>"##
            );
            if cell.is_empty() {
                continue;
            }
            let lo = cell
                .iter()
                .map(|r| r.r.ops_per_sec / 1e6)
                .fold(f64::MAX, f64::min);
            let hi = cell
                .iter()
                .map(|r| r.r.ops_per_sec / 1e6)
                .fold(0.0, f64::max);
            let (llo, lhi) = (
                lo.log10().floor(),
                hi.log10().ceil().max(lo.log10().floor() + 1.0),
            );
            let ymap = |m: f64| y0 + ph - (m.log10() - llo) / (lhi - llo) * ph;
            let xmap = |t: f64| {
                if tmax > tmin {
                    x0 + 20.0 + (t.log2() - tmin.log2()) / (tmax.log2() - tmin.log2()) * (pw - 40.0)
                } else {
                    x0 + pw / 2.0
                }
            };
            // Grid: decades.
            let mut e = llo;
            while e <= lhi {
                let y = ymap(10f64.powf(e));
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                    x0 + pw,
                    x0 - 3.0,
                    y + 4.0,
                    decade(e)
                );
                e += 1.0;
            }
            for &t in &cfg.threads {
                let x = xmap(t as f64);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#bbb"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#555">{t}</text>"##,
                    y0 + ph,
                    y0 + ph + 4.0,
                    y0 + ph + 15.0
                );
            }
            // Lines, genreg last so it is on top.
            let order: Vec<usize> = (1..peers.len()).chain([0]).collect();
            for k in order {
                let peer = peers[k].0;
                let mut pts: Vec<(f64, f64)> = cell
                    .iter()
                    .filter(|r| r.peer == peer)
                    .map(|r| (xmap(r.threads as f64), ymap(r.r.ops_per_sec / 1e6)))
                    .collect();
                pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                let color = COLORS[k % COLORS.len()];
                let w = if k == 0 { 3.5 } else { 1.5 };
                if pts.len() > 1 {
                    let d: Vec<String> =
                        pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let _ = writeln!(
                        s,
                        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{w}"/>"#,
                        d.join(" ")
                    );
                }
                for (x, y) in pts {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="{}" fill="{color}"/>"#,
                        w + 0.5
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{ml}" y="{}" fill="#555">x: threads (log2). Each point: median of the repetitions; ratios in BENCHMARKS.md. Machine shared and noisy: compare lines within a panel, not absolute values.</text>"##,
        height - foot + 14.0
    );
    if !hidden.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{ml}" y="{}" fill="#555">Not drawn, in the CSV and the tables: {}.</text>"##,
            height - 6.0,
            hidden.join(", ")
        );
    }
    s.push_str("</svg>\n");
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, s)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let mut c = Child {
            mode: &args[2],
            peer: &args[3],
            n: args[4].parse().expect("n"),
            out: None,
        };
        each_peer(&mut c);
        // Not in the grids, for `benches/instr.sh` only: genreg with its event log on. Behind a
        // feature: a second instantiation of genreg's paths in this binary changes how the
        // compiler inlines the first one's (reads measured ~10% more instructions with it).
        #[cfg(feature = "events-peer")]
        c.visit::<GenregWith<true>>();
        println!("RESULT {}", c.out.expect("unknown peer"));
        return;
    }
    let cfg = parse_args();
    let machine = machine();
    if let Some(i) = args.iter().position(|a| a == "--replot") {
        // Redraw the chart (and the markdown tables) from a CSV of an earlier run.
        let path = args.get(i + 1).expect("--replot CSV");
        let (cfg, rows) = read_csv(path, cfg);
        let md = print_tables(&cfg, &rows);
        let _ = std::fs::write(path.replace(".csv", ".md"), md);
        write_svg(&cfg.svg, &cfg, &rows, &machine).expect("write svg");
        println!("wrote {}", cfg.svg);
        return;
    }
    let t0 = Instant::now();
    println!("genreg throughput harness — {machine}");
    println!(
        "{}: sizes {:?}, threads {:?}, {} s per cell, median of {}, workloads {:?}, lookup modes {:?} (of {:?})",
        if cfg.quick { "quick pass" } else { "full run" },
        cfg.sizes,
        cfg.threads,
        cfg.secs,
        cfg.reps,
        cfg.workloads.iter().map(|w| w.label()).collect::<Vec<_>>(),
        cfg.modes.iter().map(|m| m.label()).collect::<Vec<_>>(),
        WORKLOADS
            .iter()
            .filter(|w| w.has_modes())
            .map(|w| w.label())
            .collect::<Vec<_>>()
    );
    let max_threads = *cfg.threads.iter().max().unwrap();
    let mut rows = Vec::new();
    let total = cfg.sizes.len()
        * cfg
            .workloads
            .iter()
            .map(|&w| cfg.modes_of(w).len())
            .sum::<usize>()
        * cfg.dists.len()
        * cfg.threads.len();
    let mut done = 0;
    for &size in &cfg.sizes {
        let u = Universe::new(size, max_threads);
        run_size(&cfg, &u, t0, &mut rows, &mut done, total);
    }
    println!(
        "(each line: genreg's Mops/s, then genreg's throughput / each peer's: above 1 = genreg ahead)"
    );
    let md = print_tables(&cfg, &rows);
    // genreg's failures fail the run; a peer's are its own findings, reported and kept in
    // the CSV, but they do not make this crate's CI fail.
    let failures: u64 = rows
        .iter()
        .filter(|r| r.peer == "genreg")
        .map(|r| r.r.failures)
        .sum();
    let peer_failures: u64 = rows
        .iter()
        .filter(|r| r.peer != "genreg")
        .map(|r| r.r.failures)
        .sum();

    let mut extras_md = String::new();
    if cfg.extras {
        let n = cfg.grow_to;
        println!("\nInsert latency while growing from empty to {n} names (one thread, ns):");
        let _ = writeln!(
            extras_md,
            "\n#### Insert latency while growing from empty (ns; one thread; a fresh process per map)\n\n| peer | names | p50 | p99 | p99.9 | max | mean | max CPU time |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for (peer, _, cheap) in peer_names() {
            // Copy-on-write: each insert copies the map; growing to 1M would take hours.
            let n = if cheap {
                n
            } else {
                n.min(if cfg.quick { 5_000 } else { 20_000 })
            };
            match run_child("lat", peer, n) {
                Some(r) => {
                    let f: Vec<&str> = r.split_whitespace().collect();
                    println!(
                        "  {peer:<28} n={n:<8} p50 {:>6}  p99 {:>7}  p99.9 {:>8}  max {:>10}  mean {:>7}  max CPU {:>9}",
                        f[0], f[1], f[2], f[3], f[4], f[5]
                    );
                    let _ = writeln!(
                        extras_md,
                        "| {peer} | {n} | {} | {} | {} | {} | {} | {} |",
                        f[0], f[1], f[2], f[3], f[4], f[5]
                    );
                }
                None => println!("  {peer}: failed"),
            }
        }
        println!(
            "\nMemory per entry ({n} names of {NAME_LEN} bytes; RSS delta / entries; a fresh process per map; values not counted):"
        );
        let _ = writeln!(
            extras_md,
            "\n#### Memory per entry ({n} names of {NAME_LEN} bytes, RSS delta / entries, fresh process per map, values excluded)\n\n| peer | bytes/entry | vs genreg |\n| --- | --- | --- |"
        );
        let mut genreg_mem = f64::NAN;
        for (peer, _, _) in peer_names() {
            match run_child("mem", peer, n).and_then(|r| r.trim().parse::<f64>().ok()) {
                Some(b) => {
                    if peer == "genreg" {
                        genreg_mem = b;
                    }
                    println!("  {peer:<28} {b:>7.1} B/entry");
                    let _ = writeln!(extras_md, "| {peer} | {b:.1} | {:.2}x |", b / genreg_mem);
                }
                None => println!("  {peer}: failed"),
            }
        }
    }

    match write_csv(&cfg.csv, &rows) {
        Ok(()) => println!("\nwrote {}", cfg.csv),
        Err(e) => eprintln!("could not write {}: {e}", cfg.csv),
    }
    match write_svg(&cfg.svg, &cfg, &rows, &machine) {
        Ok(()) => println!("wrote {}", cfg.svg),
        Err(e) => eprintln!("could not write {}: {e}", cfg.svg),
    }
    let md_path = cfg.csv.replace(".csv", ".md");
    if std::fs::write(&md_path, format!("{md}{extras_md}")).is_ok() {
        println!("wrote {md_path} (the tables above, as markdown)");
    }
    println!("total {:.0} s", t0.elapsed().as_secs_f64());
    if peer_failures > 0 {
        eprintln!(
            "\n{peer_failures} check failures in peers (not genreg; see FAILURE lines): reported, not fatal"
        );
    }
    if failures > 0 {
        eprintln!(
            "\n{failures} CHECK FAILURES in genreg: an operation that must succeed failed (see FAILURE lines)"
        );
        std::process::exit(1);
    }
    println!("all of genreg's results checked: 0 failures");
}
