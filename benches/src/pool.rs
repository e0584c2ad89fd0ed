//! Pools against their peers, side by side in one run (BENCHMARKS.md, "Pools"):
//!
//! ```sh
//! cargo run --release -p genreg-bench --bin pool             # ~40 s
//! cargo run --release -p genreg-bench --bin pool -- --quick  # a short pass (CI), ~10 s
//! cargo run --release -p genreg-bench --bin pool -- --reps 9 --ms 300 --samples 5000 --polls 10
//! cargo run --release -p genreg-bench --bin pool -- --only cycles   # or latency, spread
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*prof_loop*' \
//!     target/release/pool --child genreg-ll 4 100000   # instructions: PEER, MEMBERS, N cycles
//! ```
//!
//! 1. **Acquire + release**: one lease taken and dropped at once, in a loop, on pools of 4 and
//!    64 exclusive members (`max_in_flight = 1`, as MARSYS), on 1 thread and on 2 threads
//!    hammering the same pool (barrier-started; millions of cycles per second over all
//!    threads). The peers:
//!    - genreg's `Pool` with `Selection::LeastLoaded` and with `Selection::PowerOfTwo`;
//!    - **MARSYS's design**: a `std::sync::Mutex` over a `Vec<bool>` of busy flags, the first
//!      free index taken under the lock, the flag cleared under the lock on release;
//!    - **a tokio `Semaphore`** (`try_acquire`) holding one permit per member, guarding a
//!      lock-free free list of member indices (`crossbeam_queue::ArrayQueue`): the index is
//!      popped once the permit is held, pushed back before the permit is dropped.
//! 2. **Async wake-up latency**: a holder thread holds the only member of a pool; a waiter,
//!    on a current-thread tokio runtime on another thread, awaits a lease (genreg's
//!    `acquire_async`, or the Semaphore's `acquire().await` + the free list). Once the waiter
//!    is parked (a 200 µs pause after it starts awaiting), the holder stamps the time and
//!    drops its lease; the waiter stamps the time it holds its own. p50 / p99 / mean of the
//!    difference over a few thousand samples. Then MARSYS's wait: poll `try_acquire` every
//!    0.5 s (`tokio::time::sleep`), released at a random point of the poll period (a handful
//!    of samples: each costs ~0.5 s).
//! 3. **Spread**: 48 threads lease from a pool of 16 members with 8 slots each (128 slots: never
//!    exhausted), each holding its lease for a random 0–400 µs sleep and pausing 0–100 µs
//!    between leases; a sampler reads every member's load every ~200 µs and records max / mean
//!    over the members, and the floor integer loads allow (ceil(mean) / mean). Selections:
//!    `LeastLoaded`, `PowerOfTwo`, round robin (a shared cursor, `acquire_member(cursor % n)`,
//!    the next member if that one is full) and first free (the lowest-indexed member with a
//!    free slot, MARSYS's rule with more than one slot).
//!
//! Methods are interleaved, their order rotating from one repetition to the next; every result
//! is checked (no acquire fails where a slot must be free, every lease is of a member).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use genreg::{Pool, PoolOptions, PoolRegistration, Registry, Selection};
use tokio::sync::Semaphore;

type V = u64;

const SIZES: [usize; 2] = [4, 64];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
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

/// xorshift64*: a cheap random number per thread, for hold times and the polling phase.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng((seed | 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn members(n: usize) -> Vec<V> {
    (0..n as V).map(|i| 1_000 + i).collect()
}

// ---------------------------------------------------------------------------------------------
// The peers.

/// One acquire + release: a lease taken and dropped at once. Returns the member's value (so
/// that the lease is used), or `None` if no member was free.
trait Peer: Sync {
    fn cycle(&self) -> Option<V>;
}

/// genreg's pool (its registration: dropping it would remove the pool).
struct Genreg(PoolRegistration<V>);

impl Peer for Genreg {
    #[inline(always)]
    fn cycle(&self) -> Option<V> {
        let lease = self.0.acquire().ok()?;
        Some(black_box(*lease))
    }
}

