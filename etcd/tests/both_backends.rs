//! One suite, two backends: the core's scenarios, each run against the in-process
//! `genreg::Registry` and against `EtcdRegistry` on a real etcd, asserting the same outcomes.
//!
//! [`Backend`] is the common surface (register, get, unregister_if_same, replace_if_same) and
//! [`Outcome`] the refusals both share, mapped from each backend's typed error (the mapping
//! also checks that every refusal names the name it was asked about, names the tag it was
//! given back as `expected`, and hands the value back).
//!
//! Tags differ between the backends (a core generation against an etcd revision), so where two
//! runs are compared tag for tag (the lockstep random test), each tag is replaced by the index
//! of the operation that created it on its own backend, and those indices are compared.
//!
//! The last section pins down divergences this suite found in genreg-etcd, all fixed since:
//! `unregister_if_same` compared only a tag's generation (never its instance), a generation-0
//! tag "removed" a free name, and racing replacements carrying the same value all succeeded.
//! They run as regression tests.

use std::collections::HashMap;
use std::sync::Arc;

use genreg_etcd::local::Etcd;
use genreg_etcd::{EtcdRegistry, Generation, InstanceId, Options, Tag};

// ---------------------------------------------------------------------------------------
// The common surface
// ---------------------------------------------------------------------------------------

/// Why an operation was refused, in the vocabulary both backends share. `T` is what names a
/// binding: its [`Tag`], or (in the lockstep comparison) the index of the op that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome<T = Tag> {
    AlreadyRegistered { current: T },
    NotFound,
    TagMismatch { current: T },
    InvalidName { reason: genreg::InvalidNameReason },
}

impl<T> Outcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::AlreadyRegistered { current } => Outcome::AlreadyRegistered {
                current: f(current),
            },
            Outcome::NotFound => Outcome::NotFound,
            Outcome::TagMismatch { current } => Outcome::TagMismatch {
                current: f(current),
            },
            Outcome::InvalidName { reason } => Outcome::InvalidName { reason },
        }
    }
}

/// The core's refusal as an [`Outcome`]; checks the name it carries, and `expected` (the tag
/// the caller presented) for a mismatch.
fn from_local(e: &genreg::Error, asked: &str, presented: Option<Tag>) -> Outcome {
    match e {
        genreg::Error::AlreadyRegistered { name, current } => {
            assert_eq!(name.as_str(), asked, "local: refusal names another name");
            Outcome::AlreadyRegistered { current: *current }
        }
        genreg::Error::NotFound { name } => {
            assert_eq!(name.as_str(), asked, "local: refusal names another name");
            Outcome::NotFound
        }
        genreg::Error::TagMismatch {
            name,
            expected,
            current,
        } => {
            assert_eq!(name.as_str(), asked, "local: refusal names another name");
            assert_eq!(Some(*expected), presented, "local: `expected` is not ours");
            Outcome::TagMismatch { current: *current }
        }
        genreg::Error::InvalidName { name, reason } => {
            assert_eq!(
                name.as_str(),
                asked,
                "local: the invalid name is not as given"
            );
            Outcome::InvalidName {
                reason: reason.clone(),
            }
        }
        other => panic!("local: unexpected refusal of {asked:?}: {other}"),
    }
}

/// etcd's refusal as an [`Outcome`], with the same checks; any other error (etcd unreachable,
/// a lost lease, a codec failure) fails the test.
fn from_etcd(e: &genreg_etcd::Error, asked: &str, presented: Option<Tag>) -> Outcome {
    use genreg_etcd::Error as E;
    match e {
        E::AlreadyRegistered { name, current } => {
            assert_eq!(name, asked, "etcd: refusal names another name");
            Outcome::AlreadyRegistered { current: *current }
        }
        E::NotFound { name } => {
            assert_eq!(name, asked, "etcd: refusal names another name");
            Outcome::NotFound
        }
        E::TagMismatch {
            name,
            expected,
            current,
        } => {
            assert_eq!(name, asked, "etcd: refusal names another name");
            assert_eq!(Some(*expected), presented, "etcd: `expected` is not ours");
            Outcome::TagMismatch { current: *current }
        }
        E::InvalidName { name, reason } => {
            assert_eq!(name, asked, "etcd: the invalid name is not as given");
            Outcome::InvalidName {
                reason: reason.clone(),
            }
        }
        other => panic!("etcd: unexpected error for {asked:?}: {other}"),
    }
}

