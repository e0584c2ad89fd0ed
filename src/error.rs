//! Typed errors. Every refusal names the name and, where there is one, the tag it found.

use std::fmt;

use crate::discovery::ReservedNames;
use crate::name::{InvalidNameReason, Name, for_display};
use crate::tag::Tag;

/// Why an operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The name is bound already; `current` is the binding's tag. If
    /// `current.instance()` is the instance you tried to register, the binding is your own
    /// (see [`Registry::ensure_registered`](crate::Registry::ensure_registered)).
    AlreadyRegistered {
        /// The name.
        name: Name,
        /// The tag of the binding that holds it.
        current: Tag,
    },
    /// Nothing is bound to the name (a weak binding whose owner died counts as nothing).
    NotFound {
        /// The name.
        name: Name,
    },
    /// The name is bound, but not with the tag the caller holds: the binding it meant was
    /// removed or replaced, and `current` is the one there now. Nothing was changed.
    TagMismatch {
        /// The name.
        name: Name,
        /// The tag the caller presented.
        expected: Tag,
        /// The tag of the binding there now.
        current: Tag,
    },
    /// The name is one of the registry's reserved names
    /// ([`Builder::reserved_names`](crate::Builder::reserved_names)), compared
    /// case-insensitively.
    Reserved {
        /// The name as given.
        name: Name,
        /// Every reserved name (lower case).
        reserved: ReservedNames,
    },
    /// The registry holds its bound of live bindings
    /// ([`Builder::max_entries`](crate::Builder::max_entries)); nothing was changed.
    Full {
        /// The name that was not registered.
        name: Name,
        /// The bound.
        capacity: usize,
    },
    /// The binding's time to live passed without a keepalive: it is invisible and is (or is
    /// about to be) removed; a keepalive cannot revive it. Register again.
    Expired {
        /// The name.
        name: Name,
        /// The tag of the binding that expired.
        tag: Tag,
    },
    /// The name is a pool's: it is removed with
    /// [`Registry::unregister_pool`](crate::Registry::unregister_pool), never replaced, and has
    /// no value of its own.
    IsPool {
        /// The pool's name.
        name: Name,
    },
    /// The name is a pool's member: it goes only with its pool (remove the pool with
    /// [`Registry::unregister_pool`](crate::Registry::unregister_pool)), and is never replaced
    /// one by one.
    PoolMember {
        /// The member's name.
        name: Name,
        /// Its pool's name.
        pool: Name,
        /// Its index in the pool.
        index: usize,
    },
    /// A pool operation on a name bound to something else than a pool.
    NotAPool {
        /// The name.
        name: Name,
    },
    /// Every member of the pool was seen full: nothing was leased.
    Exhausted {
        /// The pool's name.
        pool: Name,
        /// Slots in all (members × `max_in_flight`; the members, for exclusive ones).
        total: usize,
        /// Leases out when it was refused.
        in_use: usize,
    },
    /// No lease came free before the timeout.
    Timeout {
        /// The pool's name.
        name: Name,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A pool that cannot be made as asked (no members, too many, `max_in_flight` out of
    /// range); nothing was bound.
    InvalidPool {
        /// The pool's name.
        name: Name,
        /// What is wrong.
        reason: &'static str,
    },
    /// The name breaks the rules of [`crate::name`](crate#names).
    InvalidName {
        /// The name as given (never truncated).
        name: Name,
        /// What is wrong with it.
        reason: InvalidNameReason,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyRegistered { name, current } => write!(
                f,
                "name {} is already registered (current binding {current})",
                for_display(name)
            ),
            Error::NotFound { name } => {
                write!(f, "name {} is not registered", for_display(name))
            }
            Error::TagMismatch {
                name,
                expected,
                current,
            } => write!(
                f,
                "name {} is bound to {current}, not to {expected}: the binding was replaced, \
                 so nothing was changed",
                for_display(name)
            ),
            Error::Reserved { name, reserved } => write!(
                f,
                "name {} is reserved (reserved names, in any case: {reserved})",
                for_display(name)
            ),
            Error::Full { name, capacity } => write!(
                f,
                "name {} was not registered: the registry is full (it holds its bound of \
                 {capacity} bindings)",
                for_display(name)
            ),
            Error::Expired { name, tag } => write!(
                f,
                "the binding {tag} of name {} expired: its time to live passed without a \
                 keepalive",
                for_display(name)
            ),
            Error::IsPool { name } => write!(
                f,
                "name {} is a pool: remove it with unregister_pool; it has no value of its own \
                 and is never replaced",
                for_display(name)
            ),
            Error::PoolMember { name, pool, index } => write!(
                f,
                "name {} is member {index} of pool {}: it goes only with its pool",
                for_display(name),
                for_display(pool)
            ),
            Error::NotAPool { name } => {
                write!(f, "name {} is not a pool", for_display(name))
            }
            Error::Exhausted {
                pool,
                total,
                in_use,
            } => write!(
                f,
                "pool {} is exhausted: {in_use} of its {total} slots are leased",
                for_display(pool)
            ),
            Error::Timeout { name, waited } => write!(
                f,
                "no lease of pool {} came free within {waited:?}",
                for_display(name)
            ),
            Error::InvalidPool { name, reason } => {
                write!(f, "pool {} not registered: {reason}", for_display(name))
            }
            Error::InvalidName { name, reason } => {
                write!(f, "invalid name {}: {reason}", for_display(name))
            }
        }
    }
}

impl std::error::Error for Error {}

/// A refused registration or replacement, with the value that was not stored handed back.
pub struct Rejected<V> {
    error: Error,
    value: V,
}

impl<V> Rejected<V> {
    pub(crate) fn new(error: Error, value: V) -> Self {
        Rejected { error, value }
    }

    /// Why it was refused.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The value that was not stored.
    pub fn into_value(self) -> V {
        self.value
    }

    /// Both parts.
    pub fn into_parts(self) -> (Error, V) {
        (self.error, self.value)
    }
}

impl<V> From<Rejected<V>> for Error {
    fn from(r: Rejected<V>) -> Error {
        r.error
    }
}

impl<V> fmt::Debug for Rejected<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<V> fmt::Display for Rejected<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// `Display` is the error's own message, so the error is not also given as the `source()`:
/// error reporters that print a chain (`{:#}` with anyhow, for one) would print it twice.
impl<V> std::error::Error for Rejected<V> {}
