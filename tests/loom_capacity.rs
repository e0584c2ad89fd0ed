//! loom models of the bound on live bindings (`Builder::max_entries`; the crate's
//! `raw/capacity.rs`): a place is admitted by a compare-and-swap loop right before the
//! registration's CAS, given back at once if that CAS loses, and released at the commit point
//! of every removal.
//!
//! Run with the other models (`ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!   cargo test --release --test loom_capacity --target-dir target/loom -- --nocapture
//! ```
//! The planted `admit_race` (check the count, then increment it) fails the first model: both
//! registrations pass the check and the registry holds two bindings under a bound of one.
#![cfg(loom)]

#[path = "support/loom_check.rs"]
mod loom_check;
use loom_check::check;

use genreg::{Error, Registry, Tag};

/// A bounded registry on crossbeam-epoch's default collector (in loom mode it is created afresh
/// for every execution of the model).
fn registry(max: usize) -> Registry<u32> {
    Registry::builder()
        .hash_seed(0x5eed_0003)
        .max_entries(max)
        .build()
}

/// The outcome of a registration: its tag, or `None` if refused as full.
fn outcome(r: Result<Tag, genreg::Rejected<u32>>) -> Option<Tag> {
    match r {
        Ok(tag) => Some(tag),
        Err(rej) => match rej.error() {
            Error::Full { capacity: 1, .. } => None,
            other => panic!("unexpected refusal: {other}"),
        },
    }
}

/// Two registrations of different names race for the last place: exactly one wins, the other
/// is refused as full, and the registry holds one binding.
#[test]
fn two_registrations_race_for_the_last_place() {
    check("two_registrations_race_for_the_last_place", 3, || {
        let reg = registry(1);
        let r2 = reg.clone();
        let other = loom::thread::spawn(move || outcome(r2.register_detached("b", 2)));
        let mine = outcome(reg.register_detached("a", 1));
        let theirs = other.join().unwrap();
        assert!(
            mine.is_some() != theirs.is_some(),
            "exactly one wins: {mine:?} / {theirs:?}"
        );
        assert_eq!(reg.entries().len(), 1);
        assert_eq!(reg.len(), 1);
    });
}

/// A removal and a registration race another registration under a bound of one: never two
/// bindings; the freed place is reusable at once (a registration that begins after the removal
/// returned wins unless the other registration took the place); and every place is accounted
/// for at the end (exactly the live bindings hold one).
#[test]
fn removal_races_admission() {
    check("removal_races_admission", 2, || {
        let reg = registry(1);
        let ta = reg.register_detached("a", 0).unwrap();
        let r2 = reg.clone();
        let racer = loom::thread::spawn(move || outcome(r2.register_detached("c", 2)));
        reg.unregister_if_same("a", ta).unwrap();
        // Begun after the removal returned: the place is free, unless "c" took it.
        let b = outcome(reg.register_detached("b", 1));
        let c = racer.join().unwrap();
        assert!(
            !(b.is_some() && c.is_some()),
            "two bindings under a bound of one"
        );
        assert!(b.is_some() || c.is_some(), "the freed place was lost");
        let live = reg.entries().len();
        assert_eq!(live, 1);
        // The places held are exactly the live bindings: after removing the one left, the
        // bound's worth of registrations fits again, and no more.
        let (name, entry) = reg.entries().pop().unwrap();
        reg.unregister_if_same(&name, entry.tag()).unwrap();
        assert!(outcome(reg.register_detached("d", 3)).is_some());
        assert!(outcome(reg.register_detached("e", 4)).is_none());
    });
}
