//! Criterion benches: genreg and every peer in the same group, so that ratios are side by side.
//!
//! `cargo bench -p genreg-bench --bench registry` runs everything (a few minutes); pass a filter
//! to run one group, e.g. `cargo bench -p genreg-bench --bench registry -- lookup_hit/1024`.
//! `benches/report.py` turns `target/criterion` into the ratio tables of BENCHMARKS.md.
//!
//! Groups (ids are `group/parameters/peer`), each comparing like with like:
//! - `lookup_hit/{names}/{len}B/{peer}`: one hit, through each peer's best read path (its
//!   reusable handle if it has one: genreg `Pinned`, papaya's pinned guard, scc `HashIndex`
//!   with one `Guard`, arc-swap's `Cache`; one guarded call otherwise). Borrowed: no clone.
//!   Not `Mutex<HashMap<Weak>>`, which must upgrade (clone) to read: see [`borrows`].
//! - `lookup_miss/{names}/{len}B/{peer}`: the same for names that are not bound (every peer:
//!   a miss has nothing to clone).
//! - `lookup_mode/{1024,1048576}/16B/{peer}/{get|peek|pinned}`: `get` = a per-call lookup that
//!   returns an owned clone (genreg `Registry::get`), every peer: clones against clones;
//!   `peek` = per-call, borrowed (genreg `Registry::read`) and `pinned` = through the handle,
//!   borrowed, both without `Mutex<HashMap<Weak>>`: borrows against borrows. The 1M group is
//!   skipped in `--test` mode.
//! - `register/1024`, `unregister_if_same/1024` (must succeed), `unregister_stale/1024` (a
//!   stale tag: must fail), `cycle/1024` (register + unregister_if_same), `replace_if_same/1024`:
//!   writes, each peer's own per-call primitive (see [`writes`] for what each hands back).
//! - `iterate/{names}`: one walk over every entry (divide by names for per-entry cost);
//!   borrowed, so not `Mutex<HashMap<Weak>>` (it upgrades every entry).

use std::any::TypeId;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};

mod peers;
use peers::*;

/// Whether `P`'s reads ([`Peer::peek`], its handle's, `for_each`) borrow the value. Every
/// peer's do but `Mutex<HashMap<Weak>>`'s: a weak value can only be read by upgrading it, an
/// `Arc` clone (an increment and a decrement). So that borrowed groups compare borrows with
/// borrows, it is left out of them; its reads are measured in the clone group
/// (`lookup_mode/*/get`, where its `get` is the same upgrade) and its misses in `lookup_miss`.
fn borrows<P: Peer>() -> bool {
    TypeId::of::<P>() != TypeId::of::<MutexWeak>()
}

fn values(n: usize) -> Vec<Val> {
    (0..n as u64).map(|id| Val::new(Payload { id })).collect()
}

/// A table of `n` names of `len` bytes, ids `0..n`, and its tags.
fn filled<P: Peer>(n: usize, len: usize, vals: &[Val]) -> (P, Vec<P::Tag>) {
    let p = P::with_capacity(n);
    let tags = p.bulk_register(&mut (0..n).map(|i| (name(i as u64, len), vals[i].clone())));
    (p, tags)
}

/// Lookup names in a shuffled order, laid out contiguously, at least 65,536 of them (a power of
/// two, so the loop wraps with a mask), each name as often. Not fewer: a short cycle of the
/// same names in the same order is learnt by the branch predictor, which then hides the probes'
/// data-dependent branches (measured: papaya's hit through a handle takes 6.5 ns in a cycle of
/// 1,024 names and 10.6 ns in a stream of 65,536; scc `HashIndex` 7.6 and 8.0).
fn lookup_arena(n: usize, len: usize, miss: bool) -> Arena {
    let total = n.max(1 << 16).next_power_of_two();
    let mut order = Vec::with_capacity(total);
    let mut seed = 7;
    while order.len() < total {
        order.extend(permutation(n, seed).into_iter().take(total - order.len()));
        seed += 1;
    }
    Arena::new(order.into_iter().map(|i| {
        if miss {
            miss_name(u64::from(i), len)
        } else {
            name(u64::from(i), len)
        }
    }))
}

