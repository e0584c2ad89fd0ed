//! When removed values are dropped, on crossbeam-epoch's global collector: the one every
//! `Registry::new()` uses, and the one where a value could sit in the removing thread's private
//! garbage bag. A file of its own, so that no other test pins the global collector while it
//! runs (each integration test file is its own process).

use std::sync::mpsc;
use std::thread;

use genreg::Registry;

/// Issue 8, bug 5: a value removed by one thread, which then stays alive and idle, is dropped
/// by `collect()` called from another thread. Before the fix the value sat in the removing
/// thread's local garbage bag, out of reach of every other thread's collection, for as long as
/// that thread lived: an agent whose inbox `Sender` was in its entry never saw its inbox close.
#[test]
#[cfg_attr(miri, ignore)] // the global collector leaks at exit under Miri
fn collect_from_another_thread_drops_a_removed_value() {
    let registry: Registry<mpsc::Sender<u32>> = Registry::new();
    let (tx, rx) = mpsc::channel::<u32>();
    let (removed_tx, removed_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let agent = {
        let registry = registry.clone();
        thread::spawn(move || {
            let guard = registry.register("agent", tx).unwrap();
            guard
                .registry()
                .get("agent")
                .unwrap()
                .value()
                .send(1)
                .unwrap();
            drop(guard); // removes the binding: the Sender is garbage now
            removed_tx.send(()).unwrap();
            done_rx.recv().unwrap(); // alive and idle (not pinned) until checked
        })
    };
    removed_rx.recv().unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    assert!(
        registry.collect(),
        "nothing is pinned: everything handed over is dropped"
    );
    assert_eq!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected),
        "collect() from another thread dropped the removed Sender"
    );
    done_tx.send(()).unwrap();
    agent.join().unwrap();
}
