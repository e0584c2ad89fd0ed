//! Liveness's costs, side by side in one run (BENCHMARKS.md, "Liveness: TTL, reaper, health checks"):
//!
//! ```sh
//! cargo run --release -p genreg-bench --bin liveness            # 1k and 1M entries, ~2 min
//! cargo run --release -p genreg-bench --bin liveness -- --quick # 1k and 100k, a short pass (CI)
//! cargo run --release -p genreg-bench --bin liveness -- --sizes 1000,1000000 --reps 5
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*prof_loop*' \
//!     target/release/liveness --child reap 20 1000000 1000  # instructions: OP, N times, SIZE, K
//! ```
//!
//! 1. **The bound's cost**: a `register_detached` + `unregister_if_same` cycle on fresh names
//!    (a pool of 1,024 per thread), in a registry of 1,000 entries (its table sized for them
//!    and the pools: no migrations) without a bound, with one (`max_entries`, far above what it
//!    holds: the bound is never reached, so what is measured is its counter), and, for
//!    reference, registering with a TTL (`with_ttl`, no bound). On 1 thread and on 2 (each on
//!    its own pool of names, sharing the registry and so the bound's counter). Millions of
//!    cycles per second over all threads, median of the repetitions.
//! 2. **Keepalive** against `is_current`, over 1,000 entries with a TTL (the default
//!    `SystemClock`): `registry.keepalive(name, tag)`, `Registration::keepalive()` and
//!    `registry.is_current(name, tag)`, and `is_current` in a registry without TTLs. ns per call.
//! 3. **The reaper**: SIZE entries with a TTL on a `ManualClock`, of which K expire (registered
//!    with a 1 s TTL, the others with 10^7 s); the reaper is made once per registry (its walk
//!    schedules the long-lived entries: its heap holds SIZE entries). Each repetition registers
//!    the K entries again, runs one pass that takes them from the intake and schedules them
//!    (timed: "schedule"), advances the clock 2 s and times one pass that removes the K
//!    (`reap`), or a `purge_dead()` (a walk of the whole table) instead. ns per expired entry.
//! 4. **The health check** (`genreg::liveness::HealthCheck`) over 1,000 entries with a probe
//!    that sleeps 1 ms (`tokio::time::sleep`): the wall time of `run_all` at concurrency 64
//!    and 1,000, against a sequential loop that awaits each probe in turn and records its
//!    outcome (what MARSYS's `check_all_agents` does), on a current-thread tokio runtime.
//!
//! Methods are interleaved, their order rotating from one repetition to the next; every result
//! is checked (cycles succeed, the reaper and `purge_dead` remove exactly K, every probe passes).

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use genreg::liveness::{HealthCheck, ManualClock};
use genreg::{HealthState, Reaper, Registration, Registry, Tag};

type V = u64;

const POOL: usize = 1024;
/// Entries in the registry the cycles and keepalives run against.
const LIVE: usize = 1_000;
/// A TTL that never comes during a run.
const LONG: Duration = Duration::from_secs(10_000_000);
const SHORT: Duration = Duration::from_secs(1);

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:08}")).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
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

