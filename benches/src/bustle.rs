//! conc-map-bench's three workloads (ReadHeavy, Exchange, RapidGrow), run by its own harness,
//! bustle, against genreg and the peers of the throughput harness (`benches/benches/peers/mod.rs`).
//!
//! ```text
//! cargo run --release -p genreg-bench --bin bustle             # full run (~2 min here)
//! cargo run --release -p genreg-bench --bin bustle -- --quick  # one short pass (~3 s, CI)
//! ```
//!
//! Options: `--quick`, `--threads 1,2`, `--reps R` (default 3: each cell is run R times, the peers
//! interleaved and their order rotated every repetition, and the median kept), `--cap-log2 N`
//! (bustle's initial capacity, 2^N; default 20, 14 with `--quick`), `--ops F` (operations as a
//! multiple of the capacity; default 1, conc-map-bench's), `--only WORKLOAD` (a prefix of a
//! workload's name), `--csv PATH` (default `target/bustle.csv`). Run it from the repository root.
//!
//! The workloads are conc-map-bench's (its `src/workloads.rs`): the mixes, the prefill fractions
//! and the number of operations (1 × the capacity, its default) are its own; the capacity is
//! 2^20 instead of its 2^25 (33.5M names and operations per cell: hours for the nine peers on
//! two shared cores). bustle asserts every boolean result: `get` is true iff the name is bound,
//! `insert` true iff the name was free and is now bound, `remove` true iff it unbound the name,
//! `update` true iff the name was bound and its value was replaced. A failed assertion is
//! reported as that peer's failure (genreg's makes the process exit with status 1).
//!
//! Each peer does exactly the work it does in the other benches, per call (no reusable
//! handle: conc-map-bench's adapters pin per operation): `get` is the peer's `peek` (a borrowed
//! read: genreg's `Registry::read`), `insert` its `register` (genreg: `register_detached`),
//! `remove` its plain remove by key (genreg: `Registry::unregister`), `update` its `peek` for the
//! tag then its `replace_if_same` (retried if it loses a race; genreg has no unconditional
//! replace). Keys are names: bustle's `u64` key becomes a 16-byte name when bustle makes the key,
//! not per operation.
//!
//! Throughput is timed by the mix threads themselves, from the first thread's first operation to
//! the last thread's last ([`PerOp`] says why); bustle's own figure goes to the CSV beside it.
//! The copy-on-write peer (arc-swap) sits out a cell whose writes would copy more than
//! [`COW_BUDGET`] entries in all, and the unsynchronised ceiling runs at 1 thread only.

use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bustle::{Collection, CollectionHandle, Measurement, Mix, Workload};

#[path = "../benches/peers/mod.rs"]
mod peers;
use peers::*;

// ---------------------------------------------------------------------------------------------
// Keys

/// Name length: 16 bytes, as in the throughput harness.
const NAME_LEN: usize = 16;

/// A bustle key as a name: `"ag-"` and 13 base-32 digits of the `u64` (lowest first), 16 bytes.
/// 13 digits hold 65 bits, so distinct `u64`s give distinct names (bustle requires it; 16 hex
/// digits would leave no room for a prefix). Made once, when bustle generates its keys.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key([u8; NAME_LEN]);

impl From<u64> for Key {
    fn from(mut x: u64) -> Key {
        const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
        let mut b = [0u8; NAME_LEN];
        b[..3].copy_from_slice(b"ag-");
        for d in &mut b[3..] {
            *d = DIGITS[(x & 31) as usize];
            x >>= 5;
        }
        Key(b)
    }
}

