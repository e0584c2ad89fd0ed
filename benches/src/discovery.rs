//! Discovery's costs, side by side in one run (BENCHMARKS.md, "Discovery: metadata queries, and what the plain registry pays for them"):
//!
//! ```sh
//! cargo run --release -p genreg-bench --bin discovery            # 1k and 1M entries, ~2 min
//! cargo run --release -p genreg-bench --bin discovery -- --quick # 1k and 100k, a short pass (CI)
//! cargo run --release -p genreg-bench --bin discovery -- --sizes 1000,1000000 --reps 5
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*prof_loop*' \
//!     target/release/discovery --child find10 1000 1000   # instructions: OP, N times, SIZE entries
//! ```
//!
//! Every entry carries metadata: a kind (`kind-{i % 4}`), a filler capability (`f{i % 16}`),
//! and, by position, `mid` (exactly 1,000 entries; at 1k entries, all of them), `some`
//! (exactly 100) and `rare` (exactly 10), spread evenly over the names (an entry with `rare`
//! has `some` and `mid` too). The value is an `Arc<Agent>` that also holds its capability
//! list, as a user without discovery would keep it. Three ways to answer a query, all alive at
//! once over the same entries, each returning owned `(name, tag, value)` results sorted by name:
//!
//! - **genreg**: `find_by_capability` / `best_match` (the index, checked against the table);
//! - **scan `entries()`**: the scan a user would write with the public API: `entries()`, then
//!   filter on the capabilities in the value;
//! - **scan `pin().iter()`**: the cheapest scan (no copy of the entries it rejects);
//! - **hand-rolled index**: a `DashMap<capability, BTreeMap<name, Tag>>` kept next to the
//!   registry by the user, each hit then validated with `get_if(name, tag)` (a careful user:
//!   the candidates are copied out before the registry is called, no `Ref` held across it).
//!
//! Each figure is the median over the repetitions (methods interleaved, order rotating) of the
//! mean time per query over a batch of at least `--ms` milliseconds. Then the cost of a
//! registration: a `register_detached` + `unregister_if_same` cycle without metadata, with
//! metadata (a shared `Arc<Metadata>`, a kind and 3 capabilities), and without metadata plus
//! the hand-rolled index's upkeep for the same 3 capabilities. Every result is checked against
//! the others (same names, same count); a mismatch panics.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use genreg::{Metadata, Registry, Tag};

/// A value that keeps its own capability list (what a scan filters on).
struct Agent {
    #[allow(dead_code)] // carried, as a real value would be
    id: usize,
    caps: Caps,
}

impl Agent {
    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| &**c == cap)
    }
}

type V = Arc<Agent>;
/// What every method returns per hit.
type Hit = (String, Tag, V);
/// The hand-rolled index: capability -> name -> tag.
type SideIndex = DashMap<String, BTreeMap<String, Tag>>;

const RARE: &str = "rare"; // 10 entries
const SOME: &str = "some"; // 100 entries
const MID: &str = "mid"; // 1,000 entries
const BEST: [&str; 3] = [RARE, SOME, MID];

fn name(i: usize) -> String {
    format!("agent-{i:08}")
}

/// (kind, filler capability, level: 0 none, 1 `mid`, 2 and `some`, 3 and `rare`).
type Combo = (usize, usize, usize);
/// A capability list, shared among the values that have it.
type Caps = Arc<[Box<str>]>;

/// Kind and capabilities of entry `i` of `n`.
fn combo(i: usize, n: usize) -> Combo {
    let level = if i.is_multiple_of(n / 10) {
        3
    } else if i.is_multiple_of(n / 100) {
        2
    } else if i.is_multiple_of(n / 1000) {
        1
    } else {
        0
    };
    (i % 4, i % 16, level)
}

fn caps_of(filler: usize, level: usize) -> Vec<String> {
    let mut caps = vec![format!("f{filler}")];
    caps.extend([MID, SOME, RARE][..level].iter().map(|c| c.to_string()));
    caps
}

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Mean ns per call of `f` over a batch of at least `min` (and at least one call).
///
/// The batch ends with a 4 KiB allocation: glibc defers the consolidation of freed small chunks
/// to the next allocation too large for them, so without it the 1M strings a scan of
/// `entries()` frees would be consolidated (~70 ms) inside whichever method runs next.
fn time_ns<R>(min: Duration, mut f: impl FnMut() -> R) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while calls == 0 || start.elapsed() < min {
        black_box(f());
        calls += 1;
    }
    drop(black_box(vec![0u8; 4096]));
    start.elapsed().as_nanos() as f64 / calls as f64
}

