//! Retries that are safe: every request this crate sends is built so that sending it again
//! after an ambiguous failure (a timeout after the request left, a leader change, a broken
//! connection) cannot do anything the first attempt would not have done; see each operation for
//! how a retry recognises its own earlier success.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use crate::Error;

/// How long one request may take, and how long a call keeps retrying.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) request: Duration,
    pub(crate) total: Duration,
}

/// What a failed attempt means.
enum Failure {
    /// Worth another attempt: the request may or may not have taken effect.
    Ambiguous(String),
    /// Retrying cannot help.
    Final(Error),
}

fn classify(e: etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => Failure::Ambiguous(e.to_string()),
        E::GRpcStatus(ref s) => {
            use tonic_code::*;
            let msg = s.message();
            if msg.contains("requested lease not found") {
                return Failure::Final(Error::Etcd(e));
            }
            match s.code() as i32 {
                UNAVAILABLE | DEADLINE_EXCEEDED | UNKNOWN | ABORTED | INTERNAL
                | RESOURCE_EXHAUSTED | CANCELLED => Failure::Ambiguous(e.to_string()),
                _ if msg.contains("leader changed") || msg.contains("no leader") => {
                    Failure::Ambiguous(e.to_string())
                }
                _ => Failure::Final(Error::Etcd(e)),
            }
        }
        other => Failure::Final(Error::Etcd(other)),
    }
}

/// gRPC status codes as numbers (tonic is etcd-client's dependency, not ours).
mod tonic_code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// Whether `e` says the lease is gone.
pub(crate) fn is_lease_not_found(e: &Error) -> bool {
    matches!(e, Error::Etcd(e) if lease_gone(e))
}

/// Whether etcd's answer says the lease is gone: an error status, or etcd-client's report of
/// a keepalive stream whose first answer had a TTL of 0.
pub(crate) fn lease_gone(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().contains("requested lease not found"),
        etcd_client::Error::LeaseKeepAliveError(m) => m == "lease not found",
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the budget runs out. Each attempt gets
/// `budget.request`; a timed-out attempt counts as ambiguous (it may have been applied).
pub(crate) async fn retrying<T, F, Fut>(budget: Budget, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + budget.total;
    let mut backoff = Duration::from_millis(25);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match timeout(budget.request, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => match classify(e) {
                Failure::Final(e) => return Err(e),
                Failure::Ambiguous(m) => m,
            },
            Err(_) => format!("no answer within {:?}", budget.request),
        };
        if Instant::now() + backoff >= deadline {
            return Err(Error::Unavailable { attempts, last });
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}