/// A registry of `String` values, in-process or on etcd.
#[derive(Clone)]
enum Backend {
    Local(genreg::Registry<String>),
    Etcd(EtcdRegistry<String>),
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            Backend::Etcd(_) => "etcd",
        }
    }

    /// Binds `name` (a fresh instance); the guard is detached, so the binding stays until it
    /// is removed by tag. A refusal must hand the value back.
    async fn register(&self, name: &str, value: &str) -> Result<Tag, Outcome> {
        match self {
            Backend::Local(r) => match r.register(name, value.to_string()) {
                Ok(reg) => Ok(reg.detach()),
                Err(rej) => {
                    let out = from_local(rej.error(), name, None);
                    assert_eq!(rej.into_value(), value, "local: value not given back");
                    Err(out)
                }
            },
            Backend::Etcd(r) => match r.register(name, value.to_string()).await {
                Ok(reg) => Ok(reg.detach()),
                Err(rej) => {
                    let out = from_etcd(&rej.error, name, None);
                    assert_eq!(rej.into_value(), value, "etcd: value not given back");
                    Err(out)
                }
            },
        }
    }

    /// The binding of a valid name. (On an invalid name the backends differ in shape: the
    /// core's `get` is infallible and says `None`, etcd's says `InvalidName`; see
    /// `invalid_names_and_free_names`.)
    async fn get(&self, name: &str) -> Option<(Tag, String)> {
        match self {
            Backend::Local(r) => r.get(name).map(|e| (e.tag(), e.into_value())),
            Backend::Etcd(r) => r
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("etcd: get({name:?}) failed: {e}"))
                .map(|b| {
                    assert_eq!(b.name, name);
                    (b.tag, b.value)
                }),
        }
    }

    async fn unregister_if_same(&self, name: &str, tag: Tag) -> Result<(), Outcome> {
        match self {
            Backend::Local(r) => match r.unregister_if_same(name, tag) {
                Ok(removed) => {
                    assert_eq!(removed.tag(), tag, "local: removed another binding");
                    Ok(())
                }
                Err(e) => Err(from_local(&e, name, Some(tag))),
            },
            Backend::Etcd(r) => r
                .unregister_if_same(name, tag)
                .await
                .map_err(|e| from_etcd(&e, name, Some(tag))),
        }
    }

    async fn replace_if_same(&self, name: &str, tag: Tag, value: &str) -> Result<Tag, Outcome> {
        match self {
            Backend::Local(r) => match r.replace_if_same(name, tag, value.to_string()) {
                Ok(t) => Ok(t),
                Err(rej) => {
                    let out = from_local(rej.error(), name, Some(tag));
                    assert_eq!(rej.into_value(), value, "local: value not given back");
                    Err(out)
                }
            },
            Backend::Etcd(r) => match r.replace_if_same(name, tag, value.to_string()).await {
                Ok(t) => Ok(t),
                Err(rej) => {
                    let out = from_etcd(&rej.error, name, Some(tag));
                    assert_eq!(rej.into_value(), value, "etcd: value not given back");
                    Err(out)
                }
            },
        }
    }
}