struct World {
    n: usize,
    reg: Registry<V>,
    side: SideIndex,
}

fn build(n: usize) -> (World, f64, f64) {
    let before = rss_mb();
    let reg: Registry<V> = Registry::builder().capacity(n).build();
    let mut metas: HashMap<Combo, (Arc<Metadata>, Caps)> = HashMap::new();
    let mut tags = Vec::with_capacity(n);
    for i in 0..n {
        let key = combo(i, n);
        let (meta, caps) = metas
            .entry(key)
            .or_insert_with(|| {
                let (kind, filler, level) = key;
                let caps = caps_of(filler, level);
                let meta = Metadata::builder()
                    .kind(format!("kind-{kind}"))
                    .capabilities(caps.iter().cloned())
                    .build()
                    .unwrap();
                let caps: Caps = caps.into_iter().map(String::into_boxed_str).collect();
                (Arc::new(meta), caps)
            })
            .clone();
        let value = Arc::new(Agent { id: i, caps });
        let tag = reg
            .with_metadata(meta)
            .register_detached(&name(i), value)
            .unwrap();
        tags.push(tag);
    }
    let with_reg = rss_mb();
    // The hand-rolled index over the same bindings.
    let side: SideIndex = DashMap::new();
    for (i, tag) in tags.into_iter().enumerate() {
        let (_, filler, level) = combo(i, n);
        for c in caps_of(filler, level) {
            side.entry(c).or_default().insert(name(i), tag);
        }
    }
    let with_side = rss_mb();
    (
        World { n, reg, side },
        with_reg - before,
        with_side - with_reg,
    )
}

fn genreg_find(w: &World, cap: &str) -> Vec<Hit> {
    w.reg
        .find_by_capability(cap)
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.tag, m.value))
        .collect()
}

fn scan_entries(w: &World, cap: &str) -> Vec<Hit> {
    w.reg
        .entries()
        .into_iter()
        .filter(|(_, e)| e.value().has(cap))
        .map(|(n, e)| (n, e.tag(), e.into_value()))
        .collect()
}

fn scan_iter(w: &World, cap: &str) -> Vec<Hit> {
    let pinned = w.reg.pin();
    let mut out: Vec<Hit> = pinned
        .iter()
        .filter(|e| e.value().has(cap))
        .map(|e| (e.name().to_owned(), e.tag(), e.value().clone()))
        .collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

fn side_find(w: &World, cap: &str) -> Vec<Hit> {
    // Copy the candidates out first: no `Ref` is held while the registry is called.
    let candidates: Vec<(String, Tag)> = match w.side.get(cap) {
        Some(set) => set.iter().map(|(n, t)| (n.clone(), *t)).collect(),
        None => return Vec::new(),
    };
    candidates
        .into_iter()
        .filter_map(|(n, t)| w.reg.get_if(&n, t).map(|v| (n, t, v)))
        .collect()
}

/// Best of `caps`: most of them held, ties broken by the least name.
fn score(v: &Agent, caps: &[&str]) -> usize {
    caps.iter().filter(|c| v.has(c)).count()
}

fn pick(hits: impl Iterator<Item = Hit>, caps: &[&str]) -> Option<Hit> {
    // Names ascending: a later one wins only if strictly better.
    let mut best: Option<(usize, Hit)> = None;
    for h in hits {
        let s = score(&h.2, caps);
        if s > 0 && best.as_ref().is_none_or(|(bs, _)| s > *bs) {
            best = Some((s, h));
        }
    }
    best.map(|(_, h)| h)
}

fn genreg_best(w: &World) -> Option<Hit> {
    w.reg
        .best_match(&BEST)
        .unwrap()
        .map(|m| (m.name, m.tag, m.value))
}

fn scan_entries_best(w: &World) -> Option<Hit> {
    let all = w.reg.entries();
    pick(
        all.into_iter().map(|(n, e)| (n, e.tag(), e.into_value())),
        &BEST,
    )
}

fn scan_iter_best(w: &World) -> Option<Hit> {
    let pinned = w.reg.pin();
    let mut best: Option<(usize, Hit)> = None;
    for e in pinned.iter() {
        let s = score(e.value(), &BEST);
        let better = s > 0
            && best
                .as_ref()
                .is_none_or(|(bs, b)| s > *bs || (s == *bs && e.name() < b.0.as_str()));
        if better {
            best = Some((s, (e.name().to_owned(), e.tag(), e.value().clone())));
        }
    }
    best.map(|(_, h)| h)
}

fn side_best(w: &World) -> Option<Hit> {
    let mut candidates: BTreeMap<String, Tag> = BTreeMap::new();
    for c in BEST {
        if let Some(set) = w.side.get(c) {
            candidates.extend(set.iter().map(|(n, t)| (n.clone(), *t)));
        }
    }
    pick(
        candidates
            .into_iter()
            .filter_map(|(n, t)| w.reg.get_if(&n, t).map(|v| (n, t, v))),
        &BEST,
    )
}

const METHODS: [&str; 4] = [
    "genreg",
    "scan entries()",
    "scan pin().iter()",
    "hand-rolled DashMap index",
];

fn names_of(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.0.as_str()).collect()
}

