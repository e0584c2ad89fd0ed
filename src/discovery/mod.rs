//! Metadata and discovery: find entries by capability, kind, label and name prefix.
//!
//! An entry registered through [`Registry::with_metadata`](crate::Registry::with_metadata) carries [`Metadata`] (a kind, a set
//! of capabilities, labels). Queries ([`Registry::find`] and the `find_by_*` shortcuts,
//! [`Registry::best_match`]) are served from an index kept at the registry's commit point and
//! checked against the table on every read, so that a query costs what it returns, not the
//! registry's size, and never returns a binding that is gone. See the crate docs
//! ("Discovery") for what a query promises when changes race with it.
//!
//! Entries registered without metadata pay nothing for any of this (no index entry, no
//! allocation, the same 72-byte node) and are not found by queries.

mod metadata;
mod query;

use std::fmt;
use std::sync::Arc;

pub use self::metadata::{
    Field, MAX_CAPABILITIES, MAX_IDENT_LEN, MAX_LABEL_VALUE_LEN, MAX_LABELS, MAX_METADATA_BYTES,
    Metadata, MetadataBuilder, MetadataError,
};
pub use self::query::{Match, Query};

use crate::error::Error;
use crate::name::Name;
use crate::raw::node::Extra;
use crate::registration::Registration;
use crate::registry::Registry;
use crate::tag::Tag;

/// The names MARSYS reserves for its control flow (`start`, `end`, `user`): pass them to
/// [`Builder::reserved_names`](crate::Builder::reserved_names) to refuse them as MARSYS does.
pub const MARSYS_RESERVED: [&str; 3] = ["start", "end", "user"];

/// Names that may not be registered, compared case-insensitively (Unicode lower case).
pub(crate) struct Reserved {
    /// Lower-cased, sorted, unique.
    names: Box<[Box<str>]>,
    /// The longest reserved name in bytes: longer names skip the comparison. (Lower-casing
    /// can change a length, so this is the longest of the originals and their lower cases.)
    longest: usize,
}

impl Reserved {
    pub(crate) fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Option<Reserved> {
        let mut longest = 0;
        let mut lower: Vec<Box<str>> = names
            .into_iter()
            .map(|n| {
                let n = n.as_ref();
                let l = n.to_lowercase();
                longest = longest.max(n.len()).max(l.len());
                l.into_boxed_str()
            })
            .collect();
        lower.sort_unstable();
        lower.dedup();
        (!lower.is_empty()).then(|| Reserved {
            names: lower.into(),
            longest,
        })
    }

    /// Whether `name` is reserved.
    #[inline]
    pub(crate) fn contains(&self, name: &str) -> bool {
        // A name longer than every reserved one (in both cases) cannot match: most names stop
        // here, before lower-casing anything.
        name.len() <= self.longest * 3 && {
            let lower = name.to_lowercase();
            self.names.binary_search_by(|r| (**r).cmp(&lower)).is_ok()
        }
    }

    /// The refusal for `name`.
    #[cold]
    pub(crate) fn error(&self, name: &str) -> Error {
        let joined: Vec<&str> = self.names().collect();
        Error::Reserved {
            name: name.into(),
            reserved: ReservedNames(joined.join("\n").as_str().into()),
        }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }
}

/// The reserved names of a registry, as [`Error::Reserved`] reports them (lower case,
/// sorted).
// One `Name` (the names joined by a newline, which no name contains), so that an `Error`
// stays as cheap to drop as a name: refusals are on the hot paths.
#[derive(Clone, PartialEq, Eq)]
pub struct ReservedNames(Name);

impl ReservedNames {
    /// The names, lower case, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.as_str().split('\n')
    }
}

impl fmt::Debug for ReservedNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for ReservedNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// The binding of `name` and its metadata (`None` if it was registered without), if bound.
    pub fn metadata(&self, name: &str) -> Option<(Tag, Option<Arc<Metadata>>)> {
        let pinned = self.pin();
        let e = pinned.get(name)?;
        Some((e.tag(), e.metadata().cloned()))
    }

    /// Entries in the discovery index, current or stale (for tests: at quiescence it is the
    /// number of terms the visible bindings with metadata carry, plus one per such binding).
    #[doc(hidden)]
    pub fn discovery_index_len(&self) -> usize {
        let pinned = self.pin();
        let index = self.inner.map.index.as_ref();
        index.map_or(0, |i| i.len(pinned.guard()))
    }

    /// The names this registry refuses to register ([`Builder::reserved_names`]), lower case.
    ///
    /// [`Builder::reserved_names`]: crate::Builder::reserved_names
    pub fn reserved_names(&self) -> Vec<String> {
        match &self.inner.reserved {
            Some(r) => r.names().map(str::to_owned).collect(),
            None => Vec::new(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// Sets the metadata of `name`'s binding, only if it still carries `tag`: one
    /// compare-and-swap, and one [`MetadataUpdated`](crate::EventKind::MetadataUpdated) event.
    /// The binding keeps its tag and value (guards stay current); queries that begin after
    /// this returns see the new metadata, never the old. Works on an entry registered without
    /// metadata too (it then becomes discoverable).
    ///
    /// Refused with [`Error::TagMismatch`] or [`Error::NotFound`] as
    /// [`unregister_if_same`](Self::unregister_if_same) is. Needs `V: Clone`: the binding's
    /// node is immutable, so its value is cloned into the new one (an `Arc` clone for the
    /// usual `V`; a weak binding stays weak).
    pub fn update_metadata(
        &self,
        name: &str,
        tag: Tag,
        metadata: impl Into<Arc<Metadata>>,
    ) -> Result<(), Error> {
        let meta = Some(metadata.into());
        let pinned = self.pin();
        let map = &self.inner.map;
        // Members may carry metadata (discovery finds them); a pool's own name has no value.
        let accept = |n: &crate::raw::node::Node<V>| {
            n.tag.matches(tag) && n.is_visible() && n.pool().is_none_or(|t| t.member.is_some())
        };
        let extra = |n: &crate::raw::node::Node<V>| Extra {
            meta: meta.clone(),
            ..Extra::kept(n)
        };
        match map.update_extra(map.hash(name), name, extra, accept, pinned.guard()) {
            Ok(()) => Ok(()),
            Err(Some(n)) if n.is_visible() && n.pool().is_some_and(|t| t.member.is_none()) => {
                Err(crate::pool::pooled(name, &n.pool().expect("pooled")))
            }
            Err(Some(n)) if n.is_visible() => Err(Error::TagMismatch {
                name: name.into(),
                expected: tag,
                current: n.tag,
            }),
            // A writer that meets a dead binding removes it.
            Err(Some(n)) => {
                pinned.purge(n);
                Err(Error::NotFound { name: name.into() })
            }
            Err(_) => Err(match crate::name::validate(name) {
                Err(reason) => Error::InvalidName {
                    name: name.into(),
                    reason,
                },
                Ok(()) => Error::NotFound { name: name.into() },
            }),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Registration<V> {
    /// Sets the metadata of the binding this guard owns (see
    /// [`Registry::update_metadata`]); the guard stays current.
    pub fn set_metadata(&self, metadata: impl Into<Arc<Metadata>>) -> Result<(), Error> {
        self.registry()
            .update_metadata(self.name(), self.tag(), metadata)
    }
}