/// Mean ns per call of `f` over a batch of at least `min` (and at least one call).
fn time_ns<R>(min: Duration, mut f: impl FnMut() -> R) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while calls == 0 || start.elapsed() < min {
        black_box(f());
        calls += 1;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

// ---------------------------------------------------------------------------------------------
// 1. The bound's cost.

const CYCLES: [&str; 3] = ["no bound", "max_entries", "with_ttl (no bound)"];

/// A registry of `LIVE` plain entries for cycle `k` of `CYCLES`.
fn cycle_registry(k: usize) -> Registry<V> {
    // Sized for the entries and every thread's pool: the cycles pay no table migration (a
    // table sized for `LIVE` alone would migrate about once per pool, a third of the cycle's
    // instructions, the same for every column).
    let b = Registry::builder().capacity(LIVE + 2 * POOL);
    // Far above anything the run holds: the bound is never reached.
    let reg = if k == 1 {
        b.max_entries(1 << 40).build()
    } else {
        b.build()
    };
    for (i, n) in names(LIVE, "agent").iter().enumerate() {
        reg.register_detached(n, i as V).unwrap();
    }
    reg
}

/// The pool once: register_detached (with a TTL if `ttl`) + unregister_if_same.
#[inline(always)]
fn cycle_pool(reg: &Registry<V>, pool: &[String], ttl: bool) {
    for (i, n) in pool.iter().enumerate() {
        let tag = if ttl {
            reg.with_ttl(LONG).register_detached(n, i as V).unwrap()
        } else {
            reg.register_detached(n, i as V).unwrap()
        };
        reg.unregister_if_same(n, tag).unwrap();
    }
}

/// Millions of cycles per second over `pools.len()` threads cycling for about `dur` together.
fn cycle_rate(reg: &Registry<V>, pools: &[Vec<String>], ttl: bool, dur: Duration) -> f64 {
    let start = Barrier::new(pools.len());
    let (cycles, secs) = thread::scope(|s| {
        let workers: Vec<_> = pools
            .iter()
            .map(|pool| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    let mut n = 0usize;
                    while n == 0 || t.elapsed() < dur {
                        cycle_pool(reg, pool, ttl);
                        n += pool.len();
                    }
                    (n, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0f64), |(n, s), (m, t)| (n + m, s.max(t)))
    });
    cycles as f64 / secs / 1e6
}

/// Median Mcycles/s of each of `CYCLES` on `threads` threads.
fn bench_cycles(threads: usize, reps: usize, dur: Duration) -> Vec<f64> {
    let regs: Vec<Registry<V>> = (0..CYCLES.len()).map(cycle_registry).collect();
    let pools: Vec<Vec<String>> = (0..threads)
        .map(|t| names(POOL, &format!("new-t{t}")))
        .collect();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CYCLES.len()];
    for rep in 0..reps {
        for k in 0..CYCLES.len() {
            let k = (k + rep) % CYCLES.len();
            rates[k].push(cycle_rate(&regs[k], &pools, k == 2, dur));
        }
    }
    for reg in &regs {
        assert_eq!(reg.len(), LIVE, "every cycle undone");
    }
    rates.into_iter().map(median).collect()
}

// ---------------------------------------------------------------------------------------------
// 2. Keepalive against is_current.

const KEEPS: [&str; 4] = [
    "is_current (TTL entries)",
    "registry.keepalive",
    "Registration::keepalive",
    "is_current (no TTL)",
];

struct Keep {
    ttl: Registry<V>,
    guards: Vec<Registration<V>>,
    plain: Registry<V>,
    plain_tags: Vec<(String, Tag)>,
}

fn keep_world(clock: Option<ManualClock>) -> Keep {
    let ttl: Registry<V> = match clock {
        Some(c) => Registry::builder().capacity(LIVE).clock(c).build(),
        None => Registry::builder().capacity(LIVE).build(),
    };
    let plain: Registry<V> = Registry::builder().capacity(LIVE).build();
    let names = names(LIVE, "agent");
    let guards = names
        .iter()
        .enumerate()
        .map(|(i, n)| ttl.with_ttl(LONG).register(n, i as V).unwrap())
        .collect();
    let plain_tags = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), plain.register_detached(n, i as V).unwrap()))
        .collect();
    Keep {
        ttl,
        guards,
        plain,
        plain_tags,
    }
}

/// One pass of method `k` of `KEEPS` over the 1,000 entries; returns how many succeeded.
#[inline(always)]
fn keep_pass(w: &Keep, k: usize) -> usize {
    match k {
        0 => w
            .guards
            .iter()
            .filter(|g| w.ttl.is_current(g.name(), g.tag()))
            .count(),
        1 => w
            .guards
            .iter()
            .filter(|g| w.ttl.keepalive(g.name(), g.tag()).is_ok())
            .count(),
        2 => w.guards.iter().filter(|g| g.keepalive().is_ok()).count(),
        _ => w
            .plain_tags
            .iter()
            .filter(|(n, t)| w.plain.is_current(n, *t))
            .count(),
    }
}