/// MARSYS's `AgentPool`: one lock over the busy flags; the first free index.
struct Marsys {
    busy: Mutex<Vec<bool>>,
    values: Vec<V>,
}

impl Marsys {
    fn new(n: usize) -> Marsys {
        Marsys {
            busy: Mutex::new(vec![false; n]),
            values: members(n),
        }
    }
    #[inline(always)]
    fn try_acquire(&self) -> Option<usize> {
        let mut busy = self.busy.lock().unwrap();
        let i = busy.iter().position(|b| !*b)?;
        busy[i] = true;
        Some(i)
    }
    #[inline(always)]
    fn release(&self, i: usize) {
        self.busy.lock().unwrap()[i] = false;
    }
}

impl Peer for Marsys {
    #[inline(always)]
    fn cycle(&self) -> Option<V> {
        let i = self.try_acquire()?;
        let v = black_box(self.values[i]);
        self.release(i);
        Some(v)
    }
}

/// A tokio `Semaphore` with a permit per member, guarding a lock-free free list of indices.
struct SemPool {
    sem: Semaphore,
    free: ArrayQueue<usize>,
    values: Vec<V>,
}

impl SemPool {
    fn new(n: usize) -> SemPool {
        let free = ArrayQueue::new(n);
        for i in 0..n {
            free.push(i).unwrap();
        }
        SemPool {
            sem: Semaphore::new(n),
            free,
            values: members(n),
        }
    }
}

impl Peer for SemPool {
    #[inline(always)]
    fn cycle(&self) -> Option<V> {
        let permit = self.sem.try_acquire().ok()?;
        // A permit held means an index is in the list: each holder took one permit and one
        // index, and gives the index back before the permit.
        let i = self.free.pop().expect("a permit guarantees an index");
        let v = black_box(self.values[i]);
        self.free.push(i).unwrap();
        drop(permit);
        Some(v)
    }
}

const PEERS: [&str; 5] = [
    "genreg LeastLoaded",
    "genreg LeastLoaded, timing off",
    "genreg PowerOfTwo",
    "MARSYS Mutex<Vec<bool>>",
    "Semaphore + ArrayQueue",
];

struct Subjects {
    _registry: Registry<V>,
    ll: Genreg,
    ll_untimed: Genreg,
    p2: Genreg,
    marsys: Marsys,
    sem: SemPool,
}

fn genreg_pool(reg: &Registry<V>, name: &str, n: usize, sel: Selection, m: usize) -> Genreg {
    genreg_pool_timed(reg, name, n, sel, m, true)
}

fn genreg_pool_timed(
    reg: &Registry<V>,
    name: &str,
    n: usize,
    sel: Selection,
    m: usize,
    timing: bool,
) -> Genreg {
    let opts = PoolOptions::new()
        .max_in_flight(m)
        .selection(sel)
        .timing(timing);
    Genreg(reg.register_pool_with(name, members(n), opts).unwrap())
}

