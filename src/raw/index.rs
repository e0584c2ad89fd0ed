//! The discovery index: which names carry which kind, capability and label, kept from the
//! commit point and checked against the map on every read.
//!
//! # Layout
//! One ordered, lock-free set (crossbeam's epoch-based skip list, on the registry's collector)
//! of keys `{term}\0{name}`, where a term is `k{kind}`, `c{capability}`, `l{key}={value}` or
//! `n` (every entry that carries metadata, for name prefixes). Names and terms hold no `\0`
//! (names have no control characters, terms are identifiers), so the keys of one term are one
//! contiguous run, sorted by name: a query seeks to `{term}\0{from}` and reads on, and a
//! conjunction leapfrogs its terms' runs (`discovery/query.rs`). A key's *entry* is an
//! identity: inserting a key again makes a new entry and retires the old one, and removing an
//! entry removes that entry only, never a newer one with the same key.
//!
//! # The protocol
//! The index is a hint; the map is the truth. An entry `(t, x)` is *justified* while the
//! binding of `x` visible in the map carries term `t`. Every read checks justification against
//! the map (so a stale entry is never returned); the writers keep the index close to the
//! justified set, so that stale entries do not pile up:
//!
//! - **publish** (after a commit that bound node `N` to `x`): insert a fresh entry for every
//!   term of `N`, then a SeqCst fence, then load `x`'s binding. If it is not `N` any more,
//!   **tidy** each of `N`'s terms.
//! - **retract** (after a commit that unbound or replaced node `O`): a SeqCst fence, then
//!   **tidy** each term of `O` that the new binding (if any) does not carry.
//! - **tidy** `(t, x)`: get the entry `e` for the key, *then* load `x`'s binding; if that does
//!   not carry `t`, remove `e` (that entry only).
//!
//! Why no justified entry is removed: a tidy removes `e` only after seeing, at some instant
//! after `e` was got, a binding of `x` without `t`. A binding with `t` committed after that
//! instant is published after it too, with a fresh entry that `e.remove()` cannot touch.
//!
//! Why no stale entry survives quiescence: a publisher's insert and a retractor's commit are
//! each followed by a SeqCst fence and a load of the other's location (a Dekker pair: the
//! commit CAS is SeqCst, see `table.rs`). So either the publisher's load sees the removal and
//! it tidies its own entries, or the retractor's tidy finds the publisher's entry. (The loom
//! models in `tests/loom_discovery.rs` race exactly these.)
//!
//! A justified entry may be missing only while the commit that made it so is still
//! publishing: a query may miss a binding whose registering (or updating) call has not
//! returned yet, and never one whose call returned before the query began.

use std::ops::Bound;

use crossbeam_epoch::{Collector, Guard};
use crossbeam_skiplist::base::SkipList;

use crate::discovery::Metadata;
use crate::sync::{Ordering, fence};

/// One thing an entry can be found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Term<'a> {
    /// Every entry with metadata (the run that name-prefix queries read).
    Named,
    Kind(&'a str),
    Capability(&'a str),
    Label(&'a str, &'a str),
}

impl Term<'_> {
    /// The key prefix of this term's run (the `{term}\0` part of its keys).
    pub(crate) fn prefix(&self) -> String {
        match self {
            Term::Named => "n\0".to_owned(),
            Term::Kind(k) => format!("k{k}\0"),
            Term::Capability(c) => format!("c{c}\0"),
            Term::Label(k, v) => format!("l{k}={v}\0"),
        }
    }

    /// Whether `meta` carries this term.
    pub(crate) fn held_by(&self, meta: &Metadata) -> bool {
        match *self {
            Term::Named => true,
            Term::Kind(k) => meta.kind() == Some(k),
            Term::Capability(c) => meta.has_capability(c),
            Term::Label(k, v) => meta.label(k) == Some(v),
        }
    }
}

/// Every term that `meta` carries.
pub(crate) fn terms(meta: &Metadata) -> impl Iterator<Item = Term<'_>> {
    std::iter::once(Term::Named)
        .chain(meta.kind().map(Term::Kind))
        .chain(meta.capabilities().map(Term::Capability))
        .chain(meta.labels().map(|(k, v)| Term::Label(k, v)))
}

/// The index (see the module docs).
pub(crate) struct Index {
    list: SkipList<Box<str>, ()>,
}

impl Index {
    pub(crate) fn new(collector: Collector) -> Index {
        Index {
            list: SkipList::new(collector),
        }
    }

    /// Entries in the index, justified or not (for tests and statistics).
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Inserts a fresh entry for each of `meta`'s terms for `name`.
    pub(crate) fn publish(&self, name: &str, meta: &Metadata, guard: &Guard) {
        for term in terms(meta) {
            let mut key = term.prefix();
            key.push_str(name);
            self.list
                .insert(key.into_boxed_str(), (), guard)
                .release(guard);
        }
        // Orders the inserts before the caller's load of the binding (see the module docs).
        fence(Ordering::SeqCst); // necessary: the publisher's half of the Dekker pair
    }

    /// The retractor's fence, between its commit and its tidies (see the module docs).
    pub(crate) fn before_retract(&self) {
        fence(Ordering::SeqCst); // necessary: the retractor's half of the Dekker pair
    }

    /// Removes the entry `(term, name)` unless `current()` (the binding's metadata, read after
    /// the entry was got) carries the term.
    pub(crate) fn tidy<'g>(
        &self,
        term: Term<'_>,
        name: &str,
        current: impl FnOnce() -> Option<&'g Metadata>,
        guard: &Guard,
    ) {
        let mut key = term.prefix();
        key.push_str(name);
        if let Some(entry) = self.list.get(key.as_str(), guard) {
            if !current().is_some_and(|m| term.held_by(m)) {
                entry.remove();
            }
        }
    }

    /// The first name at or after `from` in `prefix`'s run (`prefix` from [`Term::prefix`]);
    /// `buf` is scratch space.
    pub(crate) fn seek<'g>(
        &'g self,
        prefix: &str,
        from: &str,
        buf: &mut String,
        guard: &'g Guard,
    ) -> Option<&'g str> {
        buf.clear();
        buf.push_str(prefix);
        buf.push_str(from);
        let entry = self
            .list
            .lower_bound(Bound::Included(buf.as_str()), guard)?;
        let key: &'g str = entry.key();
        key.strip_prefix(prefix)
    }
}