fn config(g: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    if n >= 1 << 20 {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500));
    } else {
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600));
    }
}

struct Lookup<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, WallTime>,
    n: usize,
    len: usize,
    miss: bool,
    vals: &'a [Val],
    arena: &'a Arena,
}

impl Visit for Lookup<'_, '_> {
    fn visit<P: Peer>(&mut self) {
        // Borrowed groups: a hit of a peer that must clone to read is not one of them.
        if !self.miss && !borrows::<P>() {
            return;
        }
        let (p, _) = filled::<P>(self.n, self.len, self.vals);
        // Check once, untimed: every hit is the right binding, every miss misses.
        {
            let h = p.handle();
            for i in 0..self.arena.len().min(self.n * 2) {
                let r = h.peek(self.arena.get(i));
                assert_eq!(r.is_some(), !self.miss, "{}: wrong lookup result", P::NAME);
            }
        }
        let mask = self.arena.len() - 1;
        let arena = self.arena;
        self.g.bench_function(P::NAME, |b| {
            b.iter_custom(|iters| {
                let h = p.handle();
                let start = Instant::now();
                for k in 0..iters as usize {
                    black_box(h.peek(arena.get(k & mask)));
                }
                start.elapsed()
            })
        });
    }
}

/// `lookup_hit/*` and `lookup_miss/*`: borrow against borrow. Each peer's best read path (its
/// handle, else one guarded call), copying out tag and id, no clone; hits without
/// `Mutex<HashMap<Weak>>` (its read is an upgrade, a clone: [`borrows`]); misses with every
/// peer (a miss clones nothing).
fn lookup(c: &mut Criterion) {
    let points: &[(&str, usize, usize, bool)] = &[
        ("lookup_hit", 16, 16, false),
        ("lookup_hit", 1024, 8, false),
        ("lookup_hit", 1024, 16, false),
        ("lookup_hit", 1024, 32, false),
        ("lookup_hit", 1024, 64, false),
        ("lookup_hit", 65536, 16, false),
        ("lookup_hit", 1 << 20, 16, false),
        ("lookup_miss", 1024, 16, false),
        ("lookup_miss", 1024, 64, false),
        ("lookup_miss", 1 << 20, 16, false),
    ];
    let vals = values(1 << 20);
    // `-- --test` (CI's one pass to prove the benches run): skip building 1M-name tables.
    let test_mode = std::env::args().any(|a| a == "--test");
    for &(group, n, len, _) in points {
        if test_mode && n >= 1 << 20 {
            continue;
        }
        let miss = group == "lookup_miss";
        let arena = lookup_arena(n, len, miss);
        let mut g = c.benchmark_group(format!("{group}/{n}/{len}B"));
        config(&mut g, n);
        each_peer(&mut Lookup {
            g: &mut g,
            n,
            len,
            miss,
            vals: &vals,
            arena: &arena,
        });
        g.finish();
    }
}

struct Modes<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, WallTime>,
    n: usize,
    vals: &'a [Val],
    arena: &'a Arena,
}

impl Visit for Modes<'_, '_> {
    fn visit<P: Peer>(&mut self) {
        let (p, _) = filled::<P>(self.n, 16, self.vals);
        // Check, untimed, on a sample of the names: each mode returns the name's own binding.
        {
            let h = p.handle();
            for i in (0..self.n).step_by((self.n / 4096).max(1)) {
                let nm = name(i as u64, 16);
                let id = i as u64;
                assert_eq!(p.get(&nm).map(|x| x.1.id), Some(id), "{}: get", P::NAME);
                assert_eq!(p.peek(&nm).map(|x| x.1), Some(id), "{}: peek", P::NAME);
                assert_eq!(h.peek(&nm).map(|x| x.1), Some(id), "{}: pinned", P::NAME);
            }
        }
        let mask = self.arena.len() - 1;
        let arena = self.arena;
        // Clone: the value's `Arc` cloned out (and dropped), every peer.
        self.g.bench_function(format!("{}/get", P::NAME), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for k in 0..iters as usize {
                    black_box(p.get(arena.get(k & mask)));
                }
                start.elapsed()
            })
        });
        // Borrows: only peers whose reads borrow.
        if !borrows::<P>() {
            return;
        }
        self.g.bench_function(format!("{}/peek", P::NAME), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for k in 0..iters as usize {
                    black_box(p.peek(arena.get(k & mask)));
                }
                start.elapsed()
            })
        });
        if P::HAS_HANDLE {
            self.g.bench_function(format!("{}/pinned", P::NAME), |b| {
                b.iter_custom(|iters| {
                    let h = p.handle();
                    let start = Instant::now();
                    for k in 0..iters as usize {
                        black_box(h.peek(arena.get(k & mask)));
                    }
                    start.elapsed()
                })
            });
        }
    }
}