fn subjects(n: usize) -> Subjects {
    let reg: Registry<V> = Registry::new();
    Subjects {
        ll: genreg_pool(&reg, "ll", n, Selection::LeastLoaded, 1),
        ll_untimed: genreg_pool_timed(&reg, "llu", n, Selection::LeastLoaded, 1, false),
        p2: genreg_pool(&reg, "p2", n, Selection::PowerOfTwo, 1),
        marsys: Marsys::new(n),
        sem: SemPool::new(n),
        _registry: reg,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Acquire + release.

/// Millions of cycles per second over `threads` threads cycling on `p` for about `dur`
/// together. Every cycle must succeed (threads <= members, one lease each at a time).
fn rate<P: Peer>(p: &P, threads: usize, dur: Duration) -> f64 {
    let start = Barrier::new(threads);
    let (cycles, secs) = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let t = Instant::now();
                    let mut n = 0usize;
                    let mut sum = 0;
                    while n == 0 || t.elapsed() < dur {
                        for _ in 0..256 {
                            sum += p.cycle().expect("a member is free");
                        }
                        n += 256;
                    }
                    black_box(sum);
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

fn rate_of(s: &Subjects, k: usize, threads: usize, dur: Duration) -> f64 {
    match k {
        0 => rate(&s.ll, threads, dur),
        1 => rate(&s.ll_untimed, threads, dur),
        2 => rate(&s.p2, threads, dur),
        3 => rate(&s.marsys, threads, dur),
        _ => rate(&s.sem, threads, dur),
    }
}

/// Median Mcycles/s of each of `PEERS`, on a pool of `n` members, on `threads` threads.
fn bench_cycles(n: usize, threads: usize, reps: usize, dur: Duration) -> Vec<f64> {
    let s = subjects(n);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); PEERS.len()];
    for rep in 0..reps {
        for k in 0..PEERS.len() {
            let k = (k + rep) % PEERS.len();
            rates[k].push(rate_of(&s, k, threads, dur));
        }
    }
    // Every lease was released.
    assert_eq!(s.ll.0.in_use(), 0);
    assert_eq!(s.p2.0.in_use(), 0);
    assert_eq!(s.sem.sem.available_permits(), n);
    assert_eq!(s.sem.free.len(), n);
    assert!(s.marsys.busy.lock().unwrap().iter().all(|b| !*b));
    rates.into_iter().map(median).collect()
}

// ---------------------------------------------------------------------------------------------
// 2. Async wake-up latency.

/// Spins (then yields) until `cell` holds `want`.
fn wait_for(cell: &AtomicU64, want: u64) {
    let mut spins = 0u32;
    while cell.load(Ordering::Acquire) != want {
        if spins < 1_000 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            thread::yield_now();
        }
    }
}

/// The rendezvous of a holder and a waiter, sample by sample.
struct Meet {
    base: Instant,
    /// The holder holds the member (sample number).
    held: AtomicU64,
    /// The waiter starts awaiting.
    ready: AtomicU64,
    /// The waiter holds its lease (sample number); `t1` is when.
    done: AtomicU64,
    t1: AtomicU64,
    /// The waiter dropped its lease.
    freed: AtomicU64,
}

