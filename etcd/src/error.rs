//! Typed errors: the core's vocabulary (a refusal names the binding there now), plus what a
//! network and a lease add.

use std::fmt;

use genreg::{InvalidNameReason, Tag};

/// Why an operation on an [`EtcdRegistry`](crate::EtcdRegistry) did not do what it asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The name is bound already; `current` is that binding's tag.
    AlreadyRegistered {
        /// The name.
        name: String,
        /// The tag of the binding that holds it.
        current: Tag,
    },
    /// Nothing is bound to the name.
    NotFound {
        /// The name.
        name: String,
    },
    /// The name is bound, but not with the tag the caller holds: nothing was changed.
    TagMismatch {
        /// The name.
        name: String,
        /// The tag the caller presented.
        expected: Tag,
        /// The tag of the binding there now.
        current: Tag,
    },
    /// The name breaks the core's rules (non-empty UTF-8, at most 255 bytes, no control
    /// characters): the mirror must be able to hold every name.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: InvalidNameReason,
    },
    /// The registry's lease is gone (expired, or revoked by [`close`]): every binding it held
    /// is gone with it, and the registry makes no more registrations. Connect again.
    ///
    /// [`close`]: crate::EtcdRegistry::close
    LeaseLost {
        /// The lease's id.
        lease: i64,
    },
    /// A value could not be encoded, or a stored record decoded, by the codec.
    Codec {
        /// The name whose value it was.
        name: String,
        /// The codec's message.
        message: String,
    },
    /// A watch asked for revisions etcd has compacted away. Start again from a listing (the
    /// mirror does so by itself).
    Compacted {
        /// The first revision asked for.
        requested: i64,
        /// etcd's compaction revision: revisions from here on are still there.
        compacted: i64,
    },
    /// An option refused at [`connect`](crate::EtcdRegistry::connect).
    InvalidOption {
        /// Which option, and why.
        what: String,
    },
    /// etcd could not be reached, or kept failing ambiguously, for the whole retry budget.
    /// Whether the last attempt took effect is unknown. Retrying the same call is safe (it
    /// never touches a newer binding), but its answer then says what it finds: a
    /// `register_as` with the same instance finds its own binding and succeeds; a removal or
    /// replacement whose first attempt took effect is refused ([`Error::NotFound`],
    /// [`Error::TagMismatch`] naming the new version). Read the name to settle it.
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// etcd refused the request for a reason retrying cannot fix.
    Etcd(etcd_client::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyRegistered { name, current } => {
                write!(f, "name {name:?} is already bound (tag {current})")
            }
            Error::NotFound { name } => write!(f, "nothing is bound to {name:?}"),
            Error::TagMismatch {
                name,
                expected,
                current,
            } => write!(
                f,
                "name {name:?} is bound as {current}, not as {expected}: nothing was changed"
            ),
            Error::InvalidName { name, reason } => write!(f, "invalid name {name:?}: {reason}"),
            Error::LeaseLost { lease } => write!(
                f,
                "the registry's lease {lease:x} is gone, and every binding it held with it"
            ),
            Error::Codec { name, message } => write!(f, "the value of {name:?}: {message}"),
            Error::Compacted {
                requested,
                compacted,
            } => write!(
                f,
                "revision {requested} is compacted (etcd keeps revisions from {compacted} on)"
            ),
            Error::InvalidOption { what } => write!(f, "invalid option: {what}"),
            Error::Unavailable { attempts, last } => write!(
                f,
                "etcd unavailable after {attempts} attempts (last: {last}); the outcome of the \
                 last attempt is unknown and retrying is safe"
            ),
            Error::Etcd(e) => write!(f, "etcd: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Etcd(e) => Some(e),
            _ => None,
        }
    }
}

/// A refused registration or replacement: the error, and the value given back.
#[derive(Debug)]
pub struct Rejected<V> {
    /// Why.
    pub error: Error,
    /// The value that was not stored.
    pub value: V,
}

impl<V> Rejected<V> {
    /// The value that was not stored.
    pub fn into_value(self) -> V {
        self.value
    }
}

impl<V> fmt::Display for Rejected<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<V: fmt::Debug> std::error::Error for Rejected<V> {}

impl<V> From<Rejected<V>> for Error {
    fn from(r: Rejected<V>) -> Error {
        r.error
    }
}