/// The two backends for one test: a fresh core registry, and a registry on an etcd of the
/// test's own (kept alive by the returned [`Etcd`]) under a root named after the test.
async fn backends(test: &str) -> (Etcd, [Backend; 2]) {
    let etcd = Etcd::start();
    let remote = EtcdRegistry::<String>::connect_with(
        &etcd.endpoints(),
        Options::default().root(format!("both/{test}/")),
        genreg_etcd::Json,
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to the test's etcd: {e}"));
    (
        etcd,
        [
            Backend::Local(genreg::Registry::new()),
            Backend::Etcd(remote),
        ],
    )
}

/// A tag no backend ever issued: an instance nobody draws and a generation (an etcd revision)
/// far beyond any a test reaches.
const FORGED: Tag = Tag::new(InstanceId::from_raw(0x5eed), Generation::from_raw(1 << 40));

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// Register then get; a second registration is refused naming the first's tag, and its value
/// is given back (checked in `Backend::register`); the binding is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_get_and_refusal_names_the_first() {
    let (_etcd, backends) = backends("register").await;
    for b in &backends {
        let who = b.label();
        assert_eq!(b.get("agent").await, None, "{who}");
        let t1 = b.register("agent", "first").await.unwrap();
        assert_eq!(
            b.get("agent").await,
            Some((t1, "first".to_string())),
            "{who}"
        );
        assert_eq!(
            b.register("agent", "second").await,
            Err(Outcome::AlreadyRegistered { current: t1 }),
            "{who}"
        );
        assert_eq!(
            b.get("agent").await,
            Some((t1, "first".to_string())),
            "{who}"
        );
        // Another name is independent.
        let t2 = b.register("other", "second").await.unwrap();
        assert_ne!(t1, t2, "{who}");
        assert_ne!(t1.instance(), t2.instance(), "{who}: instances are fresh");
        assert_eq!(
            b.get("other").await,
            Some((t2, "second".to_string())),
            "{who}"
        );
    }
}

/// The destructor race: A's binding is removed by tag, B registers anew, and A's late cleanup
/// with its old tag is refused naming B's tag, leaving B's binding intact (a late replacement
/// too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_owner_cleanup_is_refused() {
    let (_etcd, backends) = backends("stale").await;
    for b in &backends {
        let who = b.label();
        let ta = b.register("coordinator", "A").await.unwrap();
        b.unregister_if_same("coordinator", ta).await.unwrap();
        assert_eq!(b.get("coordinator").await, None, "{who}");
        let tb = b.register("coordinator", "B").await.unwrap();
        assert_ne!(ta, tb, "{who}");
        assert_eq!(
            b.unregister_if_same("coordinator", ta).await,
            Err(Outcome::TagMismatch { current: tb }),
            "{who}"
        );
        assert_eq!(
            b.replace_if_same("coordinator", ta, "A again").await,
            Err(Outcome::TagMismatch { current: tb }),
            "{who}"
        );
        assert_eq!(
            b.get("coordinator").await,
            Some((tb, "B".to_string())),
            "{who}"
        );
        // B's own removal works, once.
        b.unregister_if_same("coordinator", tb).await.unwrap();
        assert_eq!(
            b.unregister_if_same("coordinator", tb).await,
            Err(Outcome::NotFound),
            "{who}"
        );
    }
}

/// replace_if_same gives a new tag (same instance, new generation) and the new value; the old
/// tag is stale from then on, for removal and replacement alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacement_makes_the_old_tag_stale() {
    let (_etcd, backends) = backends("replace").await;
    for b in &backends {
        let who = b.label();
        let t1 = b.register("planner", "v1").await.unwrap();
        let t2 = b.replace_if_same("planner", t1, "v2").await.unwrap();
        assert_ne!(t1, t2, "{who}");
        assert_eq!(t2.instance(), t1.instance(), "{who}: same instance");
        assert_ne!(t2.generation(), t1.generation(), "{who}: new generation");
        assert_eq!(
            b.get("planner").await,
            Some((t2, "v2".to_string())),
            "{who}"
        );
        assert_eq!(
            b.unregister_if_same("planner", t1).await,
            Err(Outcome::TagMismatch { current: t2 }),
            "{who}"
        );
        assert_eq!(
            b.replace_if_same("planner", t1, "v3").await,
            Err(Outcome::TagMismatch { current: t2 }),
            "{who}"
        );
        assert_eq!(
            b.get("planner").await,
            Some((t2, "v2".to_string())),
            "{who}"
        );
        // A chain of replacements: each tag is current exactly until the next.
        let t3 = b.replace_if_same("planner", t2, "v3").await.unwrap();
        assert_eq!(
            b.replace_if_same("planner", t2, "v4").await,
            Err(Outcome::TagMismatch { current: t3 }),
            "{who}"
        );
        b.unregister_if_same("planner", t3).await.unwrap();
        for stale in [t1, t2, t3] {
            assert_eq!(
                b.replace_if_same("planner", stale, "v5").await,
                Err(Outcome::NotFound),
                "{who}"
            );
        }
        assert_eq!(b.get("planner").await, None, "{who}");
    }
}

