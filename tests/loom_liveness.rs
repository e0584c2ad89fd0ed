//! loom models of liveness (the crate's `raw/live.rs` and `raw/expiry.rs`): a keepalive and a
//! burial CAS the same deadline word, so exactly one wins; a health record and a condemnation
//! CAS the same health word; a reaper attaching and a registration with a deadline meet through
//! a pair of SeqCst fences, so the reaper learns of every such binding.
//!
//! Time is a `ManualClock`, whose reads and moves the model interleaves with everything else.
//!
//! Run with the other models (`ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!   cargo test --release --test loom_liveness --target-dir target/loom -- --nocapture
//! ```
//! The planted `expiry_unclaimed` (a burial decided without its CAS) fails the first model: a
//! keepalive that renewed the binding in time returns `Ok`, and the binding is removed anyway.
#![cfg(loom)]

#[path = "support/loom_check.rs"]
mod loom_check;
use loom_check::check;

use std::time::Duration;

use genreg::liveness::ManualClock;
use genreg::{Error, HealthState, Registry};

const T: Duration = Duration::from_secs(1);

fn registry(clock: &ManualClock) -> Registry<u32> {
    Registry::builder()
        .hash_seed(0x5eed_0012)
        .clock(clock.clone())
        .build()
}

/// Sets up a binding whose deadline is 10 s, at 5 s: a keepalive now renews it to 15 s.
fn at_five(clock: &ManualClock) -> (Registry<u32>, genreg::Tag) {
    let reg = registry(clock);
    let tag = reg.with_ttl(10 * T).register_detached("a", 1).unwrap();
    clock.advance(5 * T);
    (reg, tag)
}

/// Checks a keepalive's outcome against the binding's fate, the clock being at 10 s: a
/// binding renewed before its deadline is never removed as expired, and one that expired is
/// never revived.
fn judge(reg: &Registry<u32>, tag: genreg::Tag, kept: Result<Option<Duration>, Error>) {
    match kept {
        Ok(Some(deadline)) => {
            assert_eq!(deadline, 15 * T);
            assert!(reg.is_current("a", tag), "renewed in time, then removed");
        }
        // Expired; or already removed (by a burier, or by a migration of the table, which drops
        // a buried binding instead of copying it), and maybe the name taken since.
        Err(Error::Expired { .. } | Error::NotFound { .. } | Error::TagMismatch { .. }) => {
            assert!(!reg.is_current("a", tag), "expired, then revived");
        }
        other => panic!("unexpected keepalive outcome: {other:?}"),
    }
}

/// A keepalive races the clock reaching the deadline and a purge (which buries, then
/// removes): exactly one of the keepalive and the burial wins the deadline word.
#[test]
fn keepalive_races_expiry() {
    check("keepalive_races_expiry", 3, || {
        let clock = ManualClock::new();
        let (reg, tag) = at_five(&clock);
        let (r2, c2) = (reg.clone(), clock.clone());
        let burier = loom::thread::spawn(move || {
            c2.advance(5 * T);
            r2.purge_dead()
        });
        let kept = reg.keepalive("a", tag);
        let purged = burier.join().unwrap();
        if kept.is_ok() {
            assert_eq!(purged, 0, "renewed in time, yet purged");
        }
        judge(&reg, tag, kept);
    });
}

/// The same race with a registration of the same name as the burier (a writer that meets an
/// expired binding buries it and takes the name): the name is taken exactly when the
/// keepalive failed.
#[test]
fn keepalive_races_a_registration_at_the_deadline() {
    check("keepalive_races_a_registration_at_the_deadline", 3, || {
        let clock = ManualClock::new();
        let (reg, tag) = at_five(&clock);
        let (r2, c2) = (reg.clone(), clock.clone());
        let writer = loom::thread::spawn(move || {
            c2.advance(5 * T);
            r2.register_detached("a", 2).is_ok()
        });
        let kept = reg.keepalive("a", tag);
        let took = writer.join().unwrap();
        assert_eq!(took, kept.is_err(), "{kept:?}, name taken: {took}");
        judge(&reg, tag, kept);
    });
}

/// A registration with a deadline races a reaper attaching (its walk of the table): either the
/// walk sees the binding or the registration tells the reaper, so the reaper removes it when
/// it expires.
#[test]
fn reaper_attach_races_registration() {
    check("reaper_attach_races_registration", 3, || {
        let clock = ManualClock::new();
        let reg = registry(&clock);
        let r2 = reg.clone();
        let registrar = loom::thread::spawn(move || {
            r2.with_ttl(T).register_detached("a", 1).unwrap();
        });
        let mut reaper = reg.reaper();
        registrar.join().unwrap();
        clock.advance(T);
        // Removed by this pass (or by a migration of the table it helped, which drops dead
        // bindings too): either way the count of bindings is exact again, and zero.
        let removed = reaper.reap();
        assert!(removed <= 1);
        assert_eq!(reg.len(), 0, "the reaper never learned of the binding");
    });
}

/// A health record of "passing" races the reaper condemning a binding critical for the limit:
/// a binding recorded healthy in time is never removed as critical, and a condemned one
/// accepts no record.
#[test]
fn health_record_races_condemnation() {
    check("health_record_races_condemnation", 3, || {
        let clock = ManualClock::new();
        let reg: Registry<u32> = Registry::builder()
            .hash_seed(0x5eed_0013)
            .clock(clock.clone())
            .remove_critical_after(10 * T)
            .build();
        let tag = reg.register_detached("a", 1).unwrap();
        reg.set_health("a", tag, HealthState::Critical).unwrap();
        let mut reaper = reg.reaper();
        clock.advance(10 * T);
        let r2 = reg.clone();
        let reaping = loom::thread::spawn(move || reaper.reap());
        let healed = r2.set_health("a", tag, HealthState::Passing);
        let removed = reaping.join().unwrap();
        match healed {
            Ok(()) => {
                assert_eq!(removed, 0, "recorded healthy, then removed as critical");
                assert!(reg.is_current("a", tag));
            }
            Err(Error::NotFound { .. }) => {
                // Removed once: by the reaper, or by the record that found it condemned.
                assert!(removed <= 1);
                assert!(!reg.is_current("a", tag));
                assert_eq!(reg.len(), 0);
            }
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    });
}