fn bench_keep(reps: usize, min: Duration) -> Vec<f64> {
    let w = keep_world(None);
    for (k, method) in KEEPS.iter().enumerate() {
        assert_eq!(keep_pass(&w, k), LIVE, "{method}: every call succeeds");
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); KEEPS.len()];
    for rep in 0..reps {
        for k in 0..KEEPS.len() {
            let k = (k + rep) % KEEPS.len();
            times[k].push(time_ns(min, || keep_pass(&w, k)) / LIVE as f64);
        }
    }
    times.into_iter().map(median).collect()
}

// ---------------------------------------------------------------------------------------------
// 3. The reaper.

struct Reaping {
    size: usize,
    k: usize,
    clock: ManualClock,
    reg: Registry<V>,
    reaper: Reaper<V>,
    short: Vec<String>,
}

/// `size` entries, `size - k` long-lived and registered now, and a reaper that has scheduled
/// them; the `k` short-lived ones are registered by each repetition.
fn reaping(size: usize, k: usize) -> Reaping {
    let clock = ManualClock::new();
    let reg: Registry<V> = Registry::builder()
        .capacity(size)
        .clock(clock.clone())
        .build();
    for (i, n) in names(size - k, "long").iter().enumerate() {
        reg.with_ttl(LONG).register_detached(n, i as V).unwrap();
    }
    let reaper = reg.reaper();
    assert_eq!(reaper.scheduled(), size - k);
    Reaping {
        size,
        k,
        clock,
        reg,
        reaper,
        short: names(k, "short"),
    }
}

impl Reaping {
    /// Registers the `k` short-lived entries and runs the pass that schedules them; returns
    /// its ns. Then the clock passes their deadline.
    fn arm(&mut self) -> f64 {
        for (i, n) in self.short.iter().enumerate() {
            self.reg
                .with_ttl(SHORT)
                .register_detached(n, i as V)
                .unwrap();
        }
        assert_eq!(self.reg.len(), self.size);
        let t = Instant::now();
        let removed = self.reaper.reap();
        let ns = t.elapsed().as_nanos() as f64;
        assert_eq!(removed, 0, "nothing due yet");
        self.clock.advance(2 * SHORT);
        ns
    }

    /// The reaper's pass (`purge` false) or `purge_dead()`: ns; checks that it removed `k`.
    fn remove(&mut self, purge: bool) -> f64 {
        let t = Instant::now();
        let removed = if purge {
            self.reg.purge_dead()
        } else {
            self.reaper.reap()
        };
        let ns = t.elapsed().as_nanos() as f64;
        // Every expired entry is gone, and only those (a removal made by a migration the pass
        // helped with is not counted in `removed`).
        assert!(removed <= self.k);
        assert_eq!(self.reg.len(), self.size - self.k, "expired entries left");
        if purge {
            // The reaper's heap still holds the k: let it find them gone (not timed).
            assert_eq!(self.reaper.reap(), 0);
        }
        ns
    }
}

/// (schedule pass, reap pass, purge_dead) median ns per pass.
fn bench_reap(r: &mut Reaping, reps: usize) -> [f64; 3] {
    let mut times: [Vec<f64>; 3] = Default::default();
    for rep in 0..2 * reps {
        // Alternate: reap, purge, reap, ... (the first pass of each kind is a warm-up).
        let purge = rep % 2 == 1;
        let arm = r.arm();
        let t = r.remove(purge);
        if rep >= 2 {
            times[0].push(arm);
            times[1 + usize::from(purge)].push(t);
        }
    }
    times.map(median)
}

// ---------------------------------------------------------------------------------------------
// 4. The health check.

const CHECKS: [&str; 3] = [
    "sequential loop (await each)",
    "HealthCheck::run_all, concurrency 64",
    "HealthCheck::run_all, concurrency 1000",
];
const PROBE: Duration = Duration::from_millis(1);

async fn probe(_name: String, _value: V) -> Result<(), String> {
    tokio::time::sleep(PROBE).await;
    Ok(())
}

