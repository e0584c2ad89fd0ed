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
    ConcurrentInput, Config, InstSel, NameSel, Op, OwnerSel, PinnedOp, PrefixSel, TagSel,
    run_concurrent, run_sequential,
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
    }
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
    #![proptest_config(config(32))]

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