impl Key {
    #[inline(always)]
    fn as_str(&self) -> &str {
        // SAFETY: only ASCII bytes are ever written (`From<u64>`).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// One generic adapter: bustle's `Collection` over any `Peer`

/// Values the names are bound to, one per handle in turn, so that threads do not contend on
/// one reference count. Kept alive by the table (the weak-value peer's bindings stay alive).
const VALS: usize = 64;

/// How many of the next table's handles are bustle's prefill handles: bustle pins one handle
/// per thread to prefill, then one per thread for the timed mix. Set before each run.
static PREFILL_HANDLES: AtomicUsize = AtomicUsize::new(0);
/// Operations each mix thread runs in the next run (bustle's `total_ops / threads`).
static OPS_PER_THREAD: AtomicUsize = AtomicUsize::new(0);
/// The mix threads' spans of the last run: (first operation's start, last operation's end,
/// operations).
static SPANS: Mutex<Vec<(Instant, Instant, usize)>> = Mutex::new(Vec::new());

struct Shared<P> {
    peer: P,
    vals: Vec<Val>,
    pins: AtomicUsize,
    prefill_handles: usize,
    ops_per_thread: usize,
    /// Serialises the copy-on-write peer's batched prefill (see [`PerOp::batch`]).
    bulk: Mutex<()>,
}

/// A peer as a bustle `Collection`.
struct Table<P: Peer>(Arc<Shared<P>>);

impl<P: Peer> Collection for Table<P> {
    type Handle = PerOp<P>;

    fn with_capacity(capacity: usize) -> Self {
        Table(Arc::new(Shared {
            peer: P::with_capacity(capacity),
            vals: (0..VALS as u64)
                .map(|id| Val::new(Payload { id }))
                .collect(),
            pins: AtomicUsize::new(0),
            prefill_handles: PREFILL_HANDLES.load(Ordering::Relaxed),
            ops_per_thread: OPS_PER_THREAD.load(Ordering::Relaxed),
            bulk: Mutex::new(()),
        }))
    }

    fn pin(&self) -> PerOp<P> {
        let k = self.0.pins.fetch_add(1, Ordering::Relaxed);
        let prefill = k < self.0.prefill_handles;
        PerOp {
            shared: Arc::clone(&self.0),
            val: Arc::clone(&self.0.vals[k % VALS]),
            batch: (!P::CHEAP_WRITES && prefill).then(Vec::new),
            timed: !prefill,
            ops: self.0.ops_per_thread,
            done: 0,
            start: None,
            end: None,
        }
    }
}

impl<P: Peer> Drop for Table<P> {
    fn drop(&mut self) {
        // Untimed (every handle is gone): let genreg's deferred frees run now rather than
        // during the next peer's cell.
        self.0.peer.settle();
    }
}

/// bustle's per-thread handle: a reference to the table, and nothing pinned (every operation is
/// the peer's per-call operation).
///
/// It also times its thread's share of the mix, from its first operation to its last, because
/// bustle's own clock is read by its main thread between two barrier waits: on two cores shared
/// with three threads and other processes, that thread is often descheduled after the first
/// wait while the workers run, and a small cell then reads as absurdly fast (16,000 Mops/s was
/// seen). Two clock reads and a counter per thread, the same for every peer.
struct PerOp<P: Peer> {
    shared: Arc<Shared<P>>,
    val: Val,
    /// The copy-on-write peer's prefill (untimed): gathered here and bound in one copy when the
    /// handle is dropped, instead of one copy of the whole map per name (O(n²)).
    batch: Option<Vec<(String, Val)>>,
    /// A mix handle (not a prefill one).
    timed: bool,
    ops: usize,
    done: usize,
    start: Option<Instant>,
    end: Option<Instant>,
}

impl<P: Peer> PerOp<P> {
    #[inline(always)]
    fn op<R>(&mut self, f: impl FnOnce(&P, &Val) -> R) -> R {
        if self.done == 0 {
            self.start = Some(Instant::now());
        }
        let r = f(&self.shared.peer, &self.val);
        self.done += 1;
        if self.done == self.ops {
            self.end = Some(Instant::now());
        }
        r
    }
}

impl<P: Peer> CollectionHandle for PerOp<P> {
    type Key = Key;

    #[inline]
    fn get(&mut self, key: &Key) -> bool {
        self.op(|p, _| p.peek(key.as_str()).is_some())
    }

    #[inline]
    fn insert(&mut self, key: &Key) -> bool {
        if let Some(batch) = &mut self.batch {
            // bustle's keys are distinct; `bulk_register` asserts it.
            batch.push((key.as_str().to_owned(), Arc::clone(&self.val)));
            return true;
        }
        self.op(|p, v| p.register(key.as_str(), v).is_some())
    }

    #[inline]
    fn remove(&mut self, key: &Key) -> bool {
        self.op(|p, _| p.remove(key.as_str()))
    }

    #[inline]
    fn update(&mut self, key: &Key) -> bool {
        self.op(|p, v| {
            let name = key.as_str();
            loop {
                let Some((tag, _)) = p.peek(name) else {
                    return false;
                };
                if p.replace_if_same(name, tag, v).is_some() {
                    return true;
                }
                // Lost a race (rebound or replaced in between): read the new tag.
            }
        })
    }
}

impl<P: Peer> Drop for PerOp<P> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take()
            && !batch.is_empty()
        {
            let _one_at_a_time = self.shared.bulk.lock().unwrap();
            self.shared.peer.bulk_register(&mut batch.into_iter());
        }
        if self.timed
            && let (Some(start), Some(end)) = (self.start, self.end)
        {
            SPANS.lock().unwrap().push((start, end, self.done));
        }
    }
}