/// Tag-checked operations on a free name are `NotFound`, whatever the tag; invalid names
/// (empty, a control character, 256 bytes) are `InvalidName` with the same reason on both,
/// and 255 bytes is fine on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_and_free_names() {
    let (_etcd, backends) = backends("names").await;
    let long_ok = "x".repeat(255);
    let too_long = "x".repeat(256);
    let multibyte_too_long = "é".repeat(128); // 256 bytes, 128 chars
    let bad: [(&str, genreg::InvalidNameReason); 5] = [
        ("", genreg::InvalidNameReason::Empty),
        ("a\u{1}b", genreg::InvalidNameReason::ControlChar { at: 1 }),
        (
            "tab\there",
            genreg::InvalidNameReason::ControlChar { at: 3 },
        ),
        (&too_long, genreg::InvalidNameReason::TooLong { len: 256 }),
        (
            &multibyte_too_long,
            genreg::InvalidNameReason::TooLong { len: 256 },
        ),
    ];
    for b in &backends {
        let who = b.label();
        let real = b.register("real", "r").await.unwrap();

        // Free names: NotFound, with a real tag (of another name) or a forged one.
        for tag in [real, FORGED] {
            assert_eq!(
                b.unregister_if_same("free", tag).await,
                Err(Outcome::NotFound),
                "{who}"
            );
            assert_eq!(
                b.replace_if_same("free", tag, "v").await,
                Err(Outcome::NotFound),
                "{who}"
            );
        }
        assert_eq!(b.get("free").await, None, "{who}");

        for (name, reason) in &bad {
            let invalid = Outcome::InvalidName {
                reason: reason.clone(),
            };
            assert_eq!(
                b.register(name, "v").await,
                Err(invalid.clone()),
                "{who}: {name:?}"
            );
            assert_eq!(
                b.unregister_if_same(name, real).await,
                Err(invalid.clone()),
                "{who}: {name:?}"
            );
            assert_eq!(
                b.replace_if_same(name, real, "v").await,
                Err(invalid.clone()),
                "{who}: {name:?}"
            );
            // `get` differs in shape only: the core's is infallible ("nothing bound"), etcd's
            // refuses the name. Either way there is no binding.
            match b {
                Backend::Local(r) => assert!(r.get(name).is_none(), "local: {name:?}"),
                Backend::Etcd(r) => {
                    let e = r.get(name).await.unwrap_err();
                    assert_eq!(from_etcd(&e, name, None), invalid, "{name:?}");
                }
            }
        }

        // The longest valid name works end to end.
        let t = b.register(&long_ok, "long").await.unwrap();
        assert_eq!(
            b.get(&long_ok).await,
            Some((t, "long".to_string())),
            "{who}"
        );
        b.unregister_if_same(&long_ok, t).await.unwrap();
        assert_eq!(b.get(&long_ok).await, None, "{who}");
        // The valid binding was untouched by all of the above.
        assert_eq!(b.get("real").await, Some((real, "r".to_string())), "{who}");
    }
}

