//! Time, as the registry reads it: a [`Clock`] the tests can drive.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Ordering};

/// Where a registry reads the time for deadlines (TTL) and health records.
///
/// `now()` is the time elapsed since an origin of the clock's choosing, and must never
/// decrease. The registry keeps time in nanoseconds since that origin, as a `u64` (584 years).
///
/// The default is [`SystemClock`] (monotonic, `std::time::Instant`). Tests use [`ManualClock`],
/// which moves only when told to, so that no test sleeps to wait for an expiry.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The time since the clock's origin. Never decreases.
    fn now(&self) -> Duration;
}

/// The monotonic system clock (`std::time::Instant`), with its origin when it was made.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to: for tests, and for simulations.
///
/// Clones share one time. Starts at zero.
///
/// ```
/// use std::time::Duration;
/// use genreg::liveness::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> ManualClock {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `by` (saturating at the end of its range).
    pub fn advance(&self, by: Duration) {
        let by = nanos(by);
        // Release: a thread that reads the new time also sees what was done before the move
        // (the tests advance the clock, then expect the registry to see the expiry).
        let _ = self
            .nanos
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `to`, if that is not before its current time (it never goes back).
    pub fn set(&self, to: Duration) {
        self.nanos.fetch_max(nanos(to), Ordering::Release);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A registry's clock, shared by its liveness cells.
pub(crate) type SharedClock = Arc<dyn Clock>;

/// The time on `clock` in nanoseconds.
#[inline]
pub(crate) fn now(clock: &dyn Clock) -> u64 {
    nanos(clock.now())
}
