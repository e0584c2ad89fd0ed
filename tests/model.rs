//! Property tests: random operation sequences applied to the registry and to a sequential model
//! (`tests/support/ops.rs`, the same harness the fuzz targets use), compared after every step.
//!
//! Each op is decoded with `arbitrary` from its own small chunk of bytes, so shrinking a failing
//! case drops whole operations and simplifies the rest towards the first variant.
//!
//! `PROPTEST_CASES` sets the number of cases (default 256; 4 under Miri):
//! `MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance" cargo +nightly miri test --test model`

#[path = "support/ops.rs"]
mod ops;

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;

use ops::{
    AcquireSel, AnyNameSel, ConcurrentInput, Config, InstSel, KeepSel, KeySel, MetaSel, NameSel,
    Op, OwnerSel, PinnedOp, PoolNameSel, PoolSpec, PoolTagSel, PrefixSel, QuerySel, StateSel,
    TagSel, TtlKind, TtlSel, run_concurrent, run_sequential,
};

fn config(default_cases: u32) -> ProptestConfig {
    // `ProptestConfig::default()` reads PROPTEST_CASES; only fill in our default without it.
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = if cfg!(miri) { 4 } else { default_cases };
    }
    if cfg!(miri) {
        // Miri's isolation forbids reading the regressions file.
        c.failure_persistence = None;
    }
    c
}

fn decode_ops(chunks: &[Vec<u8>]) -> Vec<Op> {
    chunks
        .iter()
        .filter_map(|c| Op::arbitrary_take_rest(Unstructured::new(c)).ok())
        .collect()
}

fn cfg(seed: u64) -> Config {
    Config {
        capacity: 1,
        seed,
        owned_collector: true,
        // Half the cases without the event log: the core paths must hold both ways.
        events: seed % 2 == 0,
        // A third of the cases bounded, to 1 to 4 bindings (the name space is 4 names plus
        // auto names and edge cases: registrations meet the bound often).
        max_entries: (seed % 3 == 0).then_some(1 + (seed >> 8) as usize % 4),
        // Two fifths of the cases remove an entry critical for 0 to 2 ticks.
        critical_after: (seed % 5 < 2).then_some((seed >> 16) % 3),
    }
}

/// Liveness-heavy sequences: most chunks decode to a TTL registration, a keepalive, a move of
/// the clock (0 to 3 ticks; TTLs are 0 to 5), a reap, a purge or a health record, with names
/// from the four pool names only, so that expiry, renewal, reaping and re-registration of the
/// same names meet within a few dozen ops. The rest decode to any op, as `decode_ops` does.
fn decode_live_ops(chunks: &[Vec<u8>]) -> Vec<Op> {
    chunks
        .iter()
        .filter_map(|c| {
            let (sel, rest) = c.split_first()?;
            if *sel >= 176 {
                return Op::arbitrary_take_rest(Unstructured::new(rest)).ok();
            }
            let b = |i: usize| rest.get(i).copied().unwrap_or(0);
            let name = NameSel(b(0) % 4);
            let tag = if b(1) % 6 == 0 {
                TagSel::Seen(u16::from(b(2)))
            } else {
                TagSel::Current
            };
            Some(match sel % 32 {
                0..=4 => Op::RegisterTtl {
                    name,
                    ttl: TtlSel(b(1)),
                    kind: match b(2) % 5 {
                        0 | 1 => TtlKind::Guard,
                        2 | 3 => TtlKind::Detached,
                        _ if b(3) % 2 == 0 => TtlKind::Weak(OwnerSel::New),
                        _ => TtlKind::Weak(OwnerSel::Existing(b(3))),
                    },
                    meta: (b(4) % 3 == 0).then_some(MetaSel {
                        kind: b(4),
                        caps: b(5),
                        region: b(3),
                    }),
                },
                5..=8 => Op::Keepalive {
                    target: match b(3) % 5 {
                        0 | 1 => KeepSel::Guard(b(1)),
                        2 | 3 => KeepSel::Name { name, tag },
                        _ => KeepSel::Expired(b(1)),
                    },
                },
                9..=12 => Op::AdvanceClock { ticks: b(0) },
                13 | 14 => Op::Reap,
                15 => Op::PurgeDead,
                16..=18 => Op::SetHealth {
                    name,
                    tag,
                    state: StateSel(b(3)),
                    record: b(4) % 2 == 0,
                },
                19 => Op::GetHealth { name },
                20 => Op::Find {
                    query: QuerySel {
                        kind: 0,
                        all: Vec::new(),
                        any: None,
                        region: 0,
                        prefix: 0,
                        limit: 3,
                        healthy: b(1) % 4 != 0,
                    },
                },
                21 if b(3) % 2 == 0 => Op::Get { name },
                21 => Op::Read { name },
                22 => Op::Contains { name },
                23 => Op::GuardCheck { guard: b(1) },
                24 => Op::DropGuard { guard: b(1) },
                25 => Op::UnregisterIfSame { name, tag },
                26 if b(3) % 2 == 0 => Op::ReplaceIfSame { name, tag },
                26 => Op::GuardReplace { guard: b(1) },
                27 => Op::Len,
                28 => Op::Register { name },
                29 => Op::DropOwner { owner: b(1) },
                30 => Op::UpdateMetadata {
                    name,
                    tag,
                    meta: MetaSel {
                        kind: b(4),
                        caps: b(5),
                        region: 0,
                    },
                },
                _ => Op::Entries,
            })
        })
        .collect()
}