/// 8 tasks race to register one name, 20 rounds: exactly one wins each round, every loser is
/// refused naming the winner's tag, and the name holds the winner's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_registrations_have_exactly_one_winner() {
    const TASKS: usize = 8;
    const ROUNDS: usize = 20;
    let (_etcd, backends) = backends("race").await;
    for b in &backends {
        let who = b.label();
        for round in 0..ROUNDS {
            let name = format!("contested-{round}");
            let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
            let mut tasks = Vec::new();
            for i in 0..TASKS {
                let (b, name, barrier) = (b.clone(), name.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    (i, b.register(&name, &format!("task-{i}")).await)
                }));
            }
            let mut winners = Vec::new();
            let mut losers = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    (i, Ok(tag)) => winners.push((i, tag)),
                    (_, Err(out)) => losers.push(out),
                }
            }
            assert_eq!(winners.len(), 1, "{who}, round {round}: {winners:?}");
            let (i, tag) = winners[0];
            assert_eq!(losers.len(), TASKS - 1, "{who}, round {round}");
            for out in &losers {
                assert_eq!(
                    *out,
                    Outcome::AlreadyRegistered { current: tag },
                    "{who}, round {round}"
                );
            }
            assert_eq!(
                b.get(&name).await,
                Some((tag, format!("task-{i}"))),
                "{who}, round {round}"
            );
        }
    }
}

/// 8 holders of one tag race to replace the binding, 20 rounds: exactly one wins, every loser
/// is refused naming the winner's tag, and the name holds the winner's value. With `same`, all
/// of them carry the same value (the winner still is one of them; see
/// `racing_replacements_with_one_value_have_exactly_one_winner`).
async fn replacement_race(test: &str, same: bool) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 20;
    let (_etcd, backends) = backends(test).await;
    for b in &backends {
        let who = b.label();
        let mut tag = b.register("contested", "start").await.unwrap();
        for round in 0..ROUNDS {
            let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
            let mut tasks = Vec::new();
            for i in 0..TASKS {
                let (b, barrier) = (b.clone(), barrier.clone());
                let value = if same {
                    format!("round-{round}")
                } else {
                    format!("round-{round}-task-{i}")
                };
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let out = b.replace_if_same("contested", tag, &value).await;
                    (value, out)
                }));
            }
            let mut winners = Vec::new();
            let mut losers = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    (value, Ok(new)) => winners.push((value, new)),
                    (_, Err(out)) => losers.push(out),
                }
            }
            assert_eq!(winners.len(), 1, "{who}, round {round}: {winners:?}");
            let (value, new) = winners.pop().unwrap();
            assert_ne!(new, tag, "{who}, round {round}");
            for out in &losers {
                assert_eq!(
                    *out,
                    Outcome::TagMismatch { current: new },
                    "{who}, round {round}"
                );
            }
            assert_eq!(
                b.get("contested").await,
                Some((new, value)),
                "{who}, round {round}"
            );
            tag = new;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replacements_have_exactly_one_winner() {
    replacement_race("replace-race", false).await;
}

/// The same race, every holder carrying the same value. The core: one winner, the others
/// refused. genreg-etcd (`rewrite`, etcd/src/registry.rs): each loser's transaction fails, and
/// its "our own put, applied by an attempt whose answer was lost" check (same bytes, same
/// create_revision, a higher mod_revision) takes the winner's put for its own, so losers
/// answer `Ok` with the winner's tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replacements_with_one_value_have_exactly_one_winner() {
    replacement_race("replace-race-same", true).await;
}

// ---------------------------------------------------------------------------------------
// A random sequence in lockstep
// ---------------------------------------------------------------------------------------

/// xorshift64: enough randomness for op choice, reproducible from a seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Which tag an op presents: the one op `i` created, or [`FORGED`].
#[derive(Clone, Copy, Debug)]
enum Pick {
    Made(usize),
    Forged,
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        name: String,
        value: String,
    },
    Get {
        name: String,
    },
    Unregister {
        name: String,
        tag: Pick,
    },
    Replace {
        name: String,
        tag: Pick,
        value: String,
    },
}

/// An op's result with every tag replaced by the index of the op that created it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Abstract {
    /// A registration or replacement: the index of this op (its new tag).
    Made(usize),
    Removed,
    Got(Option<(usize, String)>),
    Refused(Outcome<usize>),
}