/// One check of every entry with method `k` of `CHECKS`; returns the entries found passing.
async fn check_pass(reg: &Registry<V>, k: usize) -> usize {
    if k == 0 {
        let mut passing = 0;
        for (name, e) in reg.entries() {
            if probe(name.clone(), *e.value()).await.is_ok()
                && reg.set_health(&name, e.tag(), HealthState::Passing).is_ok()
            {
                passing += 1;
            }
        }
        return passing;
    }
    let concurrency = if k == 1 { 64 } else { 1_000 };
    HealthCheck::new(Duration::from_secs(1))
        .concurrency(concurrency)
        .run_all(reg, probe)
        .await
        .iter()
        .filter(|o| o.recorded && o.report.state == HealthState::Passing)
        .count()
}

/// Median ms per pass of each of `CHECKS` (the sequential loop `seq_reps` times).
fn bench_health(reps: usize, seq_reps: usize) -> Vec<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let reg: Registry<V> = Registry::new();
    for (i, n) in names(LIVE, "agent").iter().enumerate() {
        reg.register_detached(n, i as V).unwrap();
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); CHECKS.len()];
    for rep in 0..reps {
        for k in 0..CHECKS.len() {
            let k = (k + rep) % CHECKS.len();
            if k == 0 && rep >= seq_reps {
                continue;
            }
            let t = Instant::now();
            let passing = rt.block_on(check_pass(&reg, k));
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(passing, LIVE, "{}: every probe passes", CHECKS[k]);
        }
    }
    times.into_iter().map(median).collect()
}

// ---------------------------------------------------------------------------------------------
// Child mode, for callgrind.

/// `--child OP N SIZE [K]` (for `valgrind --tool=callgrind --toggle-collect='*prof_loop*'`):
/// runs OP N times in a loop function of its own, so that callgrind counts exactly OP. Prints
/// the count to divide by (calls, cycles, or expired entries removed).
///
/// - `is-current`, `keepalive`, `keepalive-guard`, `is-current-plain`: N passes over the 1,000
///   entries of section 2 (on a `ManualClock` moved 1 s between passes, so that every
///   keepalive renews);
/// - `cycle`, `cycle-bounded`, `cycle-ttl`: N pools of 1,024 cycles on one thread;
/// - `schedule`, `reap`, `purge`: N repetitions of section 3 on SIZE entries of which K
///   expire, counting only the timed pass.
fn child(op: &str, n: usize, size: usize, k: usize) {
    let per = match op {
        "is-current" | "keepalive" | "keepalive-guard" | "is-current-plain" => {
            let clock = ManualClock::new();
            let w = keep_world(Some(clock.clone()));
            let m = [
                "is-current",
                "keepalive",
                "keepalive-guard",
                "is-current-plain",
            ]
            .iter()
            .position(|o| *o == op)
            .unwrap();
            let done = prof_loop_keep(&w, &clock, m, n);
            assert_eq!(done, n * LIVE);
            done
        }
        "cycle" | "cycle-bounded" | "cycle-ttl" => {
            let m = ["cycle", "cycle-bounded", "cycle-ttl"]
                .iter()
                .position(|o| *o == op)
                .unwrap();
            let reg = cycle_registry(m);
            let pool = names(POOL, "new");
            prof_loop_cycle(&reg, &pool, m == 2, n);
            assert_eq!(reg.len(), LIVE);
            n * POOL
        }
        "schedule" | "reap" | "purge" => {
            let mut r = reaping(size, k);
            let mut removed = 0;
            for _ in 0..n {
                for (i, name) in r.short.iter().enumerate() {
                    r.reg
                        .with_ttl(SHORT)
                        .register_detached(name, i as V)
                        .unwrap();
                }
                if op == "schedule" {
                    prof_loop_reap(&mut r.reaper);
                } else {
                    r.reaper.reap();
                }
                r.clock.advance(2 * SHORT);
                removed += match op {
                    "purge" => prof_loop_purge(&r.reg),
                    "reap" => prof_loop_reap(&mut r.reaper),
                    _ => r.reaper.reap(),
                };
                r.reaper.reap();
                assert_eq!(r.reg.len(), size - k, "expired entries left");
            }
            assert!(removed <= n * k);
            n * k
        }
        _ => panic!("unknown op {op}"),
    };
    println!("PER {per}");
}

#[inline(never)]
fn prof_loop_keep(w: &Keep, clock: &ManualClock, k: usize, n: usize) -> usize {
    let mut done = 0;
    for _ in 0..n {
        clock.advance(SHORT);
        done += keep_pass(w, k);
    }
    done
}