impl Meet {
    fn new() -> Meet {
        Meet {
            base: Instant::now(),
            held: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            done: AtomicU64::new(0),
            t1: AtomicU64::new(0),
            freed: AtomicU64::new(0),
        }
    }
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    /// The waiter's side of sample `i`, once it holds: stamp, tell, release, tell.
    fn got(&self, i: u64, release: impl FnOnce()) {
        self.t1.store(self.now(), Ordering::Relaxed);
        self.done.store(i, Ordering::Release);
        release();
        self.freed.store(i, Ordering::Release);
    }
    /// The holder's side of `samples` samples: `hold` takes the member, `pause` waits for the
    /// waiter to park, the closure `hold` returns releases it. ns from release to the waiter's
    /// lease, per sample.
    fn holder<R: FnOnce()>(
        &self,
        samples: u64,
        mut hold: impl FnMut() -> R,
        mut pause: impl FnMut(),
    ) -> Vec<f64> {
        let mut out = Vec::with_capacity(samples as usize);
        for i in 1..=samples {
            wait_for(&self.freed, i - 1);
            let release = hold();
            self.held.store(i, Ordering::Release);
            wait_for(&self.ready, i);
            pause();
            let t0 = self.now();
            release();
            wait_for(&self.done, i);
            out.push(self.t1.load(Ordering::Relaxed).saturating_sub(t0) as f64);
        }
        out
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The waiter's pause before the release: time to poll once and park.
const PARK: Duration = Duration::from_micros(200);

fn latency_genreg(samples: u64) -> Vec<f64> {
    let reg: Registry<V> = Registry::new();
    let pool: Pool<V> = reg.register_pool("one", members(1)).unwrap().detach();
    let meet = Meet::new();
    thread::scope(|s| {
        s.spawn(|| {
            runtime().block_on(async {
                for i in 1..=samples {
                    wait_for(&meet.held, i);
                    let wait = pool.acquire_async();
                    meet.ready.store(i, Ordering::Release);
                    let lease = wait.await.expect("the pool stays open");
                    meet.got(i, || drop(lease));
                }
            })
        });
        meet.holder(
            samples,
            || {
                let lease = pool.acquire().expect("the waiter released it");
                move || drop(lease)
            },
            || thread::sleep(PARK),
        )
    })
}

fn latency_semaphore(samples: u64) -> Vec<f64> {
    let p = SemPool::new(1);
    let meet = Meet::new();
    thread::scope(|s| {
        s.spawn(|| {
            runtime().block_on(async {
                for i in 1..=samples {
                    wait_for(&meet.held, i);
                    let wait = p.sem.acquire();
                    meet.ready.store(i, Ordering::Release);
                    let permit = wait.await.unwrap();
                    let idx = p.free.pop().expect("a permit guarantees an index");
                    meet.got(i, || {
                        p.free.push(idx).unwrap();
                        drop(permit);
                    });
                }
            })
        });
        meet.holder(
            samples,
            || {
                let permit = p.sem.try_acquire().expect("the waiter released it");
                let idx = p.free.pop().unwrap();
                let p = &p;
                move || {
                    p.free.push(idx).unwrap();
                    drop(permit);
                }
            },
            || thread::sleep(PARK),
        )
    })
}

/// MARSYS's wait: `try_acquire`, else sleep `poll` and try again. The holder releases at a
/// uniformly random point of one poll period after the waiter's first try.
fn latency_polling(samples: u64, poll: Duration) -> Vec<f64> {
    let m = Marsys::new(1);
    let meet = Meet::new();
    let mut rng = Rng::new(meet.base.elapsed().as_nanos() as u64);
    thread::scope(|s| {
        s.spawn(|| {
            runtime().block_on(async {
                for i in 1..=samples {
                    wait_for(&meet.held, i);
                    meet.ready.store(i, Ordering::Release);
                    let idx = loop {
                        if let Some(idx) = m.try_acquire() {
                            break idx;
                        }
                        tokio::time::sleep(poll).await;
                    };
                    meet.got(i, || m.release(idx));
                }
            })
        });
        meet.holder(
            samples,
            || {
                let idx = m.try_acquire().expect("the waiter released it");
                let m = &m;
                move || m.release(idx)
            },
            || thread::sleep(Duration::from_nanos(rng.below(poll.as_nanos() as u64))),
        )
    })
}

/// p50, p99, mean (ns).
fn summary(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    [percentile(&v, 0.5), percentile(&v, 0.99), mean]
}

// ---------------------------------------------------------------------------------------------
// 3. Spread.

const SPREADS: [&str; 4] = ["LeastLoaded", "PowerOfTwo", "round robin", "first free"];
const SPREAD_MEMBERS: usize = 16;
const SPREAD_SLOTS: usize = 8;
const SPREAD_THREADS: usize = 48;

/// One lease by strategy `k` of `SPREADS`.
fn spread_acquire<'p>(p: &'p Pool<V>, k: usize, cursor: &AtomicUsize) -> genreg::Lease<'p, V> {
    let n = p.size();
    match k {
        0 | 1 => p.acquire().expect("never exhausted"),
        2 => {
            let start = cursor.fetch_add(1, Ordering::Relaxed);
            (0..n)
                .find_map(|d| p.acquire_member((start + d) % n).ok())
                .expect("never exhausted")
        }
        _ => (0..n)
            .find_map(|i| p.acquire_member(i).ok())
            .expect("never exhausted"),
    }
}