/// One backend's tags, each against the index of the op that created it.
#[derive(Default)]
struct Tags {
    op_of: HashMap<Tag, usize>,
    tag_of: HashMap<usize, Tag>,
}

impl Tags {
    fn made(&mut self, who: &str, op: usize, tag: Tag) {
        if let Some(earlier) = self.op_of.insert(tag, op) {
            panic!("{who}: op {op} was given tag {tag:?}, already given by op {earlier}");
        }
        self.tag_of.insert(op, tag);
    }
    fn op(&self, who: &str, op: usize, tag: Tag) -> usize {
        *self.op_of.get(&tag).unwrap_or_else(|| {
            panic!("{who}: op {op} names tag {tag:?}, which no op of this run created")
        })
    }
    fn tag(&self, pick: Pick) -> Tag {
        match pick {
            Pick::Made(i) => self.tag_of[&i],
            Pick::Forged => FORGED,
        }
    }
}

async fn apply(b: &Backend, tags: &mut Tags, i: usize, op: &Op) -> Abstract {
    let who = b.label();
    let refused = |tags: &Tags, out: Outcome| Abstract::Refused(out.map(|t| tags.op(who, i, t)));
    match op {
        Op::Register { name, value } => match b.register(name, value).await {
            Ok(tag) => {
                tags.made(who, i, tag);
                Abstract::Made(i)
            }
            Err(out) => refused(tags, out),
        },
        Op::Get { name } => Abstract::Got(
            b.get(name)
                .await
                .map(|(tag, value)| (tags.op(who, i, tag), value)),
        ),
        Op::Unregister { name, tag } => match b.unregister_if_same(name, tags.tag(*tag)).await {
            Ok(()) => Abstract::Removed,
            Err(out) => refused(tags, out),
        },
        Op::Replace { name, tag, value } => {
            match b.replace_if_same(name, tags.tag(*tag), value).await {
                Ok(new) => {
                    tags.made(who, i, new);
                    Abstract::Made(i)
                }
                Err(out) => refused(tags, out),
            }
        }
    }
}

/// The sequential model: name → (op that made the binding, value).
fn model_step(model: &mut HashMap<String, (usize, String)>, i: usize, op: &Op) -> Abstract {
    let invalid = |name: &str| {
        genreg::Name::validate(name)
            .err()
            .map(|reason| Abstract::Refused(Outcome::InvalidName { reason }))
    };
    let matches = |pick: Pick, made: usize| matches!(pick, Pick::Made(j) if j == made);
    match op {
        Op::Register { name, value } => invalid(name).unwrap_or_else(|| match model.get(name) {
            Some(&(current, _)) => Abstract::Refused(Outcome::AlreadyRegistered { current }),
            None => {
                model.insert(name.clone(), (i, value.clone()));
                Abstract::Made(i)
            }
        }),
        Op::Get { name } => Abstract::Got(model.get(name).cloned()),
        Op::Unregister { name, tag } => invalid(name).unwrap_or_else(|| match model.get(name) {
            None => Abstract::Refused(Outcome::NotFound),
            Some(&(current, _)) if matches(*tag, current) => {
                model.remove(name);
                Abstract::Removed
            }
            Some(&(current, _)) => Abstract::Refused(Outcome::TagMismatch { current }),
        }),
        Op::Replace { name, tag, value } => {
            invalid(name).unwrap_or_else(|| match model.get(name) {
                None => Abstract::Refused(Outcome::NotFound),
                Some(&(current, _)) if matches(*tag, current) => {
                    model.insert(name.clone(), (i, value.clone()));
                    Abstract::Made(i)
                }
                Some(&(current, _)) => Abstract::Refused(Outcome::TagMismatch { current }),
            })
        }
    }
}

const NAMES: usize = 8;
const OPS: usize = 300;