/// Median ns per query of each method, for `find_by_capability(cap)`.
fn bench_find(w: &World, cap: &str, expect: usize, reps: usize, min: Duration) -> Vec<f64> {
    // Check first: every method finds the same `expect` names.
    let reference = genreg_find(w, cap);
    assert_eq!(
        reference.len(),
        expect,
        "{cap}: genreg found {}",
        reference.len()
    );
    for other in [scan_entries(w, cap), scan_iter(w, cap), side_find(w, cap)] {
        assert_eq!(
            names_of(&other),
            names_of(&reference),
            "{cap}: methods disagree"
        );
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); METHODS.len()];
    for rep in 0..reps {
        for k in 0..METHODS.len() {
            let k = (k + rep) % METHODS.len();
            let t = match k {
                0 => time_ns(min, || genreg_find(w, cap)),
                1 => time_ns(min, || scan_entries(w, cap)),
                2 => time_ns(min, || scan_iter(w, cap)),
                _ => time_ns(min, || side_find(w, cap)),
            };
            times[k].push(t);
        }
    }
    times.into_iter().map(median).collect()
}

fn bench_best(w: &World, reps: usize, min: Duration) -> Vec<f64> {
    let reference = genreg_best(w).expect("a best match");
    assert_eq!(reference.0, name(0));
    for other in [scan_entries_best(w), scan_iter_best(w), side_best(w)] {
        assert_eq!(other.map(|h| h.0).as_deref(), Some(reference.0.as_str()));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); METHODS.len()];
    for rep in 0..reps {
        for k in 0..METHODS.len() {
            let k = (k + rep) % METHODS.len();
            let t = match k {
                0 => time_ns(min, || genreg_best(w)),
                1 => time_ns(min, || scan_entries_best(w)),
                2 => time_ns(min, || scan_iter_best(w)),
                _ => time_ns(min, || side_best(w)),
            };
            times[k].push(t);
        }
    }
    times.into_iter().map(median).collect()
}

const CYCLES: [&str; 3] = [
    "without metadata",
    "with metadata (kind + 3 capabilities)",
    "without metadata + hand-rolled index upkeep",
];
const POOL: usize = 1024;
const NEW_CAPS: [&str; 3] = ["c-new-1", "c-new-2", "c-new-3"];

/// What a registration cycle registers: fresh names, one value, one shared metadata.
struct Cycle {
    pool: Vec<String>,
    value: V,
    meta: Arc<Metadata>,
}

impl Cycle {
    fn new() -> Cycle {
        let meta = Metadata::builder()
            .kind("kind-new")
            .capabilities(NEW_CAPS)
            .build()
            .unwrap();
        let caps: Caps = NEW_CAPS.iter().map(|c| Box::from(*c)).collect();
        Cycle {
            pool: (0..POOL).map(|i| format!("new-{i:06}")).collect(),
            value: Arc::new(Agent {
                id: usize::MAX,
                caps,
            }),
            meta: Arc::new(meta),
        }
    }