/// (mean of max/mean, p99 of max/mean, mean leases out, mean of the floor ceil(mean)/mean: the
/// best max/mean integer loads allow) while `SPREAD_THREADS` threads lease from `p` by
/// strategy `k` for `dur`.
fn spread_run(p: &Pool<V>, k: usize, dur: Duration) -> [f64; 4] {
    let stop = AtomicBool::new(false);
    let cursor = AtomicUsize::new(0);
    let start = Barrier::new(SPREAD_THREADS + 1);
    let n = p.size();
    let (mut ratios, out, floor) = thread::scope(|s| {
        for t in 0..SPREAD_THREADS {
            let (stop, cursor, start) = (&stop, &cursor, &start);
            s.spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let lease = spread_acquire(p, k, cursor);
                    black_box(*lease);
                    thread::sleep(Duration::from_micros(rng.below(400)));
                    drop(lease);
                    thread::sleep(Duration::from_micros(rng.below(100)));
                }
            });
        }
        start.wait();
        // Let the workload settle.
        thread::sleep(dur / 10);
        let t = Instant::now();
        let mut ratios = Vec::new();
        let mut out = 0.0;
        let mut floor = 0.0;
        while t.elapsed() < dur {
            let loads: Vec<usize> = (0..n).map(|i| p.load(i).unwrap()).collect();
            let sum: usize = loads.iter().sum();
            if sum > 0 {
                let mean = sum as f64 / n as f64;
                ratios.push(*loads.iter().max().unwrap() as f64 / mean);
                out += sum as f64;
                floor += sum.div_ceil(n) as f64 / mean;
            }
            thread::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::Relaxed);
        let samples = ratios.len() as f64;
        (ratios, out / samples, floor / samples)
    });
    assert_eq!(p.in_use(), 0, "every lease released");
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    [mean, percentile(&ratios, 0.99), out, floor]
}