/// `lookup_mode/{1024,1048576}/16B`: three comparisons in one group, each like with like (the
/// function id's last part; `benches/report.py` compares `genreg/get` with `papaya/get`, ...):
/// - `get`: clone against clone. A per-call lookup returning an owned clone of the value's
///   `Arc` (genreg `Registry::get`, papaya `pin().get()` + clone, scc `peek_with` /
///   `read_sync` + clone, a lock + clone, `Mutex<HashMap<Weak>>`'s upgrade), every peer.
/// - `peek`: borrow against borrow, per call (genreg `Registry::read`, papaya `pin().get()`,
///   scc `peek_with` / `read_sync`, a guarded lookup); without `Mutex<HashMap<Weak>>`
///   ([`borrows`]).
/// - `pinned`: borrow against borrow through a reused handle (genreg `Pinned`, papaya's guard,
///   scc `HashIndex` with one `Guard`, arc-swap's `Cache`): the peers that have one.
///
/// At 1M names (skipped in `--test` mode, like the other 1M points) the table is far beyond the
/// caches: the like-for-like `get` at scale.
fn lookup_mode(c: &mut Criterion) {
    let test_mode = std::env::args().any(|a| a == "--test");
    let vals = values(if test_mode { 1024 } else { 1 << 20 });
    for n in [1024, 1 << 20] {
        if test_mode && n >= 1 << 20 {
            continue;
        }
        let arena = lookup_arena(n, 16, false);
        let mut g = c.benchmark_group(format!("lookup_mode/{n}/16B"));
        config(&mut g, n);
        each_peer(&mut Modes {
            g: &mut g,
            n,
            vals: &vals,
            arena: &arena,
        });
        g.finish();
    }
}

/// Which write bench a [`Writes`] visit runs.
#[derive(Clone, Copy, PartialEq)]
enum WriteBench {
    Register,
    Unregister,
    Stale,
    Cycle,
    Replace,
}

struct Writes<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, WallTime>,
    which: WriteBench,
    vals: &'a [Val],
}

const N: usize = 1024;
/// Names `N..2N` are the free pool the write benches register and unregister.
const POOL: usize = 1024;