#[inline(never)]
fn prof_loop_cycle(reg: &Registry<V>, pool: &[String], ttl: bool, n: usize) {
    for _ in 0..n {
        cycle_pool(reg, pool, ttl);
    }
}

#[inline(never)]
fn prof_loop_reap(r: &mut Reaper<V>) -> usize {
    r.reap()
}

#[inline(never)]
fn prof_loop_purge(reg: &Registry<V>) -> usize {
    reg.purge_dead()
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let arg = |k: usize| args.get(i + k).cloned();
        let num = |k: usize| arg(k).map_or(0, |s| s.parse().expect("--child OP N SIZE [K]"));
        child(
            &arg(1).expect("--child OP N SIZE [K]"),
            num(2),
            num(3),
            num(4),
        );
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
    let reps: usize = opt("--reps").map_or(if quick { 3 } else { 7 }, |r| r.parse().unwrap());
    let min = Duration::from_millis(
        opt("--ms").map_or(if quick { 20 } else { 200 }, |m| m.parse().unwrap()),
    );
    println!(
        "genreg liveness benchmark ({} pass: reaper sizes {sizes:?}, median of {reps} \
         interleaved repetitions, batches of >= {} ms)",
        if quick { "quick" } else { "full" },
        min.as_millis()
    );

    // 1.
    println!(
        "\n## Registration: register_detached + unregister_if_same on fresh names, {LIVE} entries \
         (Mcycles/s over all threads, median; in brackets: against no bound)"
    );
    println!("| threads | {} |", CYCLES.join(" | "));
    println!("| ---: |{}", " ---: |".repeat(CYCLES.len()));
    for threads in [1, 2] {
        let r = bench_cycles(threads, reps, min);
        let cells: Vec<String> = r
            .iter()
            .map(|x| format!("{x:.2} ({:.3}×)", x / r[0]))
            .collect();
        println!("| {threads} | {} |", cells.join(" | "));
    }

    // 2.
    println!("\n## Keepalive against is_current, {LIVE} entries (ns per call, median)");
    println!("| {} |", KEEPS.join(" | "));
    println!("|{}", " ---: |".repeat(KEEPS.len()));
    let r = bench_keep(reps, min);
    let cells: Vec<String> = r
        .iter()
        .map(|x| format!("{x:.1} ({:.2}×)", x / r[0]))
        .collect();
    println!("| {} |", cells.join(" | "));

    // 3.
    println!(
        "\n## Reaper: one pass over K expired entries among SIZE (median; ns per expired entry \
         in brackets)"
    );
    println!(
        "| entries | expire (K) | schedule pass | reap pass | purge_dead | purge_dead / reap |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &size in &sizes {
        let mut ks = vec![10, size / 100, 1_000.min(size)];
        ks.sort_unstable();
        ks.dedup();
        for k in ks.into_iter().filter(|&k| k > 0) {
            let t = Instant::now();
            let mut r = reaping(size, k);
            let built = t.elapsed();
            // Short passes are noisy: more repetitions for them.
            let reps = if k < 1_000 { 5 * reps } else { reps };
            let [arm, reap, purge] = bench_reap(&mut r, reps);
            let per = |ns: f64| format!("{} ({:.0})", fmt_ns(ns), ns / k as f64);
            println!(
                "| {size} | {k} | {} | {} | {} | {:.0}× |   (built in {:.1} s)",
                per(arm),
                per(reap),
                per(purge),
                purge / reap,
                built.as_secs_f64()
            );
        }
    }

    // 4.
    println!(
        "\n## Health check: {LIVE} entries, a probe that sleeps {PROBE:?} (ms per pass, median)"
    );
    println!("| {} |", CHECKS.join(" | "));
    println!("|{}", " ---: |".repeat(CHECKS.len()));
    let r = bench_health(reps.min(5), if quick { 1 } else { 3 });
    let cells: Vec<String> = r
        .iter()
        .map(|x| format!("{x:.1} ({:.1}×)", r[0] / x))
        .collect();
    println!("| {} |", cells.join(" | "));
}
