//! MARSYS's `save_state` / `load_state`, with genreg: a registry saved to JSON and restored
//! after a "restart", its tags intact.
//!
//! ```sh
//! cargo run --release -p genreg-demo --example persistence --features json
//! ```
//!
//! MARSYS saves what it needs to rebuild an agent (its type and configuration), not the
//! agent. So does this: `Snapshot::map_values` turns each agent into a descriptor, serde
//! writes the snapshot (names, tags, descriptors, the revision and every counter) as JSON;
//! loading reads it back, rebuilds agents from the descriptors and `restore`s them into an
//! empty registry. Every counter moves past the snapshot's, so a tag kept from before the
//! restart matches its own restored binding or nothing, never a newer one.

use std::sync::Arc;

use genreg::{Error, Registry, RestoreError, Snapshot, Tag};

/// A running agent (what the registry holds).
#[derive(Debug)]
struct Agent {
    kind: String,
    model: String,
}

/// What is saved of an agent: (kind, model).
type Descriptor = (String, String);

fn save_state(registry: &Registry<Arc<Agent>>) -> String {
    let snapshot = registry
        .snapshot()
        .expect("the registry keeps an event log and nothing is pinned here")
        .map_values(|_, agent| (agent.kind.clone(), agent.model.clone()));
    serde_json::to_string_pretty(&snapshot).expect("a snapshot serialises")
}

fn load_state(registry: &Registry<Arc<Agent>>, json: &str) -> Result<usize, String> {
    let snapshot: Snapshot<Descriptor> =
        serde_json::from_str(json).map_err(|e| format!("corrupt state: {e}"))?;
    let agents = snapshot.map_values(|_, (kind, model)| Arc::new(Agent { kind, model }));
    registry
        .restore(agents)
        .map_err(|e: RestoreError| e.to_string())
}

fn new_registry() -> Registry<Arc<Agent>> {
    Registry::builder().events(1024).build()
}

fn main() {
    // Before the restart.
    let before = new_registry();
    let agent = |kind: &str, model: &str| {
        Arc::new(Agent {
            kind: kind.into(),
            model: model.into(),
        })
    };
    let planner = before
        .register_detached("planner", agent("planner", "m-large"))
        .unwrap();
    before
        .register_auto("worker", agent("worker", "m-small"))
        .unwrap()
        .detach();
    // A hot reload: the old tag is stale from now on.
    let reloaded = before
        .replace_if_same("planner", planner, agent("planner", "m-xl"))
        .unwrap();
    let json = save_state(&before);
    println!("saved state:\n{json}");

    // After the restart: a fresh registry, the state loaded back.
    let after = new_registry();
    let n = load_state(&after, &json).expect("a valid state");
    println!("restored {n} bindings: {:?}", after.names());
    assert_eq!(after.tag_of("planner"), Some(reloaded));
    assert_eq!(after.get("planner").unwrap().model, "m-xl");

    // The stale tag from before the reload (and the restart) matches nothing.
    let stale: Tag = planner;
    match after.unregister_if_same("planner", stale) {
        Err(Error::TagMismatch { current, .. }) => assert_eq!(current, reloaded),
        other => panic!("a stale tag must be refused, got {other:?}"),
    }
    // Auto names go on where they stopped; generations move past the snapshot's.
    let next = after
        .register_auto("worker", agent("worker", "m-small"))
        .unwrap();
    assert_eq!(next.name(), "worker-2");
    assert!(next.tag().generation() > reloaded.generation());
    println!(
        "after the restart: {} registered as {}",
        next.name(),
        next.tag()
    );

    // Refusals are typed: a non-empty registry, corrupt or truncated input.
    println!(
        "load into a non-empty registry: {}",
        load_state(&after, &json).unwrap_err()
    );
    println!(
        "truncated input: {}",
        load_state(&new_registry(), &json[..json.len() / 2]).unwrap_err()
    );
}
