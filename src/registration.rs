//! [`Registration`]: the guard that owns a binding.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Rejected};
use crate::name::Name;
use crate::raw::live::Live;
use crate::raw::{Write, Written};
use crate::registry::{Entry, Registry};
use crate::tag::{InstanceId, Tag};
use crate::watch::Reason;

/// Owns one binding: dropping it unbinds the name **only if the binding is still this one**
/// (an `unregister_if_same` with its own tag). So the destructor race that MARSYS patched by
/// hand (an old agent's late destructor removing a newer agent of the same name) cannot happen.
///
/// `'static` and `Send`: keep it in the agent it registers, and the binding lives exactly as
/// long as the agent.
#[must_use = "dropping the guard unregisters the name at once; call `detach()` to keep it"]
pub struct Registration<V> {
    registry: Registry<V>,
    name: Name,
    tag: Tag,
    armed: bool,
    /// The binding's liveness cell, if it has one (a TTL): so that the owner can learn that its
    /// binding expired after it is gone from the table.
    pub(crate) live: Option<Arc<Live>>,
}

/// The result of [`Registry::ensure_registered`].
pub enum Ensured<V> {
    /// The name was free and is now bound; the guard owns the binding.
    Registered(Registration<V>),
    /// The name was already bound to the same instance; nothing changed and no second owner
    /// was created.
    Existing {
        /// The tag of the existing binding.
        tag: Tag,
        /// The value that was not stored, handed back (as every refusal hands it back).
        value: V,
    },
}

impl<V> Ensured<V> {
    /// The outcome of an idempotent registration of `instance`, from a plain one: a refusal
    /// because the name is already `instance`'s is `Existing`.
    pub(crate) fn from_registration(
        registered: Result<Registration<V>, Rejected<V>>,
        instance: InstanceId,
    ) -> Result<Ensured<V>, Rejected<V>> {
        match registered {
            Ok(reg) => Ok(Ensured::Registered(reg)),
            Err(rejected) => match *rejected.error() {
                Error::AlreadyRegistered { current, .. } if current.instance() == instance => {
                    Ok(Ensured::Existing {
                        tag: current,
                        value: rejected.into_value(),
                    })
                }
                _ => Err(rejected),
            },
        }
    }

    /// The tag of the binding, new or existing.
    pub fn tag(&self) -> Tag {
        match self {
            Ensured::Registered(r) => r.tag(),
            Ensured::Existing { tag, .. } => *tag,
        }
    }
}

impl<V> Registration<V> {
    pub(crate) fn new(registry: Registry<V>, name: &str, tag: Tag) -> Self {
        Registration {
            registry,
            name: name.into(),
            tag,
            armed: true,
            live: None,
        }
    }

    /// With the binding's liveness cell.
    pub(crate) fn with_live(mut self, live: Option<Arc<Live>>) -> Self {
        self.live = live;
        self
    }

    /// The name this guard bound.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The tag of the binding this guard owns.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The registry.
    pub fn registry(&self) -> &Registry<V> {
        &self.registry
    }

    /// Keeps the binding past the guard's life and hands back its tag (for a later
    /// [`Registry::unregister_if_same`]).
    pub fn detach(mut self) -> Tag {
        self.armed = false;
        self.tag
    }

    /// Whether the name is still bound to this guard's binding.
    pub fn is_current(&self) -> bool {
        let inner = &self.registry.inner;
        let (guard, _local) = inner.pin();
        let hash = inner.map.hash(self.name.as_str());
        inner
            .map
            .get(hash, self.name.as_str(), &guard)
            .is_some_and(|n| n.tag == self.tag && n.is_visible())
    }

    /// Removes the binding if it is still this one (what `drop` does, with the outcome).
    fn remove_own(&self) -> bool {
        let inner = &self.registry.inner;
        let (guard, _local) = inner.pin();
        let hash = inner.map.hash(self.name.as_str());
        let tag = self.tag;
        matches!(
            inner.map.write_if(
                hash,
                self.name.as_str(),
                // A dead binding is buried first: its removal is a purge, for its own reason.
                |n| n
                    .tag
                    .matches(tag)
                    .then(|| Write::Remove(n.bury().unwrap_or(Reason::GuardDropped))),
                &guard
            ),
            Written::Done(_)
        )
    }
}

impl<V: Send + Sync + 'static> Registration<V> {
    /// Unbinds now, reporting what happened: [`Error::TagMismatch`] or [`Error::NotFound`] if
    /// the binding was already replaced or removed by someone else (then nothing is changed).
    pub fn unregister(mut self) -> Result<Tag, Error> {
        self.armed = false;
        self.registry
            .pin()
            .unregister_if_same(self.name.as_str(), self.tag)
            .map(|e| e.tag())
    }

    /// Replaces the value of the binding this guard owns (a new generation), keeping the guard
    /// current. Refused, with the value handed back, if the binding is no longer this guard's.
    pub fn replace(&mut self, value: V) -> Result<Tag, Rejected<V>> {
        let tag = self
            .registry
            .replace_if_same(self.name.as_str(), self.tag, value)?;
        self.tag = tag;
        if self.live.is_some() {
            // The replacement has a liveness cell of its own (a copy): follow it, so that
            // `expired` and `time_left` speak of the binding this guard now owns.
            let inner = &self.registry.inner;
            let (guard, _local) = inner.pin();
            let hash = inner.map.hash(self.name.as_str());
            self.live = inner
                .map
                .get(hash, self.name.as_str(), &guard)
                .filter(|n| n.tag == tag)
                .and_then(|n| n.live().cloned());
        }
        Ok(tag)
    }
}

impl<V: Clone + Send + Sync + 'static> Registration<V> {
    /// The current value, if the binding is still this guard's.
    pub fn get(&self) -> Option<Entry<V>> {
        self.registry
            .get(self.name.as_str())
            .filter(|e| e.tag() == self.tag)
    }
}

impl<V> Drop for Registration<V> {
    fn drop(&mut self) {
        if self.armed {
            self.remove_own();
        }
    }
}

impl<V> fmt::Debug for Registration<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("armed", &self.armed)
            .finish()
    }
}

impl<V> fmt::Debug for Ensured<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ensured::Registered(r) => f.debug_tuple("Registered").field(r).finish(),
            Ensured::Existing { tag, .. } => f
                .debug_struct("Existing")
                .field("tag", tag)
                .finish_non_exhaustive(),
        }
    }
}