/// Pool-heavy sequences: most chunks decode to a pool registration (1 to 4 members,
/// `max_in_flight` 1 to 3, both selections, names that collide with agents, pools and
/// members), a lease (any, a member, for a key; from a handle or the registry, agents' tasks
/// included), a dropped lease, a pool's removal (by name, by a maybe stale tag, by its guard),
/// the pool reads and statistics, or an agent's write on a pool's names; the rest decode to
/// any op, as `decode_ops` does.
fn decode_pool_ops(chunks: &[Vec<u8>]) -> Vec<Op> {
    chunks
        .iter()
        .filter_map(|c| {
            let (sel, rest) = c.split_first()?;
            if *sel >= 200 {
                return Op::arbitrary_take_rest(Unstructured::new(rest)).ok();
            }
            let b = |i: usize| rest.get(i).copied().unwrap_or(0);
            let any = AnyNameSel(b(0) % 16);
            Some(match sel % 32 {
                0..=3 => Op::RegisterPool {
                    name: PoolNameSel(b(0)),
                    spec: PoolSpec {
                        size: b(1),
                        max: b(2),
                        power_of_two: b(3) % 2 == 0,
                        guard: b(3) % 4 < 2,
                        plain: b(4) % 4 == 0,
                    },
                },
                4..=9 => Op::Acquire {
                    pool: b(0),
                    how: match b(1) % 4 {
                        0 | 1 => AcquireSel::Any,
                        2 => AcquireSel::Member(b(2)),
                        _ => AcquireSel::Key(KeySel(b(2))),
                    },
                },
                10 | 11 => Op::RegistryAcquire {
                    name: any,
                    key: (b(1) % 2 == 0).then_some(KeySel(b(2))),
                },
                12..=16 => Op::DropLease { lease: b(0) },
                17 => Op::UnregisterPool {
                    name: any,
                    tag: match b(1) % 3 {
                        0 => None,
                        1 => Some(PoolTagSel::Seen(b(2))),
                        _ => Some(PoolTagSel::Forged(u64::from(b(2)))),
                    },
                },
                18 => Op::PoolGuard {
                    guard: b(0),
                    how: b(1),
                },
                19..=21 => Op::PoolRead {
                    name: any,
                    other: AnyNameSel(b(1) % 16),
                    prefix: b(2),
                },
                22 | 23 => Op::PoolStats {
                    pool: b(0),
                    reset: b(1) % 4 == 0,
                },
                24..=26 => Op::NameCall {
                    name: any,
                    tag: if b(1) % 4 == 0 {
                        TagSel::Seen(u16::from(b(2)))
                    } else {
                        TagSel::Current
                    },
                    what: b(3),
                },
                27 => Op::Register {
                    name: NameSel(b(0) % 2),
                },
                28 => Op::AdvanceClock { ticks: b(0) },
                29 => Op::Clear,
                30 => Op::Entries,
                _ => Op::UnregisterIfSame {
                    name: NameSel(b(0) % 2),
                    tag: TagSel::Current,
                },
            })
        })
        .collect()
}

