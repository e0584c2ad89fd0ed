//! loom models of the registry's concurrent operations, through the public API.
//!
//! Run (about 85 s to compile, see `ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 \
//!   cargo test --release --test loom --target-dir target/loom -- --nocapture
//! ```
//!
//! # How the models work
//! Each model is a [`Scenario`]: a few sequential setup operations, then two lists of operations
//! run by two loom threads (a spawned one and the model's main thread), each holding ONE
//! [`Pinned`] handle for the whole list (pinning is what costs model steps; the convenience
//! methods of `Registry` and `Registration` drops pin per call, so they are not used inside
//! the threads). After both threads are done the model checks:
//!
//! 1. **Outcomes.** Every result (with tags mapped back to the operation that minted them)
//!    and the final state must be what a sequential model gives for at least one interleaving
//!    of the two lists: the interleavings are all enumerated.
//! 2. **No use after free** (loom does not see it): every value read while pinned has its id
//!    captured right after the read, and before the thread unpins (`repin` or the end of the
//!    list) none of those ids may be in the set of dropped values. Writers `flush` and `repin`
//!    so that frees really race the readers inside the model. What this cannot see: the
//!    registry's *internal* reads of a node it does not return (a probe comparing the name of
//!    a `Done` node in the old table, which the graveyard keeps alive); a removed name reads
//!    `None` either way, so that is left to Miri and the sanitizers.
//! 3. **No leaks, no double drops**: after the registry is dropped, every value created was
//!    dropped exactly once (values record their drops in a std mutex that loom does not model).
//! 4. The final state seen by `get`, by `iter` (each binding exactly once) and by `len` agree.
//!
//! Each model runs with an explicit preemption bound (`LOOM_MAX_PREEMPTIONS` is ignored so
//! that the bound of each model is the one written here; `GENREG_LOOM_EXTRA_PREEMPTIONS=n`
//! raises them all by `n` for a deeper local run), no duration or permutation limit (those
//! stop exploration silently), and prints its iteration count and time.
#![cfg(loom)]

#[cfg(not(crossbeam_loom))]
compile_error!(
    "the loom models need crossbeam-epoch in loom mode too: --cfg loom --cfg crossbeam_loom"
);

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use genreg::epoch::Collector;
use genreg::{Error, Pinned, Registry, Tag};

/// The hash seed of every model (the layouts below are computed from it).
const SEED: u64 = 0x5eed_0001;

// ------------------------------------------------------------------------------------------
// Values with a drop oracle
// ------------------------------------------------------------------------------------------