    /// The pool once: register_detached + unregister_if_same, without metadata.
    fn plain(&self, w: &World) {
        for n in &self.pool {
            let tag = w.reg.register_detached(n, Arc::clone(&self.value)).unwrap();
            w.reg.unregister_if_same(n, tag).unwrap();
        }
    }

    /// The same, with metadata.
    fn meta(&self, w: &World) {
        for n in &self.pool {
            let with = w.reg.with_metadata(Arc::clone(&self.meta));
            let tag = with.register_detached(n, Arc::clone(&self.value)).unwrap();
            w.reg.unregister_if_same(n, tag).unwrap();
        }
    }

    /// Without metadata, plus the hand-rolled index's upkeep.
    fn side(&self, w: &World) {
        for n in &self.pool {
            let tag = w.reg.register_detached(n, Arc::clone(&self.value)).unwrap();
            for c in NEW_CAPS {
                w.side
                    .entry(c.to_owned())
                    .or_default()
                    .insert(n.clone(), tag);
            }
            w.reg.unregister_if_same(n, tag).unwrap();
            for c in NEW_CAPS {
                if let Some(mut set) = w.side.get_mut(c) {
                    set.remove(n.as_str());
                }
            }
        }
    }
}

/// ns per register_detached + unregister_if_same cycle, on fresh names, for each of `CYCLES`.
fn bench_cycle(w: &World, reps: usize, min: Duration) -> Vec<f64> {
    let cycle = Cycle::new();
    let len = w.reg.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); CYCLES.len()];
    for rep in 0..reps {
        for k in 0..CYCLES.len() {
            let k = (k + rep) % CYCLES.len();
            // One call = the whole pool once (POOL cycles).
            let per_pool = match k {
                0 => time_ns(min, || cycle.plain(w)),
                1 => time_ns(min, || cycle.meta(w)),
                _ => time_ns(min, || cycle.side(w)),
            };
            times[k].push(per_pool / POOL as f64);
        }
    }
    assert_eq!(w.reg.len(), len, "every cycle undone");
    assert!(w.reg.find_by_capability(NEW_CAPS[0]).unwrap().is_empty());
    times.into_iter().map(median).collect()
}

/// `--child OP N SIZE` (for `valgrind --tool=callgrind --toggle-collect='*prof_loop*'`): builds
/// SIZE entries, then runs OP N times in a loop function of its own, so that callgrind counts
/// exactly OP. Prints a checksum.
fn child(op: &str, n: usize, size: usize) {
    let (w, _, _) = build(size);
    let cycle = Cycle::new();
    let sum = match op {
        "find10" => prof_loop_find(&w, RARE, n, genreg_find),
        "find1000" => prof_loop_find(&w, MID, n, genreg_find),
        "side10" => prof_loop_find(&w, RARE, n, side_find),
        "side1000" => prof_loop_find(&w, MID, n, side_find),
        "best" => prof_loop_best(&w, n, genreg_best),
        "side-best" => prof_loop_best(&w, n, side_best),
        // N pools of POOL cycles each.
        "cycle" => prof_loop_cycle(&w, &cycle, n, Cycle::plain),
        "cycle-meta" => prof_loop_cycle(&w, &cycle, n, Cycle::meta),
        "cycle-side" => prof_loop_cycle(&w, &cycle, n, Cycle::side),
        // The bound's cost (`Builder::max_entries`, issue 12): the plain cycle on the same
        // entries with a bound far above them, against "cycle".
        "cycle-bounded" => {
            let bounded = World {
                n: w.n,
                reg: Registry::builder().max_entries(usize::MAX / 2).build(),
                side: SideIndex::default(),
            };
            for e in w.reg.entries() {
                let (name, entry) = e;
                bounded
                    .reg
                    .register_detached(&name, entry.into_value())
                    .unwrap();
            }
            prof_loop_cycle(&bounded, &cycle, n, Cycle::plain)
        }
        _ => panic!("unknown op {op}"),
    };
    println!("RESULT {sum}");
}