impl Visit for Writes<'_, '_> {
    fn visit<P: Peer>(&mut self) {
        let (p, mut tags) = filled::<P>(N, 16, self.vals);
        let pool: Vec<String> = (N..N + POOL).map(|i| name(i as u64, 16)).collect();
        let stable: Vec<String> = (0..N).map(|i| name(i as u64, 16)).collect();
        let vals = self.vals;
        match self.which {
            WriteBench::Register | WriteBench::Unregister => {
                let timed_register = self.which == WriteBench::Register;
                self.g.bench_function(P::NAME, |b| {
                    b.iter_custom(|iters| {
                        // In chunks of the pool: time one half of the cycle, do the other
                        // untimed.
                        let mut spent = Duration::ZERO;
                        let mut left = iters as usize;
                        let mut got = Vec::with_capacity(POOL);
                        while left > 0 {
                            let k = left.min(POOL);
                            got.clear();
                            let start = Instant::now();
                            for (i, nm) in pool.iter().enumerate().take(k) {
                                got.push(
                                    p.register(nm, &vals[N + i]).expect("register must succeed"),
                                );
                            }
                            if timed_register {
                                spent += start.elapsed();
                            }
                            let start = Instant::now();
                            for (nm, t) in pool.iter().zip(&got) {
                                assert!(
                                    p.unregister_if_same(nm, *t),
                                    "unregister_if_same must succeed"
                                );
                            }
                            if !timed_register {
                                spent += start.elapsed();
                            }
                            left -= k;
                        }
                        spent
                    })
                });
            }
            WriteBench::Stale => {
                // Make every stable name's first tag stale: remove it and bind the name again.
                let stale: Vec<P::Tag> = tags.clone();
                for (i, nm) in stable.iter().enumerate() {
                    assert!(p.unregister_if_same(nm, tags[i]));
                    tags[i] = p.register(nm, &vals[i]).expect("re-register");
                }
                self.g.bench_function(P::NAME, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for k in 0..iters as usize {
                            let i = k % N;
                            assert!(
                                !p.unregister_if_same(&stable[i], stale[i]),
                                "stale tag removed a binding"
                            );
                        }
                        start.elapsed()
                    })
                });
            }
            WriteBench::Cycle => {
                self.g.bench_function(P::NAME, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for k in 0..iters as usize {
                            let i = k % POOL;
                            let t = p
                                .register(&pool[i], &vals[N + i])
                                .expect("register must succeed");
                            assert!(
                                p.unregister_if_same(&pool[i], t),
                                "unregister_if_same must succeed"
                            );
                        }
                        start.elapsed()
                    })
                });
            }
            WriteBench::Replace => {
                self.g.bench_function(P::NAME, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for k in 0..iters as usize {
                            let i = k % N;
                            tags[i] = p
                                .replace_if_same(&stable[i], tags[i], &vals[i])
                                .expect("replace_if_same must succeed");
                        }
                        start.elapsed()
                    })
                });
            }
        }
    }
}

/// `register/1024`, `unregister_if_same/1024`, `unregister_stale/1024`, `cycle/1024`,
/// `replace_if_same/1024`: writes, no lookup result, so neither clone nor borrow of a read;
/// each peer's own per-call primitive, what its users call. What a removal hands back differs
/// and is each API's own cost: genreg's `Registry::unregister_if_same` returns the removed
/// entry (an `Arc` clone, dropped by the adapter), papaya's `remove_if` lends it, scc
/// `HashIndex` returns a bool, the lock-based maps move the removed value out (no clone), and
/// arc-swap copies its whole map (every `Arc` in it cloned) on each write.
fn writes(c: &mut Criterion) {
    let vals = values(N + POOL);
    for (label, which) in [
        ("register", WriteBench::Register),
        ("unregister_if_same", WriteBench::Unregister),
        ("unregister_stale", WriteBench::Stale),
        ("cycle", WriteBench::Cycle),
        ("replace_if_same", WriteBench::Replace),
    ] {
        let mut g = c.benchmark_group(format!("{label}/{N}"));
        config(&mut g, N);
        each_peer(&mut Writes {
            g: &mut g,
            which,
            vals: &vals,
        });
        g.finish();
    }
}

struct Iterate<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, WallTime>,
    n: usize,
    vals: &'a [Val],
}

impl Visit for Iterate<'_, '_> {
    fn visit<P: Peer>(&mut self) {
        if !borrows::<P>() {
            return;
        }
        let (p, _) = filled::<P>(self.n, 16, self.vals);
        let n = self.n;
        self.g.bench_function(P::NAME, |b| {
            b.iter(|| {
                let mut sum = 0u64;
                let seen = p.for_each(&mut |len, id| sum = sum.wrapping_add(id + len as u64));
                assert_eq!(seen, n, "{}: iteration missed entries", P::NAME);
                black_box(sum)
            })
        });
    }
}

/// `iterate/{1024,65536}`: borrow against borrow. One walk reading each entry's id in place;
/// without `Mutex<HashMap<Weak>>`, which upgrades (clones) every entry to read it ([`borrows`]).
fn iterate(c: &mut Criterion) {
    let vals = values(65536);
    for n in [1024, 65536] {
        let mut g = c.benchmark_group(format!("iterate/{n}"));
        config(&mut g, n);
        g.throughput(criterion::Throughput::Elements(n as u64));
        each_peer(&mut Iterate {
            g: &mut g,
            n,
            vals: &vals,
        });
        g.finish();
    }
}

criterion_group!(benches, lookup, lookup_mode, writes, iterate);
criterion_main!(benches);