/// Draws an op, given the model's state and the ops that created tags so far. Values come
/// from a pool of three, so that stale replacements often carry the value stored now (see
/// `stale_replace_with_the_current_value_is_refused`).
fn draw(rng: &mut XorShift, model: &HashMap<String, (usize, String)>, made: &[usize]) -> Op {
    let name = if rng.below(100) < 3 {
        ["", "bad\u{7}name", &"y".repeat(256)][rng.below(3)].to_string()
    } else {
        format!("n{}", rng.below(NAMES))
    };
    let value = format!("v{}", rng.below(3));
    // Half the time the name's current tag, else any tag ever made (stale, or another name's),
    // now and then a forged one.
    let pick = |rng: &mut XorShift| {
        let current = model.get(&name).map(|&(op, _)| op);
        match (rng.below(100), current) {
            (0..50, Some(op)) => Pick::Made(op),
            (0..5, _) => Pick::Forged,
            _ if !made.is_empty() => Pick::Made(made[rng.below(made.len())]),
            _ => Pick::Forged,
        }
    };
    match rng.below(100) {
        0..35 => Op::Register { name, value },
        // A `get` of an invalid name differs in shape between the backends (see
        // `invalid_names_and_free_names`): a registration is drawn instead.
        35..50 if genreg::Name::validate(&name).is_ok() => Op::Get { name },
        35..50 => Op::Register { name, value },
        50..75 => {
            let tag = pick(rng);
            Op::Unregister { name, tag }
        }
        _ => {
            let tag = pick(rng);
            Op::Replace { name, tag, value }
        }
    }
}

/// A seeded random sequence of a few hundred ops over 8 names, applied to both backends in
/// lockstep: outcomes agree op for op (tags compared as the ops that created them), with each
/// other and with a sequential model; at the end every name reads the same everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_agree_op_for_op() {
    let etcd = Etcd::start();
    for seed in [0x9e37_79b9_7f4a_7c15_u64, 42, 0xdead_beef] {
        let remote = EtcdRegistry::<String>::connect_with(
            &etcd.endpoints(),
            Options::default().root(format!("both/random/{seed:x}/")),
            genreg_etcd::Json,
        )
        .await
        .unwrap();
        let backends = [
            Backend::Local(genreg::Registry::new()),
            Backend::Etcd(remote),
        ];
        let mut tags: [Tags; 2] = Default::default();
        let mut model = HashMap::new();
        let mut made = Vec::new();
        let mut rng = XorShift::new(seed);
        let mut counts = HashMap::<String, usize>::new();
        for i in 0..OPS {
            let op = draw(&mut rng, &model, &made);
            let local = apply(&backends[0], &mut tags[0], i, &op).await;
            let remote = apply(&backends[1], &mut tags[1], i, &op).await;
            assert_eq!(
                local, remote,
                "seed {seed:#x}, op {i} {op:?}: the backends disagree (local, etcd)"
            );
            let expected = model_step(&mut model, i, &op);
            assert_eq!(
                local, expected,
                "seed {seed:#x}, op {i} {op:?}: both backends disagree with the model"
            );
            if let Abstract::Made(op_index) = local {
                made.push(op_index);
            }
            let kind = match &local {
                Abstract::Refused(out) => format!("{:?}", out.clone().map(|_| ())),
                other => format!("{:?}", std::mem::discriminant(other)),
            };
            *counts.entry(kind).or_default() += 1;
        }
        // The final state, name by name.
        for n in 0..NAMES {
            let name = format!("n{n}");
            let want = model.get(&name).cloned();
            for (b, tags) in backends.iter().zip(&tags) {
                let got = b
                    .get(&name)
                    .await
                    .map(|(tag, value)| (tags.op(b.label(), OPS, tag), value));
                assert_eq!(got, want, "seed {seed:#x}: {} holds {name}", b.label());
            }
        }
        // Every kind of outcome was exercised (so the agreement above is not vacuous).
        for kind in [
            "AlreadyRegistered { current: () }",
            "NotFound",
            "TagMismatch { current: () }",
        ] {
            assert!(
                counts.get(kind).copied().unwrap_or(0) > 0,
                "seed {seed:#x}: no {kind} in the sequence: {counts:?}"
            );
        }
        assert!(
            counts.keys().any(|k| k.starts_with("InvalidName")),
            "seed {seed:#x}: no invalid name in the sequence: {counts:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Divergences found by this suite
// ---------------------------------------------------------------------------------------

/// A stale tag stays stale for `replace_if_same` even when the value it carries is the one
/// stored now. The core refuses (TagMismatch naming the current tag). genreg-etcd before
/// 04d870a took its "our own earlier attempt, applied before its answer was lost" path (same
/// bytes, created at or before the stale revision) and answered `Ok` with the current tag, as
/// if the stale owner had made the binding there now; it now reads the record first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_replace_with_the_current_value_is_refused() {
    let (_etcd, backends) = backends("stale-same-value").await;
    for b in &backends {
        let who = b.label();
        let t1 = b.register("cfg", "v1").await.unwrap();
        let t2 = b.replace_if_same("cfg", t1, "v2").await.unwrap();
        assert_eq!(
            b.replace_if_same("cfg", t1, "v2").await,
            Err(Outcome::TagMismatch { current: t2 }),
            "{who}: a stale tag, with the value stored now"
        );
        // The same after an A-B-A of values: t1 stale, "v1" stored again under t3.
        let t3 = b.replace_if_same("cfg", t2, "v1").await.unwrap();
        assert_eq!(
            b.replace_if_same("cfg", t1, "v1").await,
            Err(Outcome::TagMismatch { current: t3 }),
            "{who}: a stale tag, with the value stored now"
        );
        assert_eq!(b.get("cfg").await, Some((t3, "v1".to_string())), "{who}");
    }
}

/// The binding's generation with another instance: a tag that does not name the binding.
/// Replacement compares both parts on both backends (genreg-etcd since 04d870a).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacement_with_another_instances_tag_is_refused() {
    let (_etcd, backends) = backends("instance-replace").await;
    for b in &backends {
        let who = b.label();
        let t = b.register("svc", "v").await.unwrap();
        let other = Tag::new(
            InstanceId::from_raw(t.instance().as_raw() ^ 1),
            t.generation(),
        );
        assert_eq!(
            b.replace_if_same("svc", other, "hijacked").await,
            Err(Outcome::TagMismatch { current: t }),
            "{who}"
        );
        assert_eq!(b.get("svc").await, Some((t, "v".to_string())), "{who}");
    }
}