/// Records which values were created and dropped (std, not loom: invisible to the model).
#[derive(Default)]
struct Oracle {
    created: Mutex<BTreeSet<u32>>,
    dropped: Mutex<BTreeSet<u32>>,
    double_drops: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Oracle {
    fn freed(&self, id: u32) -> bool {
        lock(&self.dropped).contains(&id)
    }

    /// Every value created was dropped exactly once.
    fn assert_all_dropped_once(&self) {
        let double = lock(&self.double_drops).clone();
        assert!(double.is_empty(), "values dropped twice: {double:?}");
        let created = lock(&self.created).clone();
        let dropped = lock(&self.dropped).clone();
        let leaked: Vec<_> = created.difference(&dropped).collect();
        assert!(
            leaked.is_empty(),
            "values never dropped (leaked): {leaked:?}"
        );
        let unknown: Vec<_> = dropped.difference(&created).collect();
        assert!(
            unknown.is_empty(),
            "dropped values that were never created: {unknown:?}"
        );
    }
}

/// A registry value (shared as `Arc<Val>`, so that weak bindings can be modelled too): its
/// id, and the oracle its `Drop` reports to.
struct Val {
    id: u32,
    oracle: Arc<Oracle>,
}

impl Val {
    fn new(oracle: &Arc<Oracle>, id: u32) -> Arc<Val> {
        assert!(
            lock(&oracle.created).insert(id),
            "value id {id} created twice"
        );
        Arc::new(Val {
            id,
            oracle: Arc::clone(oracle),
        })
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        // No panic here: the registry catches panics of value destructors.
        if !lock(&self.oracle.dropped).insert(self.id) {
            lock(&self.oracle.double_drops).push(self.id);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Operations, outcomes, and the sequential model
// ------------------------------------------------------------------------------------------

/// Names a binding: the operation that creates it (unique in a scenario).
type Label = &'static str;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `register(name)`; a binding made by it is called `label`.
    Reg(&'static str, Label),
    /// `register_weak(name, owner)` with an owner dropped at once: a dead weak binding, which
    /// every read treats as absent and a register may replace (setup only: it pins per call).
    RegWeakDead(&'static str, Label),
    /// `register_as(name, instance of binding `inst`)`.
    RegAs(&'static str, Label, Label),
    /// `unregister_if_same(name, tag of `tag`)`.
    Unreg(&'static str, Label),
    /// `replace_if_same(name, tag of `old`, value)`; the new binding is called `new`.
    Replace(&'static str, Label, Label),
    /// `get(name)`.
    Get(&'static str),
    /// `iter()` over everything (weakly consistent: entries are validated, not modelled).
    Iter,
    /// `flush()`.
    Flush,
    /// `repin()` (after checking that nothing read so far was freed).
    Repin,
}

/// An observed result, with real tags.
#[derive(Debug)]
enum Raw {
    Registered(Tag),
    Already(Tag),
    Removed(Tag, u32),
    NotFound,
    Mismatch { expected: Tag, current: Tag },
    Replaced(Tag),
    Got(Option<(Tag, u32)>),
    Iterated(Vec<(String, Tag, u32)>),
    Unit,
}

/// A result with tags replaced by the labels of the operations that minted them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Out {
    Registered,
    Already(Label),
    Removed(Label),
    NotFound,
    Mismatch(Label),
    Replaced,
    Got(Option<Label>),
    Unit,
}

type State = BTreeMap<&'static str, Label>;

/// One sequential step of the model.
fn apply(state: &mut State, op: Op) -> Out {
    match op {
        Op::Reg(name, label) | Op::RegAs(name, label, _) => match state.get(name) {
            Some(cur) => Out::Already(cur),
            None => {
                state.insert(name, label);
                Out::Registered
            }
        },
        Op::Unreg(name, tag) => match state.get(name).copied() {
            None => Out::NotFound,
            Some(cur) if cur == tag => {
                state.remove(name);
                Out::Removed(tag)
            }
            Some(cur) => Out::Mismatch(cur),
        },
        Op::Replace(name, old, new) => match state.get(name).copied() {
            None => Out::NotFound,
            Some(cur) if cur == old => {
                state.insert(name, new);
                Out::Replaced
            }
            Some(cur) => Out::Mismatch(cur),
        },
        Op::RegWeakDead(..) => Out::Registered,
        Op::Get(name) => Out::Got(state.get(name).copied()),
        Op::Iter | Op::Flush | Op::Repin => Out::Unit,
    }
}

/// What one complete run produced: each thread's outcomes and the final bindings.
type Observation = (Vec<Out>, Vec<Out>, State);

/// Every observation a sequential execution of some interleaving of `a` and `b` can give.
fn allowed(start: &State, a: &[Op], b: &[Op]) -> HashSet<Observation> {
    fn go(
        state: &State,
        a: &[Op],
        b: &[Op],
        out_a: &mut Vec<Out>,
        out_b: &mut Vec<Out>,
        all: &mut HashSet<Observation>,
    ) {
        if a.is_empty() && b.is_empty() {
            all.insert((out_a.clone(), out_b.clone(), state.clone()));
            return;
        }
        if let Some((&op, rest)) = a.split_first() {
            let mut s = state.clone();
            out_a.push(apply(&mut s, op));
            go(&s, rest, b, out_a, out_b, all);
            out_a.pop();
        }
        if let Some((&op, rest)) = b.split_first() {
            let mut s = state.clone();
            out_b.push(apply(&mut s, op));
            go(&s, a, rest, out_a, out_b, all);
            out_b.pop();
        }
    }
    let mut all = HashSet::new();
    go(start, a, b, &mut Vec::new(), &mut Vec::new(), &mut all);
    all
}

// ------------------------------------------------------------------------------------------
// Scenarios and the real run
// ------------------------------------------------------------------------------------------

struct Scenario {
    /// `Builder::capacity` (1 → a 4-slot table, which migrates on every claim; 4 → 8 slots,
    /// which starts migrating at the 6th claim).
    capacity: usize,
    /// Run sequentially by the main thread before the race.
    setup: Vec<Op>,
    /// Run by a spawned loom thread.
    a: Vec<Op>,
    /// Run by the main loom thread, concurrently with `a`.
    b: Vec<Op>,
    /// The names whose final state is checked.
    names: Vec<&'static str>,
    /// Extra checks on the observation (beyond matching the sequential model).
    extra: Option<fn(&Observation)>,
    /// Whether some iterations must free a removed value before the race ends (that is, the
    /// writer's `flush`/`repin` really reclaim inside the model, racing the reader).
    expect_frees: bool,
}

impl Scenario {
    /// Value ids: one per label, in order of appearance.
    fn ids(&self) -> HashMap<Label, u32> {
        let mut ids = HashMap::new();
        for op in self.setup.iter().chain(&self.a).chain(&self.b) {
            let label = match *op {
                Op::Reg(_, l)
                | Op::RegAs(_, l, _)
                | Op::Replace(_, _, l)
                | Op::RegWeakDead(_, l) => l,
                _ => continue,
            };
            let next = ids.len() as u32 + 1;
            assert!(
                ids.insert(label, next).is_none(),
                "label {label} used twice"
            );
        }
        ids
    }
}

/// Shared, read-only context of one model iteration.
struct Ctx {
    oracle: Arc<Oracle>,
    ids: HashMap<Label, u32>,
}

/// Runs `ops` on one `Pinned` handle. `known` holds the tags this thread may present (setup's
/// and its own); returns the raw results and the tags this thread minted.
fn run_ops(
    reg: &Registry<Arc<Val>>,
    ctx: &Ctx,
    mut known: HashMap<Label, Tag>,
    ops: &[Op],
) -> (Vec<Raw>, HashMap<Label, Tag>) {
    let mut p: Pinned<'_, Arc<Val>> = reg.pin();
    // Ids of values read under the current pin: none may be freed before we unpin.
    let mut held: Vec<u32> = Vec::new();
    let check_held = |held: &mut Vec<u32>| {
        for &id in held.iter() {
            assert!(
                !ctx.oracle.freed(id),
                "value {id} was freed while a pinned thread held it"
            );
        }
        held.clear();
    };
    let mut minted = HashMap::new();
    let mut out = Vec::with_capacity(ops.len());
    for &op in ops {
        let raw = match op {
            Op::Reg(name, label) | Op::RegAs(name, label, _) => {
                let val = Val::new(&ctx.oracle, ctx.ids[label]);
                let res = match op {
                    Op::RegAs(_, _, inst) => p.register_as(name, known[inst].instance(), val),
                    _ => p.register(name, val),
                };
                match res {
                    Ok(r) => {
                        let tag = r.detach();
                        known.insert(label, tag);
                        minted.insert(label, tag);
                        Raw::Registered(tag)
                    }
                    Err(rejected) => match rejected.into_parts() {
                        (Error::AlreadyRegistered { current, .. }, _value) => Raw::Already(current),
                        (e, _) => panic!("register({name}): unexpected {e:?}"),
                    },
                }
            }
            Op::RegWeakDead(name, label) => {
                let owner = Val::new(&ctx.oracle, ctx.ids[label]);
                let tag = reg
                    .register_weak(name, &owner)
                    .expect("register_weak")
                    .detach();
                drop(owner);
                known.insert(label, tag);
                minted.insert(label, tag);
                Raw::Registered(tag)
            }
            Op::Unreg(name, label) => match p.unregister_if_same(name, known[label]) {
                Ok(e) => {
                    let id = e.value().id; // captured at once, while pinned
                    held.push(id);
                    Raw::Removed(e.tag(), id)
                }
                Err(Error::NotFound { .. }) => Raw::NotFound,
                Err(Error::TagMismatch {
                    expected, current, ..
                }) => Raw::Mismatch { expected, current },
                Err(e) => panic!("unregister_if_same({name}): unexpected {e:?}"),
            },
            Op::Replace(name, old, new) => {
                let val = Val::new(&ctx.oracle, ctx.ids[new]);
                match p.replace_if_same(name, known[old], val) {
                    Ok(tag) => {
                        known.insert(new, tag);
                        minted.insert(new, tag);
                        Raw::Replaced(tag)
                    }
                    Err(rejected) => match rejected.into_parts() {
                        (Error::NotFound { .. }, _value) => Raw::NotFound,
                        (
                            Error::TagMismatch {
                                expected, current, ..
                            },
                            _value,
                        ) => Raw::Mismatch { expected, current },
                        (e, _) => panic!("replace_if_same({name}): unexpected {e:?}"),
                    },
                }
            }
            Op::Get(name) => Raw::Got(p.get(name).map(|e| {
                let id = e.value().id; // captured at once, while pinned
                held.push(id);
                (e.tag(), id)
            })),
            Op::Iter => Raw::Iterated(
                p.iter()
                    .map(|e| {
                        let id = e.value().id;
                        held.push(id);
                        (e.name().to_owned(), e.tag(), id)
                    })
                    .collect(),
            ),
            Op::Flush => {
                p.flush();
                Raw::Unit
            }
            Op::Repin => {
                check_held(&mut held);
                p.repin();
                Raw::Unit
            }
        };
        out.push(raw);
    }
    check_held(&mut held);
    drop(p);
    (out, minted)
}

/// Maps real tags back to labels and checks what the sequential model cannot see.
struct Labels {
    by_tag: HashMap<Tag, Label>,
    tags: HashMap<Label, Tag>,
    names: HashMap<Label, &'static str>,
    ids: HashMap<Label, u32>,
}

impl Labels {
    fn label(&self, tag: Tag) -> Label {
        *self
            .by_tag
            .get(&tag)
            .unwrap_or_else(|| panic!("a tag no operation minted: {tag:?}"))
    }

    /// The label of `tag`, checking that the value read with it is that binding's value.
    fn read(&self, tag: Tag, id: u32) -> Label {
        let label = self.label(tag);
        assert_eq!(
            id, self.ids[label],
            "binding {label} read with another binding's value"
        );
        label
    }

    fn convert(&self, ops: &[Op], raws: &[Raw]) -> Vec<Out> {
        assert_eq!(ops.len(), raws.len());
        ops.iter()
            .zip(raws)
            .map(|(&op, raw)| match (op, raw) {
                (
                    Op::Reg(_, l) | Op::RegAs(_, l, _) | Op::RegWeakDead(_, l),
                    Raw::Registered(t),
                ) => {
                    assert_eq!(*t, self.tags[l]);
                    if let Op::RegAs(_, _, inst) = op {
                        assert_eq!(
                            t.instance(),
                            self.tags[inst].instance(),
                            "register_as changed the instance"
                        );
                    }
                    Out::Registered
                }
                (Op::Reg(..) | Op::RegAs(..), Raw::Already(t)) => Out::Already(self.label(*t)),
                (Op::Unreg(..), Raw::Removed(t, id)) => Out::Removed(self.read(*t, *id)),
                (Op::Unreg(_, l) | Op::Replace(_, l, _), Raw::Mismatch { expected, current }) => {
                    assert_eq!(
                        *expected, self.tags[l],
                        "TagMismatch names the wrong expected tag"
                    );
                    assert_ne!(expected, current);
                    Out::Mismatch(self.label(*current))
                }
                (Op::Unreg(..) | Op::Replace(..), Raw::NotFound) => Out::NotFound,
                (Op::Replace(_, old, _), Raw::Replaced(t)) => {
                    let old = self.tags[old];
                    assert_eq!(t.instance(), old.instance(), "replace changed the instance");
                    assert!(
                        t.generation() > old.generation(),
                        "replace did not advance the generation"
                    );
                    Out::Replaced
                }
                (Op::Get(_), Raw::Got(got)) => Out::Got(got.map(|(t, id)| self.read(t, id))),
                (Op::Iter, Raw::Iterated(entries)) => {
                    for (name, tag, id) in entries {
                        let label = self.read(*tag, *id);
                        assert_eq!(
                            name, self.names[label],
                            "iter: binding {label} under another name"
                        );
                    }
                    Out::Unit
                }
                (Op::Flush | Op::Repin, Raw::Unit) => Out::Unit,
                (op, raw) => panic!("{op:?} cannot give {raw:?}"),
            })
            .collect()
    }
}

fn name_of(op: Op) -> Option<(Label, &'static str)> {
    match op {
        Op::Reg(n, l) | Op::RegAs(n, l, _) | Op::Replace(n, _, l) | Op::RegWeakDead(n, l) => {
            Some((l, n))
        }
        _ => None,
    }
}

/// One iteration of a model: setup, the race, and every check. Returns whether a value that
/// had been bound was freed during the race (after the setup, before both threads were done).
fn run(sc: &Scenario) -> bool {
    let oracle = Arc::new(Oracle::default());
    let ctx = Arc::new(Ctx {
        oracle: Arc::clone(&oracle),
        ids: sc.ids(),
    });
    let reg: Registry<Arc<Val>> = Registry::builder()
        .collector(Collector::new())
        .hash_seed(SEED)
        .capacity(sc.capacity)
        .build();

    // Setup: sequential, and it must do what the sequential model says.
    let (setup_raw, setup_tags) = run_ops(&reg, &ctx, HashMap::new(), &sc.setup);
    let mut start = State::new();
    let setup_expected: Vec<Out> = sc.setup.iter().map(|&op| apply(&mut start, op)).collect();
    let dropped_before_race = lock(&oracle.dropped).clone();

    // The race.
    let a = {
        let reg = reg.clone();
        let ctx = Arc::clone(&ctx);
        let known = setup_tags.clone();
        let ops = sc.a.clone();
        loom::thread::spawn(move || run_ops(&reg, &ctx, known, &ops))
    };
    let (raw_b, minted_b) = run_ops(&reg, &ctx, setup_tags.clone(), &sc.b);
    let (raw_a, minted_a) = a.join().expect("thread a panicked");
    let dropped_in_race = lock(&oracle.dropped).clone();

    // Map tags to labels.
    let mut tags = setup_tags;
    tags.extend(minted_a);
    tags.extend(minted_b);
    let by_tag: HashMap<Tag, Label> = tags.iter().map(|(&l, &t)| (t, l)).collect();
    assert_eq!(by_tag.len(), tags.len(), "two bindings got the same tag");
    let names = sc
        .setup
        .iter()
        .chain(&sc.a)
        .chain(&sc.b)
        .filter_map(|&op| name_of(op))
        .collect();
    let labels = Labels {
        by_tag,
        tags,
        names,
        ids: ctx.ids.clone(),
    };
    assert_eq!(
        labels.convert(&sc.setup, &setup_raw),
        setup_expected,
        "setup"
    );
    let freed_in_race = labels.tags.keys().any(|l| {
        let id = labels.ids[l];
        dropped_in_race.contains(&id) && !dropped_before_race.contains(&id)
    });
    let out_a = labels.convert(&sc.a, &raw_a);
    let out_b = labels.convert(&sc.b, &raw_b);

    // The final state, three ways.
    let mut fin = State::new();
    {
        let p = reg.pin();
        for &name in &sc.names {
            if let Some(e) = p.get(name) {
                fin.insert(name, labels.read(e.tag(), e.value().id));
            }
        }
        let mut seen: Vec<(String, Label)> = p
            .iter()
            .map(|e| (e.name().to_owned(), labels.read(e.tag(), e.value().id)))
            .collect();
        seen.sort();
        let expected: Vec<(String, Label)> =
            fin.iter().map(|(n, l)| ((*n).to_owned(), *l)).collect();
        assert_eq!(seen, expected, "iter() disagrees with get() after the race");
    }
    assert_eq!(
        reg.len(),
        fin.len(),
        "len() disagrees with get() after the race"
    );

    let observed: Observation = (out_a, out_b, fin);
    let allowed = allowed(&start, &sc.a, &sc.b);
    if !allowed.contains(&observed) {
        let mut all: Vec<_> = allowed.into_iter().collect();
        all.sort();
        panic!(
            "not linearizable:\n  a = {:?}\n  b = {:?}\nobserved {observed:#?}\nallowed {all:#?}",
            sc.a, sc.b
        );
    }
    if let Some(extra) = sc.extra {
        extra(&observed);
    }

    // No leaks, no double drops: everything is dropped with the registry and its collector.
    drop(ctx);
    drop(reg);
    oracle.assert_all_dropped_once();
    freed_in_race
}

/// Runs one model with an explicit preemption bound; prints iterations and time.
fn check(model: &str, bound: usize, sc: Scenario) {
    let iterations = Arc::new(AtomicUsize::new(0));
    let frees = Arc::new(AtomicUsize::new(0));
    let expect_frees = sc.expect_frees;
    // For deeper local runs: GENREG_LOOM_EXTRA_PREEMPTIONS=1 raises every model's bound by one.
    let bound = bound
        + std::env::var("GENREG_LOOM_EXTRA_PREEMPTIONS")
            .map(|v| {
                v.parse::<usize>()
                    .expect("GENREG_LOOM_EXTRA_PREEMPTIONS: a number")
            })
            .unwrap_or(0);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.max_branches = 100_000;
    // Never stop exploring early (these would make a model pass silently).
    builder.max_duration = None;
    builder.max_permutations = None;
    let sc = Arc::new(sc);
    let (count, freed) = (Arc::clone(&iterations), Arc::clone(&frees));
    let started = Instant::now();
    builder.check(move || {
        count.fetch_add(1, Ordering::Relaxed);
        if run(&sc) {
            freed.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (iterations, frees) = (
        iterations.load(Ordering::Relaxed),
        frees.load(Ordering::Relaxed),
    );
    println!(
        "loom model {model}: preemption bound {bound}, {iterations} iterations \
         ({frees} freed a removed value during the race), {:.1?}",
        started.elapsed()
    );
    assert!(
        iterations > 1,
        "{model}: loom explored a single interleaving (is crossbeam_loom set?)"
    );
    assert!(
        !expect_frees || frees > 0,
        "{model}: no iteration freed anything during the race"
    );
}

// ------------------------------------------------------------------------------------------
// Names with known places in a table
// ------------------------------------------------------------------------------------------

/// The home slot of `name` in a table of `capacity` slots (the registry hashes `&str` with
/// foldhash's fixed state and the seed; see `RawMap::hash`).
fn home(name: &str, capacity: usize) -> usize {
    (foldhash::fast::FixedState::with_seed(SEED).hash_one(name) as usize) & (capacity - 1)
}

/// The first name `{prefix}{n}` whose home slot is `slot` in a table of `capacity` slots.
fn name_at(prefix: &str, slot: usize, capacity: usize) -> &'static str {
    let name = (0..10_000)
        .map(|n| format!("{prefix}{n}"))
        .find(|n| home(n, capacity) == slot)
        .expect("some name hashes there");
    Box::leak(name.into_boxed_str())
}

// ------------------------------------------------------------------------------------------
// The models
// ------------------------------------------------------------------------------------------

use Op::*;

/// CAS site: insert into the chain's first `Empty` slot (an 8-slot table, no migration). Two
/// registers of one free name: exactly one wins, the loser's `AlreadyRegistered.current` is the
/// winner's tag, and the final binding is the winner's (all by outcome enumeration).
#[test]
fn register_race() {
    check(
        "register_race",
        3,
        Scenario {
            capacity: 4,
            setup: vec![],
            a: vec![Reg("x", "xa")],
            b: vec![Reg("x", "xb")],
            names: vec!["x"],
            extra: Some(|(a, b, _)| {
                let wins = [&a[0], &b[0]]
                    .iter()
                    .filter(|o| ***o == Out::Registered)
                    .count();
                assert_eq!(wins, 1, "exactly one register must win");
            }),
            expect_frees: false,
        },
    );
}

/// The same race on a 4-slot table: the first claim starts a migration, so the two inserts
/// also race to publish it (`start_migration`'s CAS), to seal the `Empty` end of the chain
/// (`seal_empty`), to copy the winner's slot (`copy_slot`, `install`) and to promote.
#[test]
fn register_race_during_growth() {
    check(
        "register_race_during_growth",
        2,
        Scenario {
            capacity: 1,
            setup: vec![],
            a: vec![Reg("x", "xa")],
            b: vec![Reg("x", "xb")],
            names: vec!["x"],
            extra: None,
            expect_frees: false,
        },
    );
}

/// CAS site: node → tombstone, compared against the tag (the ABA case). A late destructor
/// holds tag `x1`; the owner removes `x1` and re-registers the same instance under the same
/// name (`x2`, same `InstanceId`, newer generation). The stale removal may win before the
/// owner's removal, find nothing, or find `x2` (TagMismatch naming `x2`): it never removes
/// `x2`, which is always bound at the end.
#[test]
fn aba_stale_unregister() {
    check(
        "aba_stale_unregister",
        3,
        Scenario {
            capacity: 4,
            setup: vec![Reg("x", "x1")],
            a: vec![Unreg("x", "x1")],
            b: vec![Unreg("x", "x1"), RegAs("x", "x2", "x1")],
            names: vec!["x"],
            extra: Some(|(_, _, fin)| assert_eq!(fin.get("x"), Some(&"x2"), "x2 was removed")),
            expect_frees: false,
        },
    );
}

/// The ABA case after the removal: the stale tag's binding is already gone, the same
/// instance re-registers while the stale `unregister_if_same` runs.
#[test]
fn aba_stale_unregister_after_removal() {
    check(
        "aba_stale_unregister_after_removal",
        3,
        Scenario {
            capacity: 4,
            setup: vec![Reg("x", "x1"), Unreg("x", "x1")],
            a: vec![Unreg("x", "x1")],
            b: vec![RegAs("x", "x2", "x1"), Get("x")],
            names: vec!["x"],
            extra: Some(|(a, _, fin)| {
                assert_ne!(a[0], Out::Removed("x1"));
                assert_eq!(fin.get("x"), Some(&"x2"), "x2 was removed");
            }),
            expect_frees: false,
        },
    );
}

/// Reclamation racing a read: the reader gets `x` (or not) while the writer removes it and
/// flushes and re-pins until its epoch advances and the node is freed. The value read must
/// be `x1`'s, and must not be freed before the reader unpins (drop oracle).
#[test]
fn get_races_unregister_and_free() {
    check(
        "get_races_unregister_and_free",
        2,
        Scenario {
            capacity: 4,
            setup: vec![Reg("x", "x1")],
            a: vec![Get("x"), Get("x")],
            b: vec![Unreg("x", "x1"), Flush, Repin, Flush, Repin, Flush],
            names: vec!["x"],
            extra: None,
            expect_frees: true,
        },
    );
}

/// The same with `replace_if_same`: the reader sees `x1` then maybe `x2`, never `x2` then
/// `x1`; the old node is freed under the reader's feet only after it unpins.
#[test]
fn get_races_replace_and_free() {
    check(
        "get_races_replace_and_free",
        2,
        Scenario {
            capacity: 4,
            setup: vec![Reg("x", "x1")],
            a: vec![Get("x"), Get("x")],
            b: vec![Replace("x", "x1", "x2"), Flush, Repin, Flush, Repin, Flush],
            names: vec!["x"],
            extra: None,
            expect_frees: true,
        },
    );
}

/// CAS site: node → new node vs node → tombstone, with the same tag. Exactly one wins; the
/// loser gets TagMismatch naming the replacement (unregister after replace) or NotFound
/// (replace after unregister).
#[test]
fn replace_races_unregister() {
    check(
        "replace_races_unregister",
        3,
        Scenario {
            capacity: 4,
            setup: vec![Reg("x", "x1")],
            a: vec![Replace("x", "x1", "x2")],
            b: vec![Unreg("x", "x1")],
            names: vec!["x"],
            extra: Some(|(a, b, _)| {
                let wins = (a[0] == Out::Replaced) as usize + (b[0] == Out::Removed("x1")) as usize;
                assert_eq!(wins, 1, "exactly one of replace and unregister must win");
            }),
            expect_frees: false,
        },
    );
}

/// A 4-slot table with two names, migrating (every claim in a 4-slot table starts one, since
/// `soft_limit(4) == 0`): one thread registers `c` and `d`, which copy chunks, seal the end of
/// their chains, are refused room in the next table until the old one is copied (`reserve` →
/// help), promote, and start the next migration, to 8 slots (where names are re-homed). The
/// other reads `a` and `b` throughout: they are always there, with their own values.
#[test]
fn growth_races_get() {
    check(
        "growth_races_get",
        2,
        Scenario {
            capacity: 1,
            setup: vec![Reg("a", "a1"), Reg("b", "b1")],
            a: vec![Reg("c", "c1"), Reg("d", "d1")],
            b: vec![Get("a"), Get("b")],
            names: vec!["a", "b", "c", "d"],
            extra: None,
            expect_frees: false,
        },
    );
}

/// Growth racing writes: `c` is inserted (forcing the migration along) while the other
/// thread removes `a` and registers `d`, each of which also helps the migration.
#[test]
fn growth_races_insert_and_remove() {
    check(
        "growth_races_insert_and_remove",
        2,
        Scenario {
            capacity: 1,
            setup: vec![Reg("a", "a1"), Reg("b", "b1")],
            a: vec![Reg("c", "c1")],
            b: vec![Unreg("a", "a1"), Get("b")],
            names: vec!["a", "b", "c"],
            extra: None,
            expect_frees: false,
        },
    );
}

/// "Exactly one copy": `x` is alone in a migrating 4-slot table, in slot 0, the first slot
/// any helper copies. Thread a removes `x`: it copies slot 0 (freeze, install, done) and
/// removes `x` in the NEW table (burying the node in the old table's graveyard). Thread b
/// reads `x`, walks everything (`iter` finishes the migration: a late copy of slot 0 that
/// races the removal) and reads `x` again. `x` must never reappear once gone, and the buried
/// node is freed exactly once, with the old table.
#[test]
fn remove_in_new_table_races_late_copy() {
    let x = name_at("x", 0, 4);
    check(
        "remove_in_new_table_races_late_copy",
        2,
        Scenario {
            capacity: 1,
            setup: vec![Reg(x, "x1")],
            a: vec![Unreg(x, "x1")],
            b: vec![Get(x), Iter, Get(x)],
            names: vec![x],
            extra: Some(|(_, b, fin)| {
                assert!(fin.is_empty(), "x reappeared: {fin:?}");
                assert!(
                    !(b[0] == Out::Got(None) && b[2] != Out::Got(None)),
                    "x reappeared"
                );
            }),
            expect_frees: false,
        },
    );
}

/// The same race with a writer as the late helper: thread b registers `y`, whose home is
/// also slot 0, so its insert copies chunks of the migration (slot 0 among them), probes past
/// `x`'s slot, seals the end of the chain and installs into the next table.
#[test]
fn remove_in_new_table_races_insert() {
    let x = name_at("x", 0, 4);
    let y = name_at("y", 0, 4);
    check(
        "remove_in_new_table_races_insert",
        2,
        Scenario {
            capacity: 1,
            setup: vec![Reg(x, "x1")],
            a: vec![Unreg(x, "x1")],
            b: vec![Reg(y, "y1")],
            names: vec![x, y],
            extra: Some(|(_, _, fin)| assert!(!fin.values().any(|l| *l == "x1"), "x reappeared")),
            expect_frees: false,
        },
    );
}

/// CAS site: insert over a dead weak binding (`Live(dead) → new`), racing the purge that a
/// read does when it meets one (`Live(dead) → Tomb`) and another register. Exactly one unlinks
/// the dead node (each retires only what its own CAS unlinked); the dead binding is never
/// visible; exactly one of the two registers wins.
#[test]
fn register_races_purge_of_dead_weak() {
    check(
        "register_races_purge_of_dead_weak",
        2,
        Scenario {
            capacity: 4,
            setup: vec![RegWeakDead("x", "w")],
            a: vec![Reg("x", "xa")],
            b: vec![Get("x"), Reg("x", "xb")],
            names: vec!["x"],
            extra: None,
            expect_frees: false,
        },
    );
}

/// CAS site: the graveyard push (`Table::bury`). An 8-slot table whose 6th claim started a
/// migration (to 16 slots), with `x` in slot 0 and `y` in slot 1, the first two slots helpers
/// copy. Each thread removes one: its write first copies a chunk (one slot under loom), so the
/// removals usually happen in the NEW table while it still has a `prev`, and both nodes are
/// buried in the old table's graveyard concurrently. Both are freed exactly once, with it.
#[test]
fn removals_in_new_table_race_to_bury() {
    let x = name_at("x", 0, 8);
    let y = name_at("y", 1, 8);
    let others: Vec<&'static str> = (2..6).map(|slot| name_at("n", slot, 8)).collect();
    let mut setup = vec![Reg(x, "x1"), Reg(y, "y1")];
    setup.extend(
        others
            .iter()
            .zip(["n2", "n3", "n4", "n5"])
            .map(|(&n, l)| Reg(n, l)),
    );
    let mut names = vec![x, y];
    names.extend(&others);
    check(
        "removals_in_new_table_race_to_bury",
        2,
        Scenario {
            capacity: 4,
            setup,
            a: vec![Unreg(x, "x1")],
            b: vec![Unreg(y, "y1")],
            names,
            extra: Some(|(a, b, fin)| {
                assert_eq!((&a[0], &b[0]), (&Out::Removed("x1"), &Out::Removed("y1")));
                assert_eq!(fin.len(), 4);
            }),
            expect_frees: false,
        },
    );
}

/// Reclamation through the graveyard racing a read: `x` is alone in a migrating 4-slot table.
/// The writer removes it (copying slot 0 first, so the node is removed from the NEW table and
/// buried in the old one), finishes the migration with `iter` (promotion retires the old
/// table), then flushes and re-pins until the old table, and with it the buried node, is freed.
/// The reader gets `x` meanwhile, possibly from the old table's `Frozen` slot: what it read
/// must not be freed before it unpins.
#[test]
fn get_races_removal_in_new_table_and_free() {
    let x = name_at("x", 0, 4);
    check(
        "get_races_removal_in_new_table_and_free",
        2,
        Scenario {
            capacity: 1,
            setup: vec![Reg(x, "x1")],
            a: vec![Unreg(x, "x1"), Iter, Flush, Repin, Flush, Repin, Flush],
            b: vec![Get(x), Get(x)],
            names: vec![x],
            extra: None,
            expect_frees: true,
        },
    );
}

/// A name's tombstone is revived by one thread while another starts a migration and then
/// registers the same name: an 8-slot table holds `x`'s tombstone and four names (five claims,
/// the soft limit). Thread b registers `y` (the sixth claim starts a migration), then `x`: seeing
/// the migration, it seals `x`'s tombstone and goes to the next table. Thread a registers `x`
/// without having seen the migration, so it may revive the tombstone in the old table. Exactly
/// one registration of `x` may win, and `x` must end up bound once.
#[test]
fn tombstone_reuse_races_migration() {
    check(
        "tombstone_reuse_races_migration",
        2,
        Scenario {
            capacity: 4,
            setup: vec![
                Reg("x", "x1"),
                Unreg("x", "x1"),
                Reg("a", "a1"),
                Reg("b", "b1"),
                Reg("c", "c1"),
                Reg("d", "d1"),
            ],
            a: vec![Reg("x", "xa")],
            b: vec![Reg("y", "y1"), Reg("x", "xb")],
            names: vec!["x", "y", "a", "b", "c", "d"],
            extra: None,
            expect_frees: false,
        },
    );
}

/// A tombstone revived in one thread while another removes and re-registers the same name:
/// every outcome must be one of the sequential ones (no second live copy of `x`).
#[test]
fn tombstone_reuse_races_remove() {
    check(
        "tombstone_reuse_races_remove",
        2,
        Scenario {
            capacity: 8,
            setup: vec![Reg("x", "x1")],
            a: vec![Unreg("x", "x1"), Reg("x", "xa")],
            b: vec![Reg("x", "xb"), Get("x")],
            names: vec!["x"],
            extra: None,
            expect_frees: false,
        },
    );
}

/// A removed node is its own tombstone: its value is dropped by a deferred job and its memory
/// is shared by that job and the tombstone. Here the tombstone is reused (and released) at once
/// while a reader may still hold the removed binding, and both releases race the reader through
/// `flush`/`repin`: the reader must see `x1` whole or `x2`, the value must be dropped exactly
/// once, after the reader is done with it, and the node's memory freed exactly once (Miri and
/// loom's leak checks on the same code).
#[test]
fn tombstone_release_races_reader() {
    check(
        "tombstone_release_races_reader",
        2,
        Scenario {
            capacity: 4,
            setup: vec![Reg("x", "x1")],
            a: vec![Get("x"), Get("x")],
            b: vec![
                Unreg("x", "x1"),
                Reg("x", "x2"),
                Flush,
                Repin,
                Flush,
                Repin,
                Flush,
            ],
            names: vec!["x"],
            extra: None,
            expect_frees: true,
        },
    );
}