#[inline(never)]
fn prof_loop_find(w: &World, cap: &str, n: usize, f: fn(&World, &str) -> Vec<Hit>) -> usize {
    (0..n).map(|_| black_box(f(w, cap)).len()).sum()
}

#[inline(never)]
fn prof_loop_best(w: &World, n: usize, f: fn(&World) -> Option<Hit>) -> usize {
    (0..n)
        .map(|_| black_box(f(w)).map_or(0, |h| h.0.len()))
        .sum()
}

#[inline(never)]
fn prof_loop_cycle(w: &World, c: &Cycle, n: usize, f: fn(&Cycle, &World)) -> usize {
    for _ in 0..n {
        f(c, w);
    }
    w.reg.len()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let arg = |k: usize| args.get(i + k).cloned().expect("--child OP N SIZE");
        child(&arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap());
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let opt = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<usize> = match opt("--sizes") {
        Some(s) => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        None if quick => vec![1_000, 100_000],
        None => vec![1_000, 1_000_000],
    };
    let reps: usize = opt("--reps").map_or(if quick { 3 } else { 5 }, |r| r.parse().unwrap());
    let min = Duration::from_millis(
        opt("--ms").map_or(if quick { 5 } else { 50 }, |m| m.parse().unwrap()),
    );
    for &n in &sizes {
        assert!(n >= 1_000 && n % 1_000 == 0, "sizes are multiples of 1,000");
    }
    println!(
        "genreg discovery benchmark ({} pass: sizes {sizes:?}, median of {reps} interleaved \
         repetitions, batches of >= {} ms)",
        if quick { "quick" } else { "full" },
        min.as_millis()
    );

    let mut rows: Vec<(String, usize, Vec<f64>)> = Vec::new();
    let mut cycles: Vec<(usize, Vec<f64>)> = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let (w, reg_mb, side_mb) = build(n);
        println!(
            "\n{n} entries built in {:.1} s; RSS: registry with metadata and index +{reg_mb:.0} MB, \
             hand-rolled index +{side_mb:.0} MB; discovery index entries: {}",
            t.elapsed().as_secs_f64(),
            w.reg.discovery_index_len()
        );
        for (label, cap, expect) in [("10 matches", RARE, 10), ("1,000 matches", MID, 1_000)] {
            let r = bench_find(&w, cap, expect, reps, min);
            println!("  find_by_capability, {label}: {}", by_method(&r));
            rows.push((format!("find_by_capability, {label}"), w.n, r));
        }
        let r = bench_best(&w, reps, min);
        println!("  best_match over 3: {}", by_method(&r));
        rows.push((
            "best_match over 3 capabilities (held by 10 / 100 / 1,000)".into(),
            w.n,
            r,
        ));
        let c = bench_cycle(&w, reps, min);
        println!(
            "  registration cycle: {}",
            CYCLES
                .iter()
                .zip(&c)
                .map(|(m, t)| format!("{m} {t:.0} ns"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        cycles.push((n, c));
        drop(w); // free before the next size
    }

    println!("\n## Queries: median ns per query (in brackets: speed-up over the entries() scan)");
    println!(
        "| query | entries | genreg | scan `entries()` | scan `pin().iter()` | hand-rolled index |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (label, n, r) in &rows {
        let scan = r[1];
        let cell = |t: f64| {
            let x = scan / t;
            let prec = if x < 10.0 { 2 } else { 0 };
            format!("{} ({x:.prec$}×)", fmt_ns(t))
        };
        println!(
            "| {label} | {n} | {} | {} | {} | {} |",
            cell(r[0]),
            fmt_ns(r[1]),
            cell(r[2]),
            cell(r[3])
        );
    }
    println!("\n## Registration: register_detached + unregister_if_same, ns per cycle (median)");
    println!(
        "| entries | without metadata | with metadata | vs without | without + hand-rolled index | vs without |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, c) in &cycles {
        println!(
            "| {n} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.2}× |",
            c[0],
            c[1],
            c[1] / c[0],
            c[2],
            c[2] / c[0]
        );
    }
}

/// "method time, ..." for one query's timings, in `METHODS` order.
fn by_method(times: &[f64]) -> String {
    METHODS
        .iter()
        .zip(times)
        .map(|(m, t)| format!("{m} {}", fmt_ns(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}