/// The same for removal: both backends compare both parts. (genreg-etcd's
/// `unregister_if_same` once compared only the generation, `mod_revision`, and removed the
/// binding: this suite found it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_with_another_instances_tag_is_refused() {
    let (_etcd, backends) = backends("instance-remove").await;
    for b in &backends {
        let who = b.label();
        let t = b.register("svc", "v").await.unwrap();
        let other = Tag::new(
            InstanceId::from_raw(t.instance().as_raw() ^ 1),
            t.generation(),
        );
        assert_eq!(
            b.unregister_if_same("svc", other).await,
            Err(Outcome::TagMismatch { current: t }),
            "{who}"
        );
        assert_eq!(b.get("svc").await, Some((t, "v".to_string())), "{who}");
    }
}

/// A tag of generation 0 on a free name: nothing is bound, so the core says `NotFound`.
/// genreg-etcd's compare `mod_revision(key) == 0` holds for a key that does not exist, so its
/// transaction "succeeds" (deleting nothing) and it answers `Ok(())`. (Replacement is not
/// affected: it reads the record first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_with_generation_zero_on_a_free_name_is_not_found() {
    let (_etcd, backends) = backends("generation-zero").await;
    let zero = Tag::new(InstanceId::from_raw(7), Generation::from_raw(0));
    for b in &backends {
        let who = b.label();
        assert_eq!(
            b.replace_if_same("free", zero, "z").await,
            Err(Outcome::NotFound),
            "{who}: replace"
        );
        assert_eq!(
            b.unregister_if_same("free", zero).await,
            Err(Outcome::NotFound),
            "{who}: removal"
        );
        assert_eq!(b.get("free").await, None, "{who}");
    }
}
