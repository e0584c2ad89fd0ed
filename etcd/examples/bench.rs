//! What genreg-etcd costs on top of etcd, measured side by side in one run:
//!
//! 1. `register`, `unregister_if_same` and `get` through [`EtcdRegistry`] against the raw
//!    etcd-client request each one maps to (the same transaction or read, sent with a clone of
//!    `registry.client()`): sequential latency per operation, p50 and p99, and the ratio.
//! 2. [`Mirror::get`] against `genreg::Registry<Arc<Binding<V>>>::get` of the same 1000
//!    bindings: ns per lookup, and the ratio.
//! 3. The mirror's lag: from the moment a write's response returns to the moment
//!    `mirror.get(name)` shows the write's tag (a thread spin-polls the mirror).
//!
//! The two sides of 1 and 2 alternate (A B, then B A, ...) so that the machine's noise hits
//! both alike; each figure is a median over rounds. Timings are printed, never asserted.
//!
//! ```sh
//! cargo run --release -p genreg-etcd --example bench              # ~20 s on 2 cores
//! cargo run --release -p genreg-etcd --example bench -- --quick   # CI smoke test, well under 20 s
//! ```
//!
//! The benchmark starts its own single-member etcd with [`genreg_etcd::local::Etcd`] (`etcd`
//! from `PATH`, or `GENREG_ETCD_BIN`) on free loopback ports with its data on tmpfs
//! (`/dev/shm`), and kills it and removes its directory at the end. With
//! `GENREG_ETCD_ENDPOINTS=http://h1:2379,http://h2:2379` it uses that cluster instead, under a
//! key root of its own that it leaves empty.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use genreg_etcd::local::Etcd;
use genreg_etcd::{Binding, EtcdRegistry, Json, Mirror, Options, Tag};

/// How much each section measures.
struct Plan {
    quick: bool,
    /// Section 1: rounds, and operations of each kind per side per round.
    op_rounds: usize,
    ops: usize,
    /// Section 2: rounds, and passes over the 1000 names per side per round.
    lookup_rounds: usize,
    passes: usize,
    /// Section 3: writes (half registrations of new names, half replacements).
    lag_writes: usize,
}

const NAMES: usize = 1000;

fn main() {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!(
                    "usage: cargo run --release -p genreg-etcd --example bench [-- --quick]\n\
                     GENREG_ETCD_ENDPOINTS=url,url uses that etcd instead of starting one; \
                     GENREG_ETCD_BIN=path picks the etcd binary."
                );
                return;
            }
            other => {
                eprintln!("bench: unknown argument `{other}` (try --help)");
                std::process::exit(2);
            }
        }
    }
    let plan = if quick {
        Plan {
            quick,
            op_rounds: 5,
            ops: 40,
            lookup_rounds: 5,
            passes: 20,
            lag_writes: 100,
        }
    } else {
        Plan {
            quick,
            op_rounds: 21,
            ops: 400,
            lookup_rounds: 21,
            passes: 200,
            lag_writes: 500,
        }
    };
    let started = Instant::now();

    // Our own etcd unless we were given one; `_server` kills it and removes its directory on
    // drop (also when a panic unwinds).
    let (_server, endpoints, where_) = match std::env::var("GENREG_ETCD_ENDPOINTS") {
        Ok(list) if !list.trim().is_empty() => {
            let eps: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            let w = format!("the etcd at {}", eps.join(","));
            (None, eps, w)
        }
        _ => {
            let s = match Etcd::try_start() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "bench: {e}\n(or set GENREG_ETCD_ENDPOINTS=http://host:port,... to use a \
                         running etcd)"
                    );
                    std::process::exit(1);
                }
            };
            let eps = s.endpoints();
            let w = format!(
                "a single-member etcd started by the benchmark on {} (data on {})",
                s.endpoint(),
                s.dir().parent().unwrap_or(Path::new("?")).display()
            );
            (Some(s), eps, w)
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let root = format!(
        "genreg-bench-{}-{}/",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let reg: EtcdRegistry<String> = rt
        .block_on(EtcdRegistry::connect_with(
            &endpoints,
            Options::default().root(root.clone()),
            Json,
        ))
        .expect("connect to etcd");
    let version = rt
        .block_on(async { reg.client().clone().status().await })
        .map(|s| s.version().to_string())
        .unwrap_or_else(|_| "?".into());

    let ops = rt.block_on(section_ops(&reg, &root, &plan));
    let (mirror, lookups) = rt.block_on(section_setup_mirror(&reg)).expect("mirror");
    let lookups = section_lookups(&mirror, &lookups, &plan);
    let lag = section_lag(&rt, &reg, &mirror, &plan);

    drop(mirror);
    // Revoking the lease removes every key the benchmark made (all live under it).
    rt.block_on(reg.close()).expect("close");
    rt.shutdown_timeout(Duration::from_secs(2));

    report(
        &plan,
        &version,
        &where_,
        &ops,
        &lookups,
        &lag,
        started.elapsed(),
    );
}

