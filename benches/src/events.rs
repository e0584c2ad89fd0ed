//! The event log's costs, side by side in one run (BENCHMARKS.md, "Events"):
//!
//! ```sh
//! cargo run --release -p genreg-bench --bin events            # ~1 min
//! cargo run --release -p genreg-bench --bin events -- --quick # a short pass
//! ```
//!
//! 1. **The write path**: a register + `unregister_if_same` cycle on one thread, with the log
//!    off, on with no watcher, on with 1 and with 4 watchers (threads draining a blocking
//!    `Watcher`); the configurations are interleaved, and each figure is the median of the
//!    repetitions, in ns per cycle (two commits).
//! 2. **Delivery**: one writer commits registrations (each carrying its commit time) and
//!    removals as fast as it can; one reader receives them, through a genreg `Watcher`, or
//!    through a `tokio::sync::broadcast` channel of the same capacity that the writer feeds
//!    with the same events (from a registry without a log). Throughput (events received per
//!    second) and lag (commit to receipt, p50 and p99, sampled on every registration).
//! 3. **`subscribe`** on a registry of 1,000 and of 1,000,000 names: the median time to get
//!    the snapshot and the watcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use genreg::{Builder, EventKind, Filter, Registry, Revision, Tag};

const POOL: usize = 1024;

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:08}")).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// ns per register + unregister_if_same cycle for `dur`.
fn write_path(events: bool, watchers: usize, dur: Duration) -> f64 {
    let b = Registry::<u64>::builder();
    let reg = if events {
        b.events(Builder::<u64>::DEFAULT_HISTORY).build()
    } else {
        b.build()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..watchers)
        .map(|_| {
            let mut w = reg.watch(Filter::all(), reg.revision()).unwrap();
            let (stop, reg) = (Arc::clone(&stop), reg.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match w.next_timeout(Duration::from_millis(10)) {
                        Some(Ok(_)) => n += 1,
                        // A watcher that lags resumes from the oldest revision kept.
                        Some(Err(_)) => w = reg.watch(Filter::all(), reg.revision()).unwrap(),
                        None => {}
                    }
                }
                n
            })
        })
        .collect();
    let pool = names(POOL, "w");
    let start = Instant::now();
    let mut cycles = 0u64;
    while start.elapsed() < dur {
        for name in &pool {
            let tag = reg.register_detached(name, cycles).unwrap();
            reg.unregister_if_same(name, tag).unwrap();
            cycles += 1;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / cycles as f64;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    ns
}

struct Delivery {
    events_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    lagged: u64,
}

impl Delivery {
    /// From what a reader received in `secs` and the lags it sampled (ns).
    fn new(got: u64, secs: f64, lags: Vec<u64>, lagged: u64) -> Delivery {
        let (p50_us, p99_us) = percentiles(lags);
        Delivery {
            events_per_s: got as f64 / secs,
            p50_us,
            p99_us,
            lagged,
        }
    }
}

fn percentiles(mut lags: Vec<u64>) -> (f64, f64) {
    if lags.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    lags.sort_unstable();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    (at(0.5), at(0.99))
}

/// genreg: a writer thread, a `Watcher` on this thread.
fn deliver_genreg(cycles: usize, history: usize) -> Delivery {
    let reg: Registry<u64> = Registry::builder().events(history).build();
    let epoch = Instant::now();
    let mut w = reg.watch(Filter::all(), Revision::ZERO).unwrap();
    let writer = {
        let reg = reg.clone();
        thread::spawn(move || {
            let pool = names(POOL, "d");
            for i in 0..cycles {
                let name = &pool[i % POOL];
                let ts = epoch.elapsed().as_nanos() as u64;
                let tag = reg.register_detached(name, ts).unwrap();
                reg.unregister_if_same(name, tag).unwrap();
            }
        })
    };
    // One writer, no lost CAS: revisions 1 ..= 2 * cycles, all events.
    let last = 2 * cycles as u64;
    let mut got = 0u64;
    let mut lags = Vec::with_capacity(cycles);
    let start = Instant::now();
    while w.revision().as_raw() < last {
        match w.next() {
            Some(Ok(e)) => {
                got += 1;
                if let EventKind::Registered {
                    value: Some(ts), ..
                } = e.kind()
                {
                    lags.push(epoch.elapsed().as_nanos() as u64 - ts);
                }
            }
            // Fell a whole history behind: go on from the oldest event kept (or from now).
            Some(Err(genreg::WatchError::Lagged { oldest, .. })) => {
                w = reg
                    .watch(Filter::all(), Revision::from_raw(oldest.as_raw() - 1))
                    .unwrap_or_else(|_| reg.watch(Filter::all(), reg.revision()).unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    let lagged = last - got;
    let secs = start.elapsed().as_secs_f64();
    writer.join().unwrap();
    Delivery::new(got, secs, lags, lagged)
}

/// The same events through `tokio::sync::broadcast`, from a registry without a log.
#[derive(Clone)]
#[allow(dead_code)] // the fields are carried, as a watcher's events carry them
struct BEvent {
    revision: u64,
    name: Arc<str>,
    tag: Tag,
    registered_at: Option<u64>,
}

fn deliver_broadcast(cycles: usize, capacity: usize) -> Delivery {
    let reg: Registry<u64> = Registry::new();
    let (tx, mut rx) = tokio::sync::broadcast::channel::<BEvent>(capacity);
    let epoch = Instant::now();
    let writer = thread::spawn(move || {
        let pool: Vec<Arc<str>> = names(POOL, "d").into_iter().map(Arc::from).collect();
        let mut revision = 0;
        for i in 0..cycles {
            let name = &pool[i % POOL];
            let ts = epoch.elapsed().as_nanos() as u64;
            let tag = reg.register_detached(name, ts).unwrap();
            revision += 1;
            let _ = tx.send(BEvent {
                revision,
                name: Arc::clone(name),
                tag,
                registered_at: Some(ts),
            });
            reg.unregister_if_same(name, tag).unwrap();
            revision += 1;
            let _ = tx.send(BEvent {
                revision,
                name: Arc::clone(name),
                tag,
                registered_at: None,
            });
        }
    });
    let expected = 2 * cycles as u64;
    let (mut got, mut lagged) = (0u64, 0u64);
    let mut lags = Vec::with_capacity(cycles);
    let start = Instant::now();
    while got + lagged < expected {
        match rx.blocking_recv() {
            Ok(e) => {
                got += 1;
                if let Some(ts) = e.registered_at {
                    lags.push(epoch.elapsed().as_nanos() as u64 - ts);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged += n,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    writer.join().unwrap();
    Delivery::new(got, secs, lags, lagged)
}

/// Median seconds of `subscribe(Filter::all())` on a registry of `n` names.
fn subscribe_cost(n: usize, reps: usize) -> f64 {
    let reg: Registry<u64> = Registry::builder()
        .capacity(n)
        .events(Builder::<u64>::DEFAULT_HISTORY)
        .build();
    for (i, name) in names(n, "s").iter().enumerate() {
        reg.register_detached(name, i as u64).unwrap();
    }
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            let (snap, w) = reg.subscribe(Filter::all()).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(snap.len(), n);
            drop((snap, w));
            secs
        })
        .collect();
    median(times)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (reps, dur, cycles) = if quick {
        (3, Duration::from_millis(200), 200_000)
    } else {
        (7, Duration::from_millis(500), 1_000_000)
    };
    println!(
        "genreg events benchmark ({} pass)",
        if quick { "quick" } else { "full" }
    );

    println!("\n## Write path (register + unregister_if_same, one writer thread), ns per cycle");
    let configs: [(&str, bool, usize); 4] = [
        ("events off", false, 0),
        ("on, no watcher", true, 0),
        ("on, 1 watcher", true, 1),
        ("on, 4 watchers", true, 4),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for rep in 0..reps {
        for k in 0..configs.len() {
            // Rotate the order every repetition.
            let k = (k + rep) % configs.len();
            let (_, ev, w) = configs[k];
            results[k].push(write_path(ev, w, dur));
        }
    }
    let base = median(results[0].clone());
    println!("| configuration | ns/cycle (median of {reps}) | vs off |");
    println!("| --- | --- | --- |");
    for (k, (label, _, _)) in configs.iter().enumerate() {
        let m = median(results[k].clone());
        println!("| {label} | {m:.1} | {:.2}x |", m / base);
    }

    println!(
        "\n## Delivery to one reader ({cycles} cycles = {} events), capacity 4096",
        2 * cycles
    );
    println!("| channel | events/s (M) | lag p50 (µs) | lag p99 (µs) | lost to lag |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rows: Vec<(&str, Vec<Delivery>)> =
        vec![("genreg Watcher", vec![]), ("tokio broadcast", vec![])];
    for rep in 0..reps.min(5) {
        for k in 0..2 {
            let k = (k + rep) % 2;
            let d = if k == 0 {
                deliver_genreg(cycles, 4096)
            } else {
                deliver_broadcast(cycles, 4096)
            };
            rows[k].1.push(d);
        }
    }
    for (label, ds) in &rows {
        let rate = median(ds.iter().map(|d| d.events_per_s).collect());
        let p50 = median(ds.iter().map(|d| d.p50_us).collect());
        let p99 = median(ds.iter().map(|d| d.p99_us).collect());
        let lost = median(ds.iter().map(|d| d.lagged as f64).collect());
        println!(
            "| {label} | {:.2} | {p50:.1} | {p99:.1} | {lost:.0} |",
            rate / 1e6
        );
    }

    println!("\n## subscribe (snapshot + watcher)");
    println!("| names | median time |");
    println!("| --- | --- |");
    for (n, r) in [(1_000, 9), (1_000_000, if quick { 1 } else { 3 })] {
        let s = subscribe_cost(n, r);
        println!("| {n} | {:.3} ms |", s * 1e3);
    }
}
