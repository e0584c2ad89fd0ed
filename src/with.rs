//! [`RegisterWith`]: registering with metadata, a time to live, or both.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::discovery::Metadata;
use crate::error::Rejected;
use crate::liveness::clock::nanos;
use crate::pinned::strong_refused;
use crate::raw::live::Live;
use crate::raw::node::{Extra, Stored};
use crate::registration::{Ensured, Registration};
use crate::registry::Registry;
use crate::tag::{InstanceId, Tag};

/// Registers with options: [`Registry::with_metadata`], [`Registry::with_ttl`]. Every way of
/// registering is here, with the same contract as the registry's method of the same name; the
/// binding carries the metadata (discovery queries find it) and the time to live (see the
/// crate docs, "Liveness").
///
/// ```
/// use std::time::Duration;
/// use genreg::{Metadata, Registry};
///
/// let registry: Registry<&str> = Registry::new();
/// let meta = Metadata::builder().kind("worker").capability("sql").build().unwrap();
/// let guard = registry
///     .with_metadata(meta)
///     .ttl(Duration::from_secs(30))
///     .register("worker-1", "w1")
///     .unwrap();
/// assert!(guard.keepalive().is_ok());
/// ```
pub struct RegisterWith<'r, V> {
    registry: &'r Registry<V>,
    meta: Option<Arc<Metadata>>,
    ttl: Option<Duration>,
}

impl<V> fmt::Debug for RegisterWith<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterWith")
            .field("metadata", &self.meta)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<'r, V: Send + Sync + 'static> RegisterWith<'r, V> {
    /// With metadata (replacing any given before).
    pub fn metadata(mut self, metadata: impl Into<Arc<Metadata>>) -> Self {
        self.meta = Some(metadata.into());
        self
    }

    /// With a time to live: the binding expires `ttl` after it is registered unless a
    /// keepalive ([`Registration::keepalive`], [`Registry::keepalive`]) renews it, each
    /// renewal for `ttl` again. A `ttl` of zero is taken as one nanosecond; one past the
    /// clock's range (584 years) never comes.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// What the binding carries: the metadata, and a liveness cell whose deadline runs from
    /// now.
    fn extra(&self) -> Extra {
        let clock = Arc::clone(&self.registry.inner.clock);
        Extra {
            meta: self.meta.clone(),
            live: self
                .ttl
                .map(|ttl| Arc::new(Live::new(clock, Some(nanos(ttl))))),
            load: None,
        }
    }

    /// See [`Registry::register`].
    pub fn register(&self, name: &str, value: V) -> Result<Registration<V>, Rejected<V>> {
        self.register_as(name, InstanceId::fresh(), value)
    }

    /// See [`Registry::register_detached`].
    pub fn register_detached(&self, name: &str, value: V) -> Result<Tag, Rejected<V>> {
        self.registry
            .pin()
            .bind(
                name,
                InstanceId::fresh(),
                Stored::Strong(value),
                self.extra(),
            )
            .map_err(strong_refused)
    }

    /// See [`Registry::register_as`].
    pub fn register_as(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Registration<V>, Rejected<V>> {
        self.registry
            .pin()
            .register_stored(name, instance, Stored::Strong(value), self.extra())
            .map_err(strong_refused)
    }

    /// See [`Registry::ensure_registered`].
    pub fn ensure_registered(
        &self,
        name: &str,
        instance: InstanceId,
        value: V,
    ) -> Result<Ensured<V>, Rejected<V>> {
        Ensured::from_registration(self.register_as(name, instance, value), instance)
    }

    /// See [`Registry::register_auto`].
    pub fn register_auto(&self, prefix: &str, value: V) -> Result<Registration<V>, Rejected<V>> {
        self.registry
            .pin()
            .register_auto_with(prefix, value, self.extra())
    }
}

impl<T: ?Sized + Send + Sync + 'static> RegisterWith<'_, Arc<T>> {
    /// See [`Registry::register_weak`].
    pub fn register_weak(
        &self,
        name: &str,
        owner: &Arc<T>,
    ) -> Result<Registration<Arc<T>>, Rejected<Arc<T>>> {
        self.register_weak_as(name, InstanceId::fresh(), owner)
    }

    /// See [`Registry::register_weak_as`].
    pub fn register_weak_as(
        &self,
        name: &str,
        instance: InstanceId,
        owner: &Arc<T>,
    ) -> Result<Registration<Arc<T>>, Rejected<Arc<T>>> {
        self.registry
            .register_weak_with(name, instance, owner, self.extra())
    }

    /// See [`Registry::ensure_registered_weak`].
    pub fn ensure_registered_weak(
        &self,
        name: &str,
        instance: InstanceId,
        owner: &Arc<T>,
    ) -> Result<Ensured<Arc<T>>, Rejected<Arc<T>>> {
        Ensured::from_registration(self.register_weak_as(name, instance, owner), instance)
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// Registers with `metadata`: `registry.with_metadata(meta).register(name, value)`, and
    /// likewise for every other way of registering (weak, auto-named, with an instance id,
    /// idempotent, detached). The binding is then found by discovery queries
    /// ([`find`](Self::find)); its metadata changes only through
    /// [`update_metadata`](Self::update_metadata). Chain [`ttl`](RegisterWith::ttl) for a
    /// time to live as well.
    ///
    /// Takes the metadata by value or as an `Arc` (to share one among many entries).
    pub fn with_metadata(&self, metadata: impl Into<Arc<Metadata>>) -> RegisterWith<'_, V> {
        RegisterWith {
            registry: self,
            meta: Some(metadata.into()),
            ttl: None,
        }
    }

    /// Registers with a time to live: `registry.with_ttl(ttl).register(name, value)` (see
    /// [`RegisterWith::ttl`] and the crate docs, "Liveness"). Chain
    /// [`metadata`](RegisterWith::metadata) for metadata as well.
    pub fn with_ttl(&self, ttl: Duration) -> RegisterWith<'_, V> {
        RegisterWith {
            registry: self,
            meta: None,
            ttl: Some(ttl),
        }
    }
}