// ---------------------------------------------------------------------------------------------
// Section 1: genreg-etcd against raw etcd-client requests
// ---------------------------------------------------------------------------------------------

const REGISTER: usize = 0;
const GET: usize = 1;
const UNREGISTER: usize = 2;
const KINDS: [&str; 3] = ["register", "get (linearizable)", "unregister_if_same"];
const GENREG: usize = 0;
const RAW: usize = 1;

/// Latencies in µs: `[kind][side]`, one vector per round.
type OpSamples = Vec<Vec<Vec<Vec<f64>>>>;

async fn section_ops(reg: &EtcdRegistry<String>, root: &str, plan: &Plan) -> OpSamples {
    let mut raw = reg.client().clone();
    let prefix = format!("{root}n/");
    let lease = reg.lease();
    let value = "10.1.2.3:7000".to_string();
    let mut next_instance: u64 = 0x6265_6e63_0000_0000;
    let mut out: OpSamples = vec![vec![Vec::new(); 2]; 3];

    // Round 0 is a warm-up (connections, etcd's caches, the allocator), not recorded.
    for round in 0..=plan.op_rounds {
        let n = if round == 0 { 50 } else { plan.ops };
        let mut samples = vec![vec![Vec::new(); 2]; 3];
        let mut tags: Vec<Tag> = Vec::with_capacity(n);
        let mut revs: Vec<(i64, Vec<u8>)> = Vec::with_capacity(n);
        let name = |side: usize, i: usize| {
            format!(
                "{}{round:03}-{i:05}",
                if side == GENREG { 'g' } else { 'r' }
            )
        };
        for kind in [REGISTER, GET, UNREGISTER] {
            for i in 0..n {
                let order = if (i + round) % 2 == 0 {
                    [GENREG, RAW]
                } else {
                    [RAW, GENREG]
                };
                for side in order {
                    let name = name(side, i);
                    let t = Instant::now();
                    match (kind, side) {
                        (REGISTER, GENREG) => {
                            let r = reg.register(&name, value.clone()).await.expect("register");
                            tags.push(r.detach());
                        }
                        (REGISTER, _) => {
                            next_instance += 1;
                            let stored = raw_register(
                                &mut raw,
                                &prefix,
                                &name,
                                &value,
                                next_instance,
                                lease,
                            )
                            .await;
                            revs.push(stored);
                        }
                        (GET, GENREG) => {
                            let b = reg.get(&name).await.expect("get");
                            black_box(b.expect("bound"));
                        }
                        (GET, _) => {
                            let key = format!("{prefix}{name}").into_bytes();
                            let resp = raw.get(key, None).await.expect("raw get");
                            black_box(resp.kvs().first().expect("bound"));
                        }
                        (_, GENREG) => {
                            reg.unregister_if_same(&name, tags[i])
                                .await
                                .expect("unregister_if_same");
                        }
                        (_, _) => {
                            let (rev, _) = std::mem::take(&mut revs[i]);
                            raw_unregister(&mut raw, root, &name, rev).await;
                        }
                    }
                    samples[kind][side].push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        if round > 0 {
            for (kind, per_side) in samples.into_iter().enumerate() {
                for (side, s) in per_side.into_iter().enumerate() {
                    out[kind][side].push(s);
                }
            }
        }
    }
    out
}

/// What `register` sends: `create_revision(key) == 0 → put under the lease, else get`, with a
/// record laid out as the crate's (format mark, instance id, a random write id, empty
/// metadata, JSON); returns the revision (the tag's generation) and the record stored.
async fn raw_register(
    raw: &mut Client,
    prefix: &str,
    name: &str,
    value: &String,
    instance: u64,
    lease: i64,
) -> (i64, Vec<u8>) {
    let key = format!("{prefix}{name}").into_bytes();
    let payload = serde_json::to_vec(value).expect("json");
    let mut record = Vec::with_capacity(24 + payload.len());
    record.extend_from_slice(b"gr1\0");
    record.extend_from_slice(&instance.to_be_bytes());
    record.extend_from_slice(&write_id().to_be_bytes());
    record.extend_from_slice(&0u32.to_be_bytes()); // no metadata
    record.extend_from_slice(&payload);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            record.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let resp = raw.txn(txn).await.expect("raw register");
    assert!(resp.succeeded(), "raw register of {name} refused");
    (resp.header().map_or(0, |h| h.revision()), record)
}

/// What `unregister_if_same` sends for a binding its registry made: `mod_revision(key) ==
/// generation → delete and write the removal marker (one key: reason, nonce, name), else read
/// back the key and the marker`.
async fn raw_unregister(raw: &mut Client, root: &str, name: &str, rev: i64) {
    let key = format!("{root}n/{name}").into_bytes();
    let marker_key = format!("{root}r").into_bytes();
    let mut marker = vec![1u8];
    marker.extend_from_slice(&write_id().to_be_bytes());
    marker.extend_from_slice(name.as_bytes());
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
        .and_then([
            TxnOp::delete(key.clone(), None),
            TxnOp::put(marker_key.clone(), marker, None),
        ])
        .or_else([TxnOp::get(key, None), TxnOp::get(marker_key, None)]);
    let resp = raw.txn(txn).await.expect("raw unregister");
    assert!(resp.succeeded(), "raw unregister of {name} refused");
}

/// A write id as the crate makes one: 64 bits from a fresh `RandomState`.
fn write_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// Section 2: Mirror::get against the in-process registry
// ---------------------------------------------------------------------------------------------

/// Binds `NAMES` names through etcd, starts a mirror, and returns it with the names in a
/// shuffled lookup order.
async fn section_setup_mirror(
    reg: &EtcdRegistry<String>,
) -> Result<(Mirror<String>, Vec<String>), genreg_etcd::Error> {
    let names: Vec<String> = (0..NAMES).map(|i| format!("svc-{i:04}")).collect();
    for (i, n) in names.iter().enumerate() {
        let r = reg
            .register(n, format!("10.0.{}.{}:7000", i / 256, i % 256))
            .await
            .map_err(|r| r.error)?;
        r.detach();
    }
    let mirror = reg.mirror().await?;
    assert_eq!(mirror.local().len(), NAMES, "the mirror lists every name");
    // A fixed shuffle (xorshift), so that lookups do not walk the table in insertion order.
    let mut order = names;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    Ok((mirror, order))
}

/// ns per lookup, one value per round, for each way of looking up.
struct Lookups {
    /// `Mirror::get`.
    mirror: Vec<f64>,
    /// `Registry::get` (value and tag) of an in-process registry holding the same bindings.
    local: Vec<f64>,
    /// `Registry::pin().get(name).map(|e| e.value().clone())`: the expression `Mirror::get`
    /// runs, on the in-process registry (no tag read, no indirection).
    local_value: Vec<f64>,
}

fn section_lookups(mirror: &Mirror<String>, order: &[String], plan: &Plan) -> Lookups {
    // The same bindings in a plain in-process registry (fresh allocations, not shared Arcs).
    let local: genreg::Registry<Arc<Binding<String>>> = genreg::Registry::new();
    for name in order {
        let b = mirror.get(name).expect("mirrored");
        local
            .register(name, Arc::new((*b).clone()))
            .expect("register locally")
            .detach();
    }
    let per_lookup =
        |t: Instant, passes: usize| t.elapsed().as_secs_f64() * 1e9 / (passes * order.len()) as f64;
    let run = |side: usize, passes: usize| -> f64 {
        let t = Instant::now();
        for _ in 0..passes {
            for name in order {
                let name = black_box(name.as_str());
                match side {
                    0 => {
                        black_box(mirror.get(name));
                    }
                    1 => {
                        black_box(local.get(name));
                    }
                    _ => {
                        black_box(local.pin().get(name).map(|e| e.value().clone()));
                    }
                }
            }
        }
        per_lookup(t, passes)
    };
    for side in 0..3 {
        run(side, plan.passes / 4 + 1);
    }
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..plan.lookup_rounds {
        // The order rotates from round to round.
        for k in 0..3 {
            let side = (round + k) % 3;
            out[side].push(run(side, plan.passes));
        }
    }
    let [mirror, local, local_value] = out;
    Lookups {
        mirror,
        local,
        local_value,
    }
}

// ---------------------------------------------------------------------------------------------
// Section 3: the mirror's lag
// ---------------------------------------------------------------------------------------------

/// Per write: signed lag in µs (negative: visible before the response returned), and whether
/// it was a replacement; plus the writes' own latency in µs.
struct Lag {
    lag: Vec<(f64, bool)>,
    write: Vec<f64>,
}

fn section_lag(
    rt: &tokio::runtime::Runtime,
    reg: &EtcdRegistry<String>,
    mirror: &Mirror<String>,
    plan: &Plan,
) -> Lag {
    // The spinner is armed with (name, tag seen before the write) just before each write, and
    // spin-polls `mirror.get(name)` until the tag changes; it reports when, and to what.
    let (arm_tx, arm_rx) = mpsc::channel::<Option<(String, Option<Tag>)>>();
    let (seen_tx, seen_rx) = mpsc::channel::<(Instant, Tag)>();
    let mut out = Lag {
        lag: Vec::with_capacity(plan.lag_writes),
        write: Vec::with_capacity(plan.lag_writes),
    };
    thread::scope(|s| {
        s.spawn(move || {
            while let Ok(Some((name, before))) = arm_rx.recv() {
                loop {
                    let now = mirror.get(&name).map(|b| b.tag);
                    if let Some(tag) = now.filter(|_| now != before) {
                        let t = Instant::now();
                        seen_tx.send((t, tag)).expect("writer alive");
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
        });
        let mut current = None;
        // Warm-up writes first (not recorded).
        let warm = 10;
        for i in 0..warm + plan.lag_writes {
            let replace = i % 2 == 1;
            let name = format!("lag-{:05}", i / 2);
            let before = if replace {
                current
                    .as_ref()
                    .map(|r: &genreg_etcd::Registration<String, Json>| r.tag())
            } else {
                None
            };
            arm_tx
                .send(Some((name.clone(), before)))
                .expect("spinner alive");
            let value = format!("10.9.{}.{}:7000", i / 256 % 256, i % 256);
            let (tag, sent, returned) = rt.block_on(async {
                let sent = Instant::now();
                let tag = if replace {
                    let r = current.as_mut().expect("registered");
                    r.replace(value).await.expect("replace")
                } else {
                    if let Some(old) = current.take() {
                        old.detach();
                    }
                    let r = reg.register(&name, value).await.expect("register");
                    let t = r.tag();
                    current = Some(r);
                    t
                };
                (tag, sent, Instant::now())
            });
            let (seen_at, seen) = seen_rx.recv().expect("spinner alive");
            assert_eq!(seen, tag, "the mirror showed another tag for {name}");
            if i >= warm {
                let lag = if seen_at >= returned {
                    (seen_at - returned).as_secs_f64() * 1e6
                } else {
                    -(returned - seen_at).as_secs_f64() * 1e6
                };
                out.lag.push((lag, replace));
                out.write.push((returned - sent).as_secs_f64() * 1e6);
            }
        }
        if let Some(r) = current.take() {
            r.detach();
        }
        arm_tx.send(None).expect("spinner alive");
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let idx = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[idx]
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// The median of the per-round ratios `a[i] / b[i]`, and their range.
fn round_ratios(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(0.0, f64::max);
    (median(&r), lo, hi)
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio <= target { "met" } else { "missed" }
}

fn report(
    plan: &Plan,
    version: &str,
    where_: &str,
    ops: &OpSamples,
    lookups: &Lookups,
    lag: &Lag,
    took: Duration,
) {
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let command = if plan.quick {
        "cargo run --release -p genreg-etcd --example bench -- --quick"
    } else {
        "cargo run --release -p genreg-etcd --example bench"
    };
    println!(
        "## genreg-etcd benchmark{}",
        if plan.quick { " (quick)" } else { "" }
    );
    println!();
    println!("- machine: {nproc} CPUs (nproc), {cpu}");
    println!("- etcd {version}: {where_}");
    println!("- command: `{command}`");
    println!();

    println!(
        "### 1. Sequential latency per operation: genreg-etcd against the raw etcd-client request \
         ({} rounds x {} ops per side, interleaved)",
        plan.op_rounds, plan.ops
    );
    println!();
    println!(
        "| operation | genreg p50 µs | raw p50 µs | ratio p50 | genreg p99 µs | raw p99 µs | ratio p99 | target | verdict (p50) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (kind, label) in KINDS.iter().enumerate() {
        let g: Vec<f64> = ops[kind][GENREG].concat();
        let r: Vec<f64> = ops[kind][RAW].concat();
        // The p50 ratio is the median of the rounds' ratios; p99 is over every sample.
        let (ratio, lo, hi) = round_ratios(
            &ops[kind][GENREG]
                .iter()
                .map(|v| median(v))
                .collect::<Vec<_>>(),
            &ops[kind][RAW].iter().map(|v| median(v)).collect::<Vec<_>>(),
        );
        let (g99, r99) = (percentile(&g, 0.99), percentile(&r, 0.99));
        println!(
            "| {label} | {:.0} | {:.0} | **{ratio:.3}×** ({lo:.2}–{hi:.2}) | {g99:.0} | {r99:.0} | {:.2}× | ≤ 1.10× | {} |",
            median(&g),
            median(&r),
            g99 / r99,
            verdict(ratio, 1.10)
        );
    }
    println!();

    println!(
        "### 2. Lookup: Mirror::get against genreg::Registry<Arc<Binding<String>>> in-process \
         ({NAMES} names, {} rounds x {}k lookups per side, order rotating)",
        plan.lookup_rounds, plan.passes
    );
    println!();
    println!("| lookup | ns | Mirror::get / this | target | verdict |");
    println!("| --- | ---: | ---: | ---: | --- |");
    println!("| `Mirror::get` | {:.1} | | | |", median(&lookups.mirror));
    let (ratio, lo, hi) = round_ratios(&lookups.mirror, &lookups.local);
    println!(
        "| `Registry::get` in-process (value + tag) | {:.1} | **{ratio:.3}×** ({lo:.2}–{hi:.2}) | ≤ 1.2× | {} |",
        median(&lookups.local),
        verdict(ratio, 1.2)
    );
    let (ratio, lo, hi) = round_ratios(&lookups.mirror, &lookups.local_value);
    println!(
        "| `pin().get(name).map(value.clone())` in-process (what `Mirror::get` runs) | {:.1} | {ratio:.3}× ({lo:.2}–{hi:.2}) | (reference) | |",
        median(&lookups.local_value),
    );
    println!();

    println!(
        "### 3. Mirror lag: write response returned -> mirror.get shows the new tag ({} writes)",
        lag.lag.len()
    );
    println!();
    println!(
        "| writes | n | lag p50 µs | lag p99 µs | lag max µs | visible when the response returned | write p50 µs |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let rows: [(&str, Option<bool>); 3] = [
        ("register (new name)", Some(false)),
        ("replace", Some(true)),
        ("all", None),
    ];
    for (label, which) in rows {
        let sel: Vec<(f64, f64)> = lag
            .lag
            .iter()
            .zip(&lag.write)
            .filter(|((_, r), _)| which.is_none_or(|w| *r == w))
            .map(|((l, _), w)| (*l, *w))
            .collect();
        let l: Vec<f64> = sel.iter().map(|(l, _)| l.max(0.0)).collect();
        let w: Vec<f64> = sel.iter().map(|(_, w)| *w).collect();
        let early = sel.iter().filter(|(l, _)| *l <= 0.0).count();
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0}% | {:.0} |",
            sel.len(),
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 1.0),
            100.0 * early as f64 / sel.len().max(1) as f64,
            percentile(&w, 0.5)
        );
    }
    println!();
    println!(
        "(total {:.1} s; timings are reported, never asserted)",
        took.as_secs_f64()
    );
}