/// One run of one peer: (Mops/s timed by the mix threads, Mops/s by bustle's own clock).
fn run_peer<P: Peer>(w: &Workload) -> (f64, f64) {
    SPANS.lock().unwrap().clear();
    let m: Measurement = w.run_silently::<Table<P>>();
    let spans = std::mem::take(&mut *SPANS.lock().unwrap());
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    let ops: usize = spans.iter().map(|s| s.2).sum();
    let ours = match (first, last) {
        (Some(a), Some(b)) if b > a => ops as f64 / (b - a).as_secs_f64() / 1e6,
        _ => f64::NAN,
    };
    (ours, m.throughput / 1e6)
}

/// A peer, type-erased.
struct Entry {
    name: &'static str,
    concurrent: bool,
    cheap_writes: bool,
    run: fn(&Workload) -> (f64, f64),
}

struct Collect(Vec<Entry>);

impl Visit for Collect {
    fn visit<P: Peer>(&mut self) {
        self.0.push(Entry {
            name: P::NAME,
            concurrent: P::CONCURRENT,
            cheap_writes: P::CHEAP_WRITES,
            run: run_peer::<P>,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    ReadHeavy,
    Exchange,
    RapidGrow,
}

const KINDS: [Kind; 3] = [Kind::ReadHeavy, Kind::Exchange, Kind::RapidGrow];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::ReadHeavy => "ReadHeavy",
            Kind::Exchange => "Exchange",
            Kind::RapidGrow => "RapidGrow",
        }
    }

    /// conc-map-bench's mixes (its `src/workloads.rs`; not bustle's `Mix::read_heavy()`, which
    /// is 94/2/1/3 read/insert/remove/update).
    fn mix(self) -> Mix {
        let (read, insert, remove, update) = match self {
            Kind::ReadHeavy => (98, 1, 1, 0),
            Kind::Exchange => (10, 40, 40, 10),
            Kind::RapidGrow => (5, 80, 5, 10),
        };
        Mix {
            read,
            insert,
            remove,
            update,
            upsert: 0,
        }
    }

    /// conc-map-bench's prefill fractions.
    fn prefill(self) -> f64 {
        match self {
            Kind::ReadHeavy | Kind::Exchange => 0.75,
            Kind::RapidGrow => 0.0,
        }
    }

