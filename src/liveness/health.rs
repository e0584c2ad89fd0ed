//! Health states and reports.

use std::fmt;
use std::time::Duration;

use crate::tag::Tag;

/// The health of an entry (Consul's check states).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum HealthState {
    /// Never checked (every entry starts here).
    #[default]
    Unknown = 0,
    /// The last check passed.
    Passing = 1,
    /// The last check passed with a warning (still healthy).
    Warning = 2,
    /// The last check failed, timed out or panicked.
    Critical = 3,
}

impl HealthState {
    /// Whether queries that ask for healthy entries ([`Query::healthy`](crate::Query::healthy))
    /// keep an entry in this state: passing or warning.
    pub fn is_healthy(self) -> bool {
        matches!(self, HealthState::Passing | HealthState::Warning)
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Unknown => "unknown",
            HealthState::Passing => "passing",
            HealthState::Warning => "warning",
            HealthState::Critical => "critical",
        })
    }
}

/// The outcome of one health check, as MARSYS's `HealthMonitor` records it: healthy or not,
/// how long the probe took, its error, and when it was checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HealthReport {
    /// The state the check found.
    pub state: HealthState,
    /// When the check was recorded, on the registry's clock
    /// ([`Builder::clock`](crate::Builder::clock)). Set by the registry when it records the
    /// report.
    pub checked_at: Duration,
    /// How long the probe took (`None` if it did not finish).
    pub latency: Option<Duration>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl HealthReport {
    /// A report of `state`, with no latency and no error.
    pub fn new(state: HealthState) -> HealthReport {
        HealthReport {
            state,
            checked_at: Duration::ZERO,
            latency: None,
            error: None,
        }
    }

    /// With the probe's latency.
    pub fn with_latency(mut self, latency: Duration) -> HealthReport {
        self.latency = Some(latency);
        self
    }

    /// With an error.
    pub fn with_error(mut self, error: impl Into<String>) -> HealthReport {
        self.error = Some(error.into());
        self
    }
}

/// An entry's health: [`Registry::health`](crate::Registry::health).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HealthStatus {
    /// The binding it describes.
    pub tag: Tag,
    /// The current state.
    pub state: HealthState,
    /// When the entry entered this state, on the registry's clock (`None` while it was never
    /// checked).
    pub since: Option<Duration>,
    /// The last report recorded by [`Registry::record_health`](crate::Registry::record_health)
    /// (or a health check), if any.
    pub last_check: Option<HealthReport>,
}
