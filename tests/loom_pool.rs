//! loom models of pools (the crate's `pool/core.rs` and `pool/wait.rs`): acquirers race for a
//! member's slots by CAS on its busy bits, so a member never has more leases than
//! `max_in_flight`; a release and a waiter meet through a Dekker pair (the waiter counts itself
//! and listens, then looks again; the releaser frees, then reads the waiters), so no wake-up is
//! lost; a waiter cancelled while a wake reaches it passes the wake on.
//!
//! Waiters are real `Acquire` futures, polled by a `block_on` on loom's park and unpark: a lost wake-up leaves
//! a thread parked forever, which loom reports as a deadlock.
//!
//! Run with the other models (`ci/loom.sh`):
//! ```sh
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!   cargo test --release --test loom_pool --target-dir target/loom -- --nocapture
//! ```
//! The planted `lease_unchecked` (an acquire that checks a slot is free, then takes it without
//! a CAS) fails the first model: two leases on a member that allows one.
#![cfg(loom)]

#[path = "support/loom_check.rs"]
mod loom_check;
use loom_check::check;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};

use genreg::pool::Pool;
use genreg::{Error, PoolOptions, Registry};

/// Polls `f` on this loom thread until it is ready, parking between polls; its waker unparks
/// the thread. A wake that never comes leaves the thread parked: loom reports a deadlock.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(loom::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Unpark(loom::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        loom::thread::park();
    }
}

fn pool(members: usize, max_in_flight: usize) -> (Registry<u32>, Pool<u32>) {
    let reg = Registry::builder().hash_seed(0x5eed_0011).build();
    let pool = reg
        .register_pool_with(
            "p",
            (0..members as u32).collect::<Vec<_>>(),
            PoolOptions::new().max_in_flight(max_in_flight),
        )
        .unwrap()
        .detach();
    (reg, pool)
}

/// Counts the leases of one member held at once, and fails if they ever exceed `max`.
struct Holders {
    now: AtomicUsize,
    max: usize,
}

impl Holders {
    fn enter(&self) {
        let before = self.now.fetch_add(1, Ordering::SeqCst);
        assert!(
            before < self.max,
            "more than max_in_flight leases on a member"
        );
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Three threads race for one member that allows two leases, while one of its two slots is
/// held and released by the main thread: never more than two leases at once, and at the end
/// everything is free.
#[test]
fn acquirers_race_for_the_last_slot() {
    check("acquirers_race_for_the_last_slot", 3, || {
        let (_reg, pool) = pool(1, 2);
        let holders = Arc::new(Holders {
            now: AtomicUsize::new(0),
            max: 2,
        });
        let held = pool.acquire().unwrap();
        holders.enter();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (pool, holders) = (pool.clone(), Arc::clone(&holders));
                loom::thread::spawn(move || match pool.acquire() {
                    Ok(lease) => {
                        holders.enter();
                        holders.leave();
                        drop(lease);
                        true
                    }
                    Err(Error::Exhausted { .. }) => false,
                    Err(e) => panic!("unexpected: {e:?}"),
                })
            })
            .collect();
        holders.leave();
        drop(held);
        let won: usize = racers
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert!(won >= 1, "a free slot was refused to both");
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.available(), 1);
        let s = pool.stats();
        assert_eq!(s.allocations, s.releases);
    });
}

/// A release races an async waiter's registration: the waiter always gets the slot (a lost
/// wake-up would leave it parked forever: a deadlock to loom).
#[test]
fn release_races_an_async_waiters_registration() {
    check("release_races_an_async_waiters_registration", 3, || {
        let (_reg, pool) = pool(1, 1);
        let held = pool.acquire().unwrap();
        let p = pool.clone();
        let waiter = loom::thread::spawn(move || block_on(p.acquire_async()).map(|l| *l));
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(0));
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.stats().waiting, 0);
    });
}

/// A waiter is cancelled (its future dropped after one poll) while the release's wake may be
/// on its way to it: a second waiter still gets the slot (the wake passes on).
#[test]
fn a_waiter_cancelled_while_woken_passes_the_wake_on() {
    check(
        "a_waiter_cancelled_while_woken_passes_the_wake_on",
        2,
        || {
            let (_reg, pool) = pool(1, 1);
            let held = pool.acquire().unwrap();
            let p = pool.clone();
            let cancelled = loom::thread::spawn(move || {
                let mut first = pin!(p.acquire_async());
                let mut cx = Context::from_waker(Waker::noop());
                // One poll: either it waits (then is dropped, cancelled) or it got the slot (then
                // releases it at once).
                let _ = first.as_mut().poll(&mut cx);
            });
            let p = pool.clone();
            let second = loom::thread::spawn(move || block_on(p.acquire_async()).map(|l| *l));
            drop(held);
            cancelled.join().unwrap();
            assert_eq!(second.join().unwrap(), Ok(0));
            assert_eq!(pool.in_use(), 0);
            assert_eq!(pool.stats().waiting, 0);
        },
    );
}