fn bench_spread(reps: usize, dur: Duration) -> Vec<[f64; 4]> {
    let reg: Registry<V> = Registry::new();
    let ll = genreg_pool(
        &reg,
        "ll",
        SPREAD_MEMBERS,
        Selection::LeastLoaded,
        SPREAD_SLOTS,
    );
    let p2 = genreg_pool(
        &reg,
        "p2",
        SPREAD_MEMBERS,
        Selection::PowerOfTwo,
        SPREAD_SLOTS,
    );
    let mut runs: Vec<Vec<[f64; 4]>> = vec![Vec::new(); SPREADS.len()];
    for rep in 0..reps {
        for k in 0..SPREADS.len() {
            let k = (k + rep) % SPREADS.len();
            let pool = if k == 1 { &p2.0 } else { &ll.0 };
            runs[k].push(spread_run(pool, k, dur));
        }
    }
    runs.into_iter()
        .map(|r| [0, 1, 2, 3].map(|j| median(r.iter().map(|x| x[j]).collect())))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Child mode, for callgrind.

/// `--child PEER MEMBERS N` (for `valgrind --tool=callgrind --toggle-collect='*prof_loop*'`):
/// N acquire + release cycles of PEER (`genreg-ll`, `genreg-p2`, `marsys`, `semaphore`) on a
/// pool of MEMBERS, on one thread, in a loop function of its own.
fn child(peer: &str, n_members: usize, n: usize) {
    let s = subjects(n_members);
    let sum = match peer {
        "genreg-ll" => prof_loop(&s.ll, n),
        "genreg-ll-untimed" => prof_loop(&s.ll_untimed, n),
        "genreg-p2" => prof_loop(&s.p2, n),
        "marsys" => prof_loop(&s.marsys, n),
        "semaphore" => prof_loop(&s.sem, n),
        _ => panic!("unknown peer {peer}"),
    };
    println!("PER {n} (sum {sum})");
}

#[inline(never)]
fn prof_loop<P: Peer>(p: &P, n: usize) -> V {
    let mut sum = 0;
    for _ in 0..n {
        sum += p.cycle().expect("a member is free");
    }
    sum
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let arg = |k: usize| args.get(i + k).cloned().expect("--child PEER MEMBERS N");
        child(&arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap());
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let opt = |flag: &str, full: u64, quick_v: u64| -> u64 {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(if quick { quick_v } else { full }, |v| v.parse().unwrap())
    };
    let reps = opt("--reps", 7, 3) as usize;
    let min = Duration::from_millis(opt("--ms", 200, 30));
    let samples = opt("--samples", 3_000, 300);
    let polls = opt("--polls", 10, 2);
    let spread_ms = Duration::from_millis(opt("--spread-ms", 1_000, 200));
    // `--only cycles|latency|spread`: one section.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |section: &str| only.as_deref().is_none_or(|o| o == section);
    println!(
        "genreg pool benchmark ({} pass: median of {reps} interleaved repetitions of >= {} ms; \
         {samples} wake-ups; {polls} polled waits)",
        if quick { "quick" } else { "full" },
        min.as_millis()
    );

    if run("cycles") {
        bench_section_cycles(reps, min);
    }
    if run("latency") {
        bench_section_latency(samples, polls);
    }
    if run("spread") {
        bench_section_spread(reps, spread_ms);
    }
}

fn bench_section_cycles(reps: usize, min: Duration) {
    println!(
        "\n## Acquire + release (one lease, dropped at once), exclusive members \
         (Mcycles/s over all threads, median; in brackets: genreg LeastLoaded / this)"
    );
    println!("| members | threads | {} |", PEERS.join(" | "));
    println!("| ---: | ---: |{}", " ---: |".repeat(PEERS.len()));
    for n in SIZES {
        for threads in [1, 2] {
            let r = bench_cycles(n, threads, reps, min);
            let cells: Vec<String> = r
                .iter()
                .map(|x| format!("{x:.2} ({:.2}×)", r[0] / x))
                .collect();
            println!("| {n} | {threads} | {} |", cells.join(" | "));
        }
    }
}

fn bench_section_latency(samples: u64, polls: u64) {
    println!(
        "\n## Async wake-up latency: release -> the parked waiter holds its lease \
         (current-thread tokio runtime on another thread; {samples} samples)"
    );
    println!("| method | p50 | p99 | mean |");
    println!("| --- | ---: | ---: | ---: |");
    let mut lat: [Vec<f64>; 2] = Default::default();
    // Interleaved in chunks, so that both see the same machine.
    let chunks = 5;
    for c in 0..chunks {
        let per = samples.div_ceil(chunks);
        if c % 2 == 0 {
            lat[0].extend(latency_genreg(per));
            lat[1].extend(latency_semaphore(per));
        } else {
            lat[1].extend(latency_semaphore(per));
            lat[0].extend(latency_genreg(per));
        }
    }
    for (name, v) in [
        "genreg `acquire_async`",
        "tokio `Semaphore::acquire` + ArrayQueue",
    ]
    .iter()
    .zip(lat)
    {
        let [p50, p99, mean] = summary(v);
        println!(
            "| {name} | {} | {} | {} |",
            fmt_ns(p50),
            fmt_ns(p99),
            fmt_ns(mean)
        );
    }
    let poll = Duration::from_millis(500);
    println!("| MARSYS, poll every 500 ms (expected: uniform 0–500 ms, mean 250 ms) | | | |");
    if polls > 0 {
        let v = latency_polling(polls, poll);
        let all: Vec<String> = v.iter().map(|x| format!("{:.0}", x / 1e6)).collect();
        let max = v.iter().copied().fold(0.0, f64::max);
        let [p50, _, mean] = summary(v);
        println!(
            "| MARSYS, measured ({polls} samples: {} ms) | {} | {} (the max) | {} |",
            all.join(", "),
            fmt_ns(p50),
            fmt_ns(max),
            fmt_ns(mean)
        );
    }
}

fn bench_section_spread(reps: usize, spread_ms: Duration) {
    println!(
        "\n## Spread: {SPREAD_THREADS} threads, {SPREAD_MEMBERS} members x {SPREAD_SLOTS} slots, \
         leases held 0–400 µs (max / mean leases per member, sampled; median of runs)"
    );
    println!(
        "| selection | mean of max/mean | p99 of max/mean | leases out (mean) | floor: ceil(mean)/mean |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    let r = bench_spread(reps.min(3), spread_ms);
    for (name, [mean, p99, out, floor]) in SPREADS.iter().zip(r) {
        println!("| {name} | {mean:.2} | {p99:.2} | {out:.1} | {floor:.2} |");
    }
}
