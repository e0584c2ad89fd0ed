//! [`HealthCheck`]: runs a probe over many entries at once, each under a timeout, and records
//! what it finds (the `tokio` feature).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::{HealthReport, HealthState};
use crate::registry::Registry;
use crate::tag::Tag;

/// Runs a health probe over many entries concurrently, each under a timeout, and records each
/// outcome with [`Registry::record_health`] (MARSYS's `HealthMonitor`, without its loop by
/// name): a probe that returns `Ok` is [`Passing`](HealthState::Passing); one that returns an
/// error, times out or panics is [`Critical`](HealthState::Critical), with the error, and the
/// latency of those that finished.
///
/// Each probe runs as a tokio task (so it needs a tokio runtime): a probe that panics is
/// contained (its entry is marked critical, "probe panicked", and nothing else is disturbed),
/// and one that hangs is cancelled at its timeout. (A probe that blocks its thread instead of
/// awaiting cannot be cancelled by any async runtime: it holds a worker until it returns.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use genreg::{HealthState, Registry, liveness::HealthCheck};
///
/// let registry: Registry<u32> = Registry::new();
/// let _a = registry.register("agent-a", 1).unwrap();
/// let _b = registry.register("agent-b", 2).unwrap();
/// let outcomes = HealthCheck::new(Duration::from_secs(1))
///     .run_all(&registry, |_name, value| async move {
///         if value == 1 { Ok(()) } else { Err("not ready") }
///     })
///     .await;
/// assert_eq!(outcomes.len(), 2);
/// assert_eq!(registry.health("agent-a").unwrap().state, HealthState::Passing);
/// assert_eq!(registry.health("agent-b").unwrap().state, HealthState::Critical);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HealthCheck {
    timeout: Duration,
    concurrency: usize,
}

/// What a probe task returns: finished (`Ok`, with the probe's own result), or timed out.
type Probed = Result<Result<(), String>, ()>;

/// The outcome of one entry's check: [`HealthCheck::run`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// The entry's name.
    pub name: String,
    /// The binding that was checked.
    pub tag: Tag,
    /// What the check found (`checked_at` as recorded).
    pub report: HealthReport,
    /// Whether the report was recorded: false if the binding was removed or replaced while
    /// its probe ran.
    pub recorded: bool,
}

impl HealthCheck {
    /// Probes with this timeout each, 64 at a time.
    pub fn new(timeout: Duration) -> HealthCheck {
        HealthCheck {
            timeout,
            concurrency: 64,
        }
    }

    /// How many probes run at once (at least one).
    pub fn concurrency(mut self, n: usize) -> HealthCheck {
        self.concurrency = n.max(1);
        self
    }

    /// Checks every current entry (see [`run`](Self::run)).
    pub async fn run_all<V, P, F, E>(&self, registry: &Registry<V>, probe: P) -> Vec<CheckOutcome>
    where
        V: Clone + Send + Sync + 'static,
        P: Fn(String, V) -> F,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        let targets = registry
            .entries()
            .into_iter()
            .map(|(name, e)| (name, e.tag()));
        self.run(registry, targets, probe).await
    }

    /// Checks the bindings `targets` names (`(name, tag)`, as [`Registry::entries`] or a
    /// query gives them), each with `probe(name, value)` under the timeout, and records each
    /// outcome (tag-checked). Returns the outcomes in the order the probes finished; a target
    /// that is not current when its turn comes is skipped.
    pub async fn run<V, P, F, E>(
        &self,
        registry: &Registry<V>,
        targets: impl IntoIterator<Item = (String, Tag)>,
        probe: P,
    ) -> Vec<CheckOutcome>
    where
        V: Clone + Send + Sync + 'static,
        P: Fn(String, V) -> F,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        let mut targets = targets.into_iter();
        let mut running: JoinSet<(Duration, Probed)> = JoinSet::new();
        let mut by_task = HashMap::new();
        let mut outcomes = Vec::new();
        loop {
            while running.len() < self.concurrency {
                let Some((name, tag)) = targets.next() else {
                    break;
                };
                let Some(value) = registry.get_if(&name, tag) else {
                    continue;
                };
                // A probe that panics before it returns its future is contained too.
                let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    probe(name.clone(), value)
                }));
                let Ok(probe) = made else {
                    let report =
                        HealthReport::new(HealthState::Critical).with_error("probe panicked");
                    let recorded = registry.record_health(&name, tag, report.clone()).is_ok();
                    outcomes.push(CheckOutcome {
                        name,
                        tag,
                        report,
                        recorded,
                    });
                    continue;
                };
                let timeout = self.timeout;
                let task = running.spawn(async move {
                    let start = Instant::now();
                    let outcome = match tokio::time::timeout(timeout, probe).await {
                        Ok(Ok(())) => Ok(Ok(())),
                        Ok(Err(e)) => Ok(Err(e.to_string())),
                        Err(_) => Err(()),
                    };
                    (start.elapsed(), outcome)
                });
                by_task.insert(task.id(), (name, tag));
            }
            let Some(done) = running.join_next_with_id().await else {
                break;
            };
            let (id, report) = match done {
                Ok((id, (latency, Ok(Ok(()))))) => (
                    id,
                    HealthReport::new(HealthState::Passing).with_latency(latency),
                ),
                Ok((id, (latency, Ok(Err(error))))) => (
                    id,
                    HealthReport::new(HealthState::Critical)
                        .with_latency(latency)
                        .with_error(error),
                ),
                Ok((id, (_, Err(())))) => (
                    id,
                    HealthReport::new(HealthState::Critical)
                        .with_error(format!("probe timed out after {:?}", self.timeout)),
                ),
                Err(e) => {
                    let error = if e.is_panic() {
                        "probe panicked"
                    } else {
                        "probe cancelled"
                    };
                    (
                        e.id(),
                        HealthReport::new(HealthState::Critical).with_error(error),
                    )
                }
            };
            let Some((name, tag)) = by_task.remove(&id) else {
                continue;
            };
            let recorded = registry.record_health(&name, tag, report.clone()).is_ok();
            let report = registry
                .health(&name)
                .filter(|h| h.tag == tag)
                .and_then(|h| h.last_check)
                .filter(|_| recorded)
                .unwrap_or(report);
            outcomes.push(CheckOutcome {
                name,
                tag,
                report,
                recorded,
            });
        }
        outcomes
    }
}