    fn describe(self, cfg: &Config) -> String {
        let m = self.mix();
        format!(
            "{} ({}% read, {}% insert, {}% remove, {}% update; capacity 2^{}, {:.0}% prefilled, {} operations)",
            self.label(),
            m.read,
            m.insert,
            m.remove,
            m.update,
            cfg.cap_log2,
            self.prefill() * 100.0,
            cfg.total_ops()
        )
    }
}

/// Entries the copy-on-write peer may copy in one cell's timed writes (~50 ns each here).
const COW_BUDGET: f64 = 2e7;

/// Why a peer sits a cell out, if it does.
fn skip_reason(e: &Entry, kind: Kind, threads: usize, cfg: &Config) -> Option<String> {
    if !e.concurrent && threads > 1 {
        return Some("unsynchronised: 1 thread only".into());
    }
    if !e.cheap_writes {
        let m = kind.mix();
        let ops = cfg.total_ops() as f64;
        let writes = ops * f64::from(m.insert + m.remove + m.update + m.upsert) / 100.0;
        let start = (1u64 << cfg.cap_log2) as f64 * kind.prefill();
        let growth = ops * (f64::from(m.insert) - f64::from(m.remove)) / 100.0;
        let mean = (start + growth / 2.0).max(1.0);
        if writes * mean > COW_BUDGET {
            return Some(format!(
                "every write copies the whole map: ~{:.0}k writes x ~{:.0}k entries",
                writes / 1e3,
                mean / 1e3
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Configuration

struct Config {
    quick: bool,
    threads: Vec<usize>,
    reps: usize,
    cap_log2: u8,
    ops: f64,
    kinds: Vec<Kind>,
    csv: String,
}

impl Config {
    fn total_ops(&self) -> usize {
        ((1usize << self.cap_log2) as f64 * self.ops) as usize
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
    let kinds = match value("--only") {
        Some(w) => KINDS
            .iter()
            .copied()
            .filter(|k| k.label().to_lowercase().starts_with(&w.to_lowercase()))
            .collect(),
        None => KINDS.to_vec(),
    };
    Config {
        quick,
        threads: value("--threads")
            .map(|s| {
                s.split(',')
                    .map(|x| x.parse().expect("--threads"))
                    .collect()
            })
            .unwrap_or_else(|| vec![1, 2]),
        reps: value("--reps")
            .map(|s| s.parse().expect("--reps"))
            .unwrap_or(3)
            .max(1),
        cap_log2: value("--cap-log2")
            .map(|s| s.parse().expect("--cap-log2"))
            .unwrap_or(if quick { 14 } else { 20 }),
        ops: value("--ops")
            .map(|s| s.parse().expect("--ops"))
            .unwrap_or(1.0),
        kinds,
        csv: value("--csv").unwrap_or_else(|| "target/bustle.csv".into()),
    }
}

/// One seed per (workload, threads, repetition): every peer of a repetition gets the same keys
/// and the same operation sequence (bustle's workload is deterministic at one thread).
fn seed(kind: Kind, threads: usize, rep: usize) -> [u8; 32] {
    let mut x =
        0x5EED_0000_0000_0000 ^ ((kind as u64) << 32) ^ ((threads as u64) << 16) ^ rep as u64;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Clone)]
enum Outcome {
    /// Median Mops/s of the repetitions, every repetition's, and the median by bustle's own
    /// clock (see [`PerOp`]).
    Ran {
        mops: f64,
        all: Vec<f64>,
        bustle_clock: f64,
    },
    Skipped(String),
    Failed,
}

struct Row {
    kind: Kind,
    threads: usize,
    peer: &'static str,
    outcome: Outcome,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn genreg_mops(rows: &[Row], kind: Kind, threads: usize) -> Option<f64> {
    rows.iter().find_map(|r| match r.outcome {
        Outcome::Ran { mops, .. }
            if r.kind == kind && r.threads == threads && r.peer == "genreg" =>
        {
            Some(mops)
        }
        _ => None,
    })
}

fn cell(rows: &[Row], kind: Kind, threads: usize, peer: &str) -> String {
    let Some(r) = rows
        .iter()
        .find(|r| r.kind == kind && r.threads == threads && r.peer == peer)
    else {
        return "-".into();
    };
    match &r.outcome {
        Outcome::Ran { mops, .. } => match genreg_mops(rows, kind, threads) {
            Some(g) if peer != "genreg" => format!("{mops:.2} ({:.2}x)", g / mops),
            _ => format!("{mops:.2}"),
        },
        Outcome::Skipped(_) => "skipped".into(),
        Outcome::Failed => "FAILED".into(),
    }
}

fn markdown(cfg: &Config, rows: &[Row], peers: &[&'static str]) -> String {
    let mut md = String::from(
        "\nThroughput timed by the mix threads (first operation to last); bustle's own clock in the CSV.\n",
    );
    for &kind in &cfg.kinds {
        let _ = writeln!(
            md,
            "\n#### {}\n\nMops/s, median of {}; in brackets: genreg's throughput / the peer's.\n",
            kind.describe(cfg),
            cfg.reps
        );
        let mut head = String::from("| peer |");
        let mut sep = String::from("| --- |");
        for t in &cfg.threads {
            let _ = write!(head, " {t} thr |");
            sep.push_str(" ---: |");
        }
        let _ = writeln!(md, "{head}\n{sep}");
        for &p in peers {
            let mut line = format!("| {p} |");
            for &t in &cfg.threads {
                let _ = write!(line, " {} |", cell(rows, kind, t, p));
            }
            let _ = writeln!(md, "{line}");
        }
        let mut notes: Vec<String> = Vec::new();
        for r in rows.iter().filter(|r| r.kind == kind) {
            if let Outcome::Skipped(why) = &r.outcome {
                let n = format!("{} skipped: {}", r.peer, why);
                if !notes
                    .iter()
                    .any(|x| x.starts_with(&format!("{} skipped", r.peer)))
                {
                    notes.push(n);
                }
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(md);
            for n in notes {
                let _ = writeln!(md, "- {n}");
            }
        }
    }
    md
}

fn write_csv(path: &str, rows: &[Row]) -> std::io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut s = String::from(
        "workload,threads,peer,mops_median,genreg_over_peer,mops_reps,bustle_clock_mops_median,status\n",
    );
    for r in rows {
        let mut f: [String; 5] = Default::default();
        match &r.outcome {
            Outcome::Ran {
                mops,
                all,
                bustle_clock,
            } => {
                f[0] = format!("{mops:.4}");
                if let Some(g) = genreg_mops(rows, r.kind, r.threads) {
                    f[1] = format!("{:.4}", g / mops);
                }
                f[2] = all
                    .iter()
                    .map(|x| format!("{x:.4}"))
                    .collect::<Vec<_>>()
                    .join(";");
                f[3] = format!("{bustle_clock:.4}");
                f[4] = "ok".into();
            }
            Outcome::Skipped(why) => f[4] = format!("skipped: {why}"),
            Outcome::Failed => f[4] = "failed".into(),
        }
        let _ = writeln!(
            s,
            "{},{},\"{}\",{},{},{},{},\"{}\"",
            r.kind.label(),
            r.threads,
            r.peer,
            f[0],
            f[1],
            f[2],
            f[3],
            f[4]
        );
    }
    std::fs::write(path, s)
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let cfg = parse_args();
    let mut c = Collect(Vec::new());
    each_peer(&mut c);
    let entries = c.0;
    let peers: Vec<&'static str> = entries.iter().map(|e| e.name).collect();
    println!("{}", machine());
    println!(
        "bustle{}: threads {:?}, capacity 2^{}, {} operations per cell, median of {}, workloads {:?}",
        if cfg.quick { " (quick)" } else { "" },
        cfg.threads,
        cfg.cap_log2,
        cfg.total_ops(),
        cfg.reps,
        cfg.kinds.iter().map(|k| k.label()).collect::<Vec<_>>()
    );
    let t0 = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for &kind in &cfg.kinds {
        println!("\n{}", kind.describe(&cfg));
        for &threads in &cfg.threads {
            let mut active: Vec<&Entry> = Vec::new();
            for e in &entries {
                match skip_reason(e, kind, threads, &cfg) {
                    Some(why) => {
                        println!("  t={threads} {} skipped: {why}", e.name);
                        rows.push(Row {
                            kind,
                            threads,
                            peer: e.name,
                            outcome: Outcome::Skipped(why),
                        });
                    }
                    None => active.push(e),
                }
            }
            PREFILL_HANDLES.store(threads, Ordering::Relaxed);
            OPS_PER_THREAD.store(cfg.total_ops() / threads, Ordering::Relaxed);
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); active.len()];
            let mut bustle_rates: Vec<Vec<f64>> = vec![Vec::new(); active.len()];
            let mut failed = vec![false; active.len()];
            for rep in 0..cfg.reps {
                let mut w = Workload::new(threads, kind.mix());
                w.initial_capacity_log2(cfg.cap_log2)
                    .prefill_fraction(kind.prefill())
                    .operations(cfg.ops)
                    .seed(seed(kind, threads, rep));
                for k in 0..active.len() {
                    // Peers interleaved, their order rotated every repetition, so that the
                    // machine's noise falls on all of them alike.
                    let j = (k + rep) % active.len();
                    if failed[j] {
                        continue;
                    }
                    match catch_unwind(AssertUnwindSafe(|| (active[j].run)(&w))) {
                        Ok((ours, theirs)) => {
                            rates[j].push(ours);
                            bustle_rates[j].push(theirs);
                        }
                        Err(_) => {
                            println!(
                                "  FAILURE: {} failed bustle's checks (above)",
                                active[j].name
                            );
                            failed[j] = true;
                        }
                    }
                }
            }
            let mut line = format!(
                "[{:>5.0}s] {} t={threads}:",
                t0.elapsed().as_secs_f64(),
                kind.label()
            );
            let mut g = f64::NAN;
            for (j, e) in active.iter().enumerate() {
                let outcome = if failed[j] {
                    let _ = write!(line, " | {} FAILED", e.name);
                    Outcome::Failed
                } else {
                    let mops = median(&rates[j]);
                    if e.name == "genreg" {
                        g = mops;
                        let _ = write!(line, " genreg {mops:.2} Mops/s");
                    } else {
                        let _ = write!(line, " | {} {mops:.2} ({:.2}x)", e.name, g / mops);
                    }
                    Outcome::Ran {
                        mops,
                        all: rates[j].clone(),
                        bustle_clock: median(&bustle_rates[j]),
                    }
                };
                rows.push(Row {
                    kind,
                    threads,
                    peer: e.name,
                    outcome,
                });
            }
            println!("{line}");
        }
    }
    let md = markdown(&cfg, &rows, &peers);
    println!("{md}");
    match write_csv(&cfg.csv, &rows) {
        Ok(()) => println!("wrote {}", cfg.csv),
        Err(e) => eprintln!("could not write {}: {e}", cfg.csv),
    }
    println!("total {:.0}s", t0.elapsed().as_secs_f64());
    let genreg_failed = rows
        .iter()
        .any(|r| r.peer == "genreg" && matches!(r.outcome, Outcome::Failed));
    let peer_failures = rows
        .iter()
        .filter(|r| r.peer != "genreg" && matches!(r.outcome, Outcome::Failed))
        .count();
    if peer_failures > 0 {
        println!("{peer_failures} peer cell(s) failed bustle's checks: reported, not fatal");
    }
    if genreg_failed {
        eprintln!("genreg failed bustle's checks");
        std::process::exit(1);
    }
}