fn op_chunks(max_ops: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..16), 0..max_ops)
}

proptest! {
    #![proptest_config(config(256))]

    /// Random sequences against the sequential model, with a tiny table so that growth and
    /// migration happen inside the sequences.
    #[test]
    fn registry_matches_model(seed in any::<u64>(), chunks in op_chunks(if cfg!(miri) { 24 } else { 96 })) {
        let ops = decode_ops(&chunks);
        run_sequential(&ops, cfg(seed));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Liveness-heavy sequences (see `decode_live_ops`) against the model: visibility exactly at
    /// the deadline, keepalives, reaping and purging counted, health and its critical limit.
    #[test]
    fn liveness_matches_model(seed in any::<u64>(), chunks in op_chunks(if cfg!(miri) { 12 } else { 64 })) {
        let ops = decode_live_ops(&chunks);
        run_sequential(&ops, cfg(seed));
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Pool-heavy sequences (see `decode_pool_ops`) against the model: every lease, release
    /// and count, the choice of member (least loaded, never past `max_in_flight`, `Exhausted`
    /// exactly when every member is full), keyed holds, statistics and holders, refusals of
    /// writes on a pool's names, all-or-nothing registration.
    #[test]
    fn pools_match_model(seed in any::<u64>(), chunks in op_chunks(if cfg!(miri) { 8 } else { 80 })) {
        let ops = decode_pool_ops(&chunks);
        run_sequential(&ops, cfg(seed));
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Liveness-heavy ops dealt to 2-4 threads (one of them moving the clock now and then, a
    /// shared reaper), then checked for consistency.
    #[test]
    #[cfg_attr(miri, ignore = "threads under Miri: use the dedicated stress tests")]
    fn concurrent_liveness_is_consistent(threads in any::<u8>(), rounds in any::<u8>(), seed in any::<u64>(), chunks in op_chunks(120)) {
        let ops = decode_live_ops(&chunks);
        run_concurrent(&ConcurrentInput { threads, rounds, ops }, cfg(seed));
    }

    /// The same ops dealt to 2-4 threads, then checked for consistency.
    #[test]
    #[cfg_attr(miri, ignore = "threads under Miri: use the dedicated stress tests")]
    fn concurrent_runs_are_consistent(threads in any::<u8>(), rounds in any::<u8>(), seed in any::<u64>(), chunks in op_chunks(160)) {
        let ops = decode_ops(&chunks);
        run_concurrent(&ConcurrentInput { threads, rounds, ops }, cfg(seed));
    }
}

/// Every operation of the enum, in an order where each one has something to act on: makes sure
/// the harness itself exercises every path (a model that silently skipped ops would pass).
#[test]
fn every_op_once() {
    let n = |i: u8| NameSel(i); // 0: "a", 1: "b", 2: "auto-1", 3: "auto-2"
    let ops = vec![
        Op::Register { name: n(0) },
        Op::Register { name: n(0) },
        Op::RegisterAs {
            name: n(1),
            inst: InstSel::Pool(0),
        },
        Op::EnsureRegistered {
            name: n(1),
            inst: InstSel::Pool(0),
        },
        Op::EnsureRegistered {
            name: n(1),
            inst: InstSel::Pool(1),
        },
        Op::RegisterAuto {
            prefix: PrefixSel(0),
        },
        Op::RegisterAuto {
            prefix: PrefixSel(0),
        },
        Op::RegisterAuto {
            prefix: PrefixSel(4),
        },
        Op::RegisterAuto {
            prefix: PrefixSel(5),
        },
        Op::RegisterWeak {
            name: n(3),
            owner: OwnerSel::New,
        },
        Op::RegisterWeakAs {
            name: n(4),
            inst: InstSel::Pool(2),
            owner: OwnerSel::New,
        },
        Op::EnsureRegisteredWeak {
            name: n(4),
            inst: InstSel::Pool(2),
            owner: OwnerSel::Existing(1),
        },
        Op::EnsureRegisteredWeak {
            name: n(4),
            inst: InstSel::Pool(3),
            owner: OwnerSel::Existing(1),
        },
        Op::Collect,
        Op::Get { name: n(3) },
        Op::Read { name: n(3) },
        Op::GetIf {
            name: n(0),
            tag: TagSel::Current,
        },
        Op::GetIf {
            name: n(0),
            tag: TagSel::BumpGeneration(1),
        },
        Op::IsCurrent {
            name: n(1),
            tag: TagSel::OtherInstance(0),
        },
        Op::TagOf { name: n(2) },
        Op::Contains { name: n(3) },
        Op::DropOwner { owner: 0 },
        Op::Contains { name: n(3) },
        Op::Register { name: n(3) },
        Op::UnregisterIfSame {
            name: n(0),
            tag: TagSel::Seen(0),
        },
        Op::UnregisterIfSame {
            name: n(0),
            tag: TagSel::Forged {
                instance: 1,
                generation: 1,
            },
        },
        Op::UnregisterIfSame {
            name: n(0),
            tag: TagSel::Current,
        },
        Op::ReplaceIfSame {
            name: n(1),
            tag: TagSel::Current,
        },
        Op::ReplaceIfSame {
            name: n(1),
            tag: TagSel::Seen(1),
        },
        Op::Unregister { name: n(2) },
        Op::Unregister { name: NameSel(208) },
        Op::Register {
            name: NameSel(208 + 10),
        },
        Op::UnregisterInstance {
            inst: InstSel::Pool(0),
        },
        Op::GuardCheck { guard: 0 },
        Op::GuardReplace { guard: 0 },
        Op::GuardUnregister { guard: 0 },
        Op::DetachGuard { guard: 0 },
        Op::DropGuard { guard: 0 },
        Op::RegisterWeak {
            name: n(0),
            owner: OwnerSel::New,
        },
        Op::RegisterWeak {
            name: n(1),
            owner: OwnerSel::Existing(0),
        },
        Op::DropOwner { owner: 0 },
        Op::PurgeDead,
        Op::Len,
        Op::IsEmpty,
        Op::Names,
        Op::Entries,
        Op::Pinned {
            hold: true,
            ops: vec![
                PinnedOp::Register { name: n(0) },
                PinnedOp::RegisterAs {
                    name: n(1),
                    inst: InstSel::Fresh,
                },
                PinnedOp::EnsureRegistered {
                    name: n(2),
                    inst: InstSel::Seen(3),
                },
                PinnedOp::RegisterAuto {
                    prefix: PrefixSel(2),
                },
                PinnedOp::Get { name: n(0) },
                PinnedOp::Contains { name: n(1) },
                PinnedOp::Iter,
                PinnedOp::UnregisterIfSame {
                    name: n(0),
                    tag: TagSel::Current,
                },
                PinnedOp::Unregister { name: n(1) },
                PinnedOp::ReplaceIfSame {
                    name: n(2),
                    tag: TagSel::Current,
                },
                PinnedOp::Flush,
                PinnedOp::UnregisterInstance {
                    inst: InstSel::Seen(0),
                },
                PinnedOp::GuardReplace { guard: 1 },
                PinnedOp::DropGuard { guard: 0 },
                PinnedOp::DropOwner { owner: 0 },
                PinnedOp::PurgeDead,
                PinnedOp::Clear,
            ],
        },
        Op::Register { name: n(0) },
        Op::Pinned {
            hold: false,
            ops: vec![
                PinnedOp::Get { name: n(0) },
                PinnedOp::Repin,
                PinnedOp::Iter,
                PinnedOp::Clear,
            ],
        },
        Op::Register { name: n(1) },
        Op::Clear,
        Op::Len,
    ];
    run_sequential(&ops, cfg(1));
}

/// Every liveness op, in an order where each one meets what it is about: a keepalive in time
/// and too late, an expired binding still stored and then reaped, purged or replaced by a new
/// registration, a health record reaching the critical limit, a reaper condemning.
#[test]
fn every_liveness_op_once() {
    let n = |i: u8| NameSel(i);
    let ttl = |t: u8| TtlSel(t);
    let reg = |name: u8, t: u8, kind: TtlKind| Op::RegisterTtl {
        name: n(name),
        ttl: ttl(t),
        kind,
        meta: Some(MetaSel {
            kind: 1,
            caps: 1,
            region: 0,
        }),
    };
    let health = |name: u8, state: u8| Op::SetHealth {
        name: n(name),
        tag: TagSel::Current,
        state: StateSel(state),
        record: state % 2 == 0,
    };
    let healthy = Op::Find {
        query: QuerySel {
            kind: 0,
            all: Vec::new(),
            any: None,
            region: 0,
            prefix: 0,
            limit: 3,
            healthy: true,
        },
    };
    let ops = vec![
        reg(0, 2, TtlKind::Guard),                       // "a", 2 ticks, guard 0
        reg(1, 1, TtlKind::Detached),                    // "b", 1 tick
        reg(2, 0, TtlKind::Weak(OwnerSel::New)),         // "auto-1": 1 ns
        reg(3, 3, TtlKind::Weak(OwnerSel::Existing(0))), // "auto-2", 3 ticks
        Op::Keepalive {
            target: KeepSel::Guard(0),
        }, // renews nothing: not due
        health(0, 1),                                    // "a" passing
        health(1, 3),                                    // "b" critical
        healthy.clone(),
        Op::GetHealth { name: n(0) },
        Op::GetHealth { name: n(1) },
        Op::AdvanceClock { ticks: 1 }, // "b", "auto-1" expire
        Op::GuardCheck { guard: 0 },
        Op::Len,
        Op::Keepalive {
            target: KeepSel::Expired(0),
        }, // Expired: still stored
        Op::Keepalive {
            target: KeepSel::Guard(0),
        }, // "a" to 1 + 2
        Op::Keepalive {
            target: KeepSel::Name {
                name: n(3),
                tag: TagSel::Current,
            },
        },
        Op::Reap, // the walk: "b", "auto-1"
        Op::Keepalive {
            target: KeepSel::Expired(1),
        }, // NotFound: reaped
        Op::AdvanceClock { ticks: 2 }, // "a" at its renewed deadline
        Op::GuardCheck { guard: 0 },
        Op::Keepalive {
            target: KeepSel::Guard(0),
        }, // Expired
        Op::Register { name: n(0) }, // over the expired "a"
        health(0, 3),
        Op::AdvanceClock { ticks: 3 },
        health(0, 3), // critical for 3 ticks
        Op::GetHealth { name: n(0) },
        reg(1, 5, TtlKind::Guard),
        health(1, 4),
        Op::ReplaceIfSame {
            name: n(1),
            tag: TagSel::Current,
        },
        Op::AdvanceClock { ticks: 3 },
        Op::Reap, // condemns "b" (critical 3 ticks)
        Op::PurgeDead,
        reg(2, 1, TtlKind::Detached),
        Op::AdvanceClock { ticks: 1 },
        Op::Get { name: n(2) },
        Op::Read { name: n(2) },
        Op::PurgeDead,
        healthy,
        Op::Len,
    ];
    let critical = Config {
        critical_after: Some(2),
        ..cfg(2)
    };
    run_sequential(&ops, critical);
    run_sequential(
        &ops,
        Config {
            events: false,
            ..critical
        },
    );
    run_sequential(&ops, cfg(1));
}

/// Found by `liveness_matches_model` (fixed in 1cd12b0): `Registration::replace` moved the
/// guard to the new tag but kept the replaced binding's liveness cell, while the new binding
/// has a copy; a keepalive through the guard renewed the copy, so the guard's `expired()` and
/// `time_left()` read a deadline nothing moved any more (current, renewed to 3 s, and
/// "expired" at 2 s).
#[test]
fn guard_replace_keeps_liveness_current() {
    use std::time::Duration;

    use genreg::Registry;
    use genreg::liveness::ManualClock;

    let s = Duration::from_secs(1);
    let clock = ManualClock::new();
    let r: Registry<u64> = Registry::builder()
        .collector(genreg::epoch::Collector::new())
        .clock(clock.clone())
        .build();
    let mut g = r.with_ttl(2 * s).register("a", 1).unwrap();
    g.replace(2).unwrap();
    clock.advance(s);
    assert_eq!(g.keepalive().unwrap(), Some(3 * s));
    clock.advance(s);
    assert!(g.is_current());
    assert_eq!(g.time_left(), Some(s), "renewed to 3 s, at 2 s");
    assert!(!g.expired(), "current, renewed, yet expired");
}

/// Found by `liveness_matches_model` (fixed in 1cd12b0): a guard dropped after its binding
/// expired removed the binding with reason `GuardDropped` (the guard's removal did not bury the
/// node first), where every other write that meets an expired binding reports `Expired`; the
/// same for a weak binding whose owner died (`GuardDropped`, not `WeakOwnerDead`).
#[test]
fn a_guard_drop_of_an_expired_binding_says_expired() {
    use std::time::Duration;

    use genreg::liveness::ManualClock;
    use genreg::{EventKind, Filter, Reason, Registry, Revision};

    let clock = ManualClock::new();
    let r: Registry<u64> = Registry::builder()
        .collector(genreg::epoch::Collector::new())
        .clock(clock.clone())
        .events(16)
        .build();
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    let g = r.with_ttl(Duration::from_secs(1)).register("a", 1).unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(g.expired());
    drop(g);
    let reasons: Vec<Reason> = std::iter::from_fn(|| w.try_next())
        .filter_map(|e| match e.unwrap().kind() {
            EventKind::Unregistered { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [Reason::Expired]);
}

/// Found by `liveness_matches_model`: with `remove_critical_after`, a binding without a TTL
/// replaced while critical (a new tag that keeps the critical state) is condemned by the
/// reaper when its time comes: the commit point tells attached reapers of every binding that
/// may fall due, a critical one included.
#[test]
fn a_reaper_condemns_a_replaced_critical_binding() {
    use std::time::Duration;

    use genreg::liveness::ManualClock;
    use genreg::{HealthState, Registry};

    let s = Duration::from_secs(1);
    let clock = ManualClock::new();
    let r: Registry<u64> = Registry::builder()
        .collector(genreg::epoch::Collector::new())
        .clock(clock.clone())
        .remove_critical_after(s)
        .build();
    let mut reaper = r.reaper();
    let t = r.register_detached("a", 1).unwrap();
    r.set_health("a", t, HealthState::Critical).unwrap();
    let t2 = r.replace_if_same("a", t, 2).unwrap();
    assert_eq!(r.health("a").unwrap().state, HealthState::Critical);
    clock.advance(2 * s);
    assert_eq!(reaper.reap(), 1, "critical for two ticks, the limit one");
    assert!(!r.is_current("a", t2));
}

/// Every pool op, in an order where each meets what it is about: registrations that collide
/// (with an agent, a member, a pool) and that are refused up front, leases of every kind until
/// a pool is exhausted, keyed holds shared and let go, tasks on agents, statistics and their
/// reset, writes refused on a pool's names, removal with leases out, a stale tag, a guard.
#[test]
fn every_pool_op_once() {
    // size 0 and max 0: refused (encoded as 31, see `PoolSpec`).
    let spec = |size: u8, max: u8, p2c: bool, guard: bool| PoolSpec {
        size: size.checked_sub(1).unwrap_or(31),
        max: max.checked_sub(1).unwrap_or(31),
        power_of_two: p2c,
        guard,
        plain: false,
    };
    let pname = |i: u8| PoolNameSel(i); // 0: p, 4: q, 6: a, 8: b, 9: p_0, 13: too long
    let any = |s: &str| AnyNameSel(ops::ANY_NAMES.iter().position(|n| *n == s).unwrap() as u8);
    let acquire = |pool: u8, how: AcquireSel| Op::Acquire { pool, how };
    let read = |s: &str| Op::PoolRead {
        name: any(s),
        other: any("p"),
        prefix: 1,
    };
    let name_op = |s: &str, what: u8| Op::NameCall {
        name: any(s),
        tag: TagSel::Current,
        what,
    };
    let ops = vec![
        Op::Register { name: NameSel(0) }, // agent "a"
        Op::RegisterPool {
            name: pname(6),
            spec: spec(2, 1, false, true),
        }, // "a": taken by the agent
        name_op("p_1", 0),                 // agent "p_1"
        Op::RegisterPool {
            name: pname(0),
            spec: spec(3, 1, false, true),
        }, // "p": collides at p_1, all or nothing
        name_op("p_1", 1),
        Op::RegisterPool {
            name: pname(0),
            spec: spec(3, 2, false, true),
        }, // pool 0: "p", 3 members, 2 slots each
        Op::RegisterPool {
            name: pname(9),
            spec: spec(1, 1, false, true),
        }, // "p_0": a member's name
        Op::RegisterPool {
            name: pname(4),
            spec: spec(2, 1, true, false),
        }, // pool 1: "q", power of two, detached
        Op::RegisterPool {
            name: pname(13),
            spec: spec(1, 1, false, false),
        }, // members' names too long
        Op::RegisterPool {
            name: pname(8),
            spec: spec(0, 1, false, false),
        }, // no members
        Op::RegisterPool {
            name: pname(8),
            spec: spec(1, 0, false, false),
        }, // max_in_flight 0
        read("p"),
        read("p_2"),
        read("a"),
        read("b"),
        acquire(0, AcquireSel::Any),
        acquire(0, AcquireSel::Any),
        acquire(0, AcquireSel::Any),
        acquire(0, AcquireSel::Member(0)),
        acquire(0, AcquireSel::Member(4)), // past the last member
        acquire(0, AcquireSel::Key(KeySel(0))),
        acquire(0, AcquireSel::Key(KeySel(0))), // k1 again: the same member
        acquire(0, AcquireSel::Key(KeySel(15))), // invalid key
        Op::RegistryAcquire {
            name: any("p"),
            key: Some(KeySel(6)),
        },
        Op::RegistryAcquire {
            name: any("p"),
            key: None,
        }, // exhausted
        Op::RegistryAcquire {
            name: any("p_2"),
            key: None,
        },
        Op::RegistryAcquire {
            name: any("a"),
            key: None,
        }, // a task
        Op::RegistryAcquire {
            name: any("a"),
            key: Some(KeySel(0)),
        },
        Op::RegistryAcquire {
            name: any("b"),
            key: None,
        }, // nothing bound
        read("a"),
        read("p_1"),
        Op::PoolStats {
            pool: 0,
            reset: false,
        },
        Op::AdvanceClock { ticks: 1 },
        Op::DropLease { lease: 4 },
        Op::DropLease { lease: 4 },
        Op::PoolStats {
            pool: 0,
            reset: true,
        },
        acquire(1, AcquireSel::Any),
        acquire(1, AcquireSel::Any),
        acquire(1, AcquireSel::Any), // exhausted
        name_op("p", 1),
        name_op("p_0", 1),
        name_op("p_0", 2),
        name_op("p_1", 3),
        name_op("p", 3),
        name_op("p_2", 4),
        name_op("p", 4),
        name_op("p_2", 5), // members carry metadata
        name_op("p", 5),
        name_op("p_1", 6),
        name_op("p", 7),
        Op::Unregister { name: NameSel(0) },
        Op::UnregisterPool {
            name: any("a"),
            tag: None,
        }, // not a pool
        Op::UnregisterPool {
            name: any("p_0"),
            tag: None,
        }, // a member
        Op::UnregisterPool {
            name: any("p"),
            tag: Some(PoolTagSel::Forged(7)),
        },
        Op::UnregisterPool {
            name: any("q"),
            tag: Some(PoolTagSel::Seen(1)),
        },
        acquire(1, AcquireSel::Any), // removed
        Op::PoolStats {
            pool: 1,
            reset: false,
        },
        Op::RegisterPool {
            name: pname(4),
            spec: spec(1, 3, false, true),
        }, // pool 2: "q" again
        Op::UnregisterPool {
            name: any("q"),
            tag: Some(PoolTagSel::Seen(1)),
        }, // the old tag: stale
        Op::PoolGuard { guard: 0, how: 1 }, // unregister pool 0 with its leases out
        Op::DropLease { lease: 0 },
        Op::PoolStats {
            pool: 0,
            reset: false,
        },
        Op::PoolGuard { guard: 0, how: 2 }, // detach pool 2
        Op::RegisterPool {
            name: pname(0),
            spec: spec(2, 1, false, true),
        },
        Op::PoolGuard { guard: 0, how: 0 }, // drop: removed
        Op::RegisterPool {
            name: pname(6),
            spec: spec(1, 1, false, true),
        },
        Op::Len,
        Op::Names,
        Op::Entries,
        Op::Clear,
        Op::PoolGuard { guard: 0, how: 0 }, // dropped after clear: nothing to remove
        acquire(2, AcquireSel::Key(KeySel(0))),
        read("q"),
    ];
    run_sequential(&ops, cfg(2));
    // Under Miri, once: the other two runs check the model, not memory.
    if cfg!(miri) {
        return;
    }
    run_sequential(
        &ops,
        Config {
            events: false,
            ..cfg(2)
        },
    );
    run_sequential(
        &ops,
        Config {
            max_entries: Some(5),
            ..cfg(2)
        },
    );
}

/// Found by `pools_match_model`: the first task on an agent (`Registry::acquire` of an agent's
/// name) installs the binding's load cell through the metadata path, and published a
/// `MetadataUpdated` event although nothing about the binding's metadata changed (fixed: a
/// cell installation is a skip record in the log).
#[test]
fn a_task_publishes_no_metadata_event() {
    use genreg::{EventKind, Filter, Registry, Revision};

    let r: Registry<u64> = Registry::builder()
        .collector(genreg::epoch::Collector::new())
        .events(16)
        .build();
    let mut w = r.watch(Filter::all(), Revision::ZERO).unwrap();
    let _a = r.register("a", 1).unwrap();
    let task = r.acquire("a").unwrap();
    assert_eq!(r.load("a"), Some(1));
    drop(task);
    let kinds: Vec<String> = std::iter::from_fn(|| w.try_next())
        .map(|e| {
            let e = e.unwrap();
            match e.kind() {
                EventKind::Registered { .. } => "registered".to_owned(),
                other => format!("{other:?} (metadata {:?})", e.metadata()),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        ["registered"],
        "a task is not a change of the binding"
    );
}
