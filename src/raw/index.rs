//! The discovery index: which names carry which kind, capability, label and name prefix, kept
//! from the commit point and checked against the table on every read.
//!
//! # Layout
//! A map of *terms* to *postings*, both this crate's own lock-free map (`RawMap`, so the index
//! inherits its verified protocol, its loom models and its Miri runs). A term is `k{kind}`,
//! `c{capability}`, `l{key}={value}`, `n` (every entry that carries metadata) or `p{segment}`
//! for the name's first segment, the part before its first separator (`-`, `_`, `.`, `/`,
//! `:`), so that `worker_1` is found from `worker_`. A posting is the set of names carrying the
//! term, each in a node whose tag is a fresh *identity* minted for that one insertion (a name
//! put again gets a new identity), and removed only by a CAS on its identity: a removal never
//! takes out an entry newer than the one it looked at.
//!
//! # Bounded
//! Postings are created on first use and never removed (removing one safely would need an
//! atomic "remove if empty" across two maps), so their number is capped: at most
//! [`MAX_TERMS`] terms get a posting. A term met after that has none: its entries are in `n`
//! only, and the index is marked *overflowed* (once, for good) before the publisher returns.
//! A query for a term without a posting reads nothing if the index never overflowed (nobody
//! carries the term), and else falls back to reading `n` and filtering.
//!
//! # The protocol
//! The index is a hint; the table is the truth. An entry `(t, x)` is *justified* while the
//! binding of `x` visible in the table carries term `t`. Every read checks justification
//! against the table (so a stale entry is never returned); the writers keep the index close to
//! the justified set, so that stale entries do not pile up:
//!
//! - **publish** (after a commit that bound node `N` to `x`): put a fresh entry for every term
//!   of `N`, then a SeqCst fence, then load `x`'s binding. If it is not `N` any more, **tidy**
//!   `N`'s terms.
//! - **retract** (after a commit that unbound or replaced node `O`): a SeqCst fence, then
//!   **tidy** the terms of `O` that the new binding (if any) does not carry.
//! - **tidy** terms `t1..tk` of `x`: read each entry's identity `e1..ek`, *then* load `x`'s
//!   binding (once); for each `ti` that it does not carry, remove the entry if it still has
//!   identity `ei`.
//!
//! Why no justified entry is removed: a tidy removes `e` only after seeing, at some instant
//! after `e` was read, a binding of `x` without `t`. A binding with `t` committed after that
//! instant is published after it too, with a fresh identity that the removal of `e` cannot
//! match.
//!
//! Why no stale entry survives quiescence: a publisher's put and a retractor's commit are each
//! followed by a SeqCst fence and a load of the other's location (a Dekker pair: the commit CAS
//! is SeqCst, see `table.rs`). So either the publisher's load sees the removal and it tidies
//! its own entries, or the retractor's tidy finds the publisher's entry. (The loom models in
//! `tests/loom_discovery.rs` race exactly these.)
//!
//! A justified entry may be missing only while the commit that made it so is still
//! publishing: a query may miss a binding whose registering (or updating) call has not
//! returned yet, never one whose call returned before the query began.

use std::sync::Arc;

use crossbeam_epoch::Guard;

use super::node::{Extra, Node};
use super::{RawMap, Refused, Stored, Write, Written};
use crate::discovery::Metadata;
use crate::sync::{AtomicUsize, Ordering, fence};
use crate::tag::{Generation, InstanceId, Tag};
use crate::watch::Reason;

/// The most terms with a posting of their own (see "Bounded"; each costs about 2.5 KiB).
pub(crate) const MAX_TERMS: usize = 4096;

/// The characters after which a name's prefix is indexed (`p` terms).
pub(crate) fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.' | '/' | ':')
}

/// One thing an entry can be found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Term<'a> {
    /// Every entry with metadata.
    Named,
    /// The name's first segment (before its first separator, which must follow).
    Prefix(&'a str),
    Kind(&'a str),
    Capability(&'a str),
    Label(&'a str, &'a str),
}

impl Term<'_> {
    /// Writes the key of this term's posting into `buf` (replacing what it held).
    pub(crate) fn write_key(&self, buf: &mut String) {
        buf.clear();
        let (tag, parts): (char, [&str; 3]) = match *self {
            Term::Named => ('n', ["", "", ""]),
            Term::Prefix(p) => ('p', [p, "", ""]),
            Term::Kind(k) => ('k', [k, "", ""]),
            Term::Capability(c) => ('c', [c, "", ""]),
            Term::Label(k, v) => ('l', [k, "=", v]),
        };
        buf.push(tag);
        for part in parts {
            buf.push_str(part);
        }
    }

    /// Whether a binding of `name` with `meta` carries this term.
    pub(crate) fn held_by(&self, name: &str, meta: &Metadata) -> bool {
        match *self {
            Term::Named => true,
            Term::Prefix(p) => first_segment(name) == Some(p),
            Term::Kind(k) => meta.kind() == Some(k),
            Term::Capability(c) => meta.has_capability(c),
            Term::Label(k, v) => meta.label(k) == Some(v),
        }
    }
}

/// Every term that a binding of `name` with `meta` carries.
pub(crate) fn terms<'a>(name: &'a str, meta: &'a Metadata) -> impl Iterator<Item = Term<'a>> {
    std::iter::once(Term::Named)
        .chain(first_segment(name).map(Term::Prefix))
        .chain(meta.kind().map(Term::Kind))
        .chain(meta.capabilities().map(Term::Capability))
        .chain(meta.labels().map(|(k, v)| Term::Label(k, v)))
}

/// The part of `name` before its first separator, if that is not at its start.
pub(crate) fn first_segment(name: &str) -> Option<&str> {
    match name.find(is_separator) {
        Some(i) if i > 0 => Some(&name[..i]),
        _ => None,
    }
}

/// One term's names.
pub(crate) struct Posting {
    set: RawMap<()>,
}

impl Posting {
    /// The names in the posting (an instant's view, weakly consistent as the table's walks).
    pub(crate) fn names<'g>(&'g self, guard: &'g Guard) -> impl Iterator<Item = &'g str> + 'g {
        self.set.iter(guard).map(Node::name)
    }

    /// How many names (an estimate while writers run).
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// The posting a node of the terms map holds (always a strong value).
fn posting_of(node: &Node<Arc<Posting>>) -> &Posting {
    match node.stored() {
        super::StoredRef::Strong(p) => p,
        super::StoredRef::Weak(_) => unreachable!("postings are strong"),
    }
}

/// The index (see the module docs).
pub(crate) struct Index {
    postings: RawMap<Arc<Posting>>,
    seed: u64,
    /// Postings created (a cap, not a count to rely on: two creators may pass it together).
    terms: AtomicUsize,
    /// Nonzero once a term went without a posting (see "Bounded"). SeqCst store before the
    /// publisher returns, SeqCst load after a query found no posting.
    overflowed: AtomicUsize,
}

impl Index {
    pub(crate) fn new(seed: u64) -> Index {
        Index {
            postings: RawMap::new(0, seed ^ 0x1dec_5eed),
            seed,
            terms: AtomicUsize::new(0),
            overflowed: AtomicUsize::new(0),
        }
    }

    /// Whether some term went without a posting (queries for terms without one must then
    /// read every entry with metadata).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst) != 0 // necessary: see the field
    }

    /// Entries in every posting, justified or not (for tests).
    pub(crate) fn len(&self, guard: &Guard) -> usize {
        self.postings.iter(guard).map(|n| posting_of(n).len()).sum()
    }

    /// The posting of `term`, if it was ever used.
    pub(crate) fn posting<'g>(&self, term: Term<'_>, guard: &'g Guard) -> Option<&'g Posting> {
        self.posting_in(term, &mut String::new(), guard)
    }

    /// [`posting`](Self::posting), with `buf` as room for the term's key.
    fn posting_in<'g>(
        &self,
        term: Term<'_>,
        buf: &mut String,
        guard: &'g Guard,
    ) -> Option<&'g Posting> {
        term.write_key(buf);
        let node = self.postings.get(self.postings.hash(buf), buf, guard)?;
        Some(posting_of(node))
    }

    /// The posting of `term`, created if need be (postings are never removed), or `None` if
    /// the index holds [`MAX_TERMS`] already (then it is marked overflowed).
    fn posting_or_new<'g>(
        &self,
        term: Term<'_>,
        buf: &mut String,
        guard: &'g Guard,
    ) -> Option<&'g Posting> {
        if let Some(p) = self.posting_in(term, buf, guard) {
            return Some(p);
        }
        // `n` is the fallback of every other term: always indexed.
        if term != Term::Named && self.terms.load(Ordering::Relaxed) >= MAX_TERMS {
            self.overflowed.store(1, Ordering::SeqCst); // necessary: see the field
            return None;
        }
        let key = &*buf;
        let hash = self.postings.hash(key);
        let new = Arc::new(Posting {
            set: RawMap::new(0, self.seed ^ hash),
        });
        let tag = self.identity();
        // Lost to another creator: use theirs.
        let node =
            match self
                .postings
                .bind(hash, key, tag, Stored::Strong(new), Extra::default(), guard)
            {
                Ok(()) => {
                    // Relaxed: a cap (see the field).
                    self.terms.fetch_add(1, Ordering::Relaxed);
                    self.postings.get(hash, key, guard)
                }
                Err((Refused::Exists(current), _)) => Some(current),
                Err((Refused::Full, _)) => unreachable!("the index's maps are unbounded"),
            };
        Some(posting_of(node.expect("postings are never removed")))
    }

    /// A fresh entry identity: unique in the process (a fresh instance id, from the thread's
    /// own block: no shared counter on this path).
    fn identity(&self) -> Tag {
        Tag::new(InstanceId::fresh(), Generation::from_raw(1))
    }

    /// Puts a fresh entry for each of the terms of a binding of `name` with `meta`.
    pub(crate) fn publish(&self, name: &str, meta: &Metadata, guard: &Guard) {
        let mut buf = String::new();
        for term in terms(name, meta) {
            // Without a posting (overflowed), the entry is found through `n`.
            let Some(posting) = self.posting_or_new(term, &mut buf, guard) else {
                continue;
            };
            let set = &posting.set;
            let hash = set.hash(name);
            let tag = self.identity();
            loop {
                let current =
                    match set.bind(hash, name, tag, Stored::Strong(()), Extra::default(), guard) {
                        Ok(()) => break,
                        Err((Refused::Exists(current), _)) => current.tag,
                        Err((Refused::Full, _)) => unreachable!("the index's maps are unbounded"),
                    };
                // The name is there under an older identity: replace it with this one.
                let same = |n: &Node<()>| n.tag == current;
                if set.replace_if(hash, name, tag, (), same, guard).is_ok() {
                    break;
                }
            }
        }
        // Orders the puts before the caller's load of the binding (see the module docs).
        fence(Ordering::SeqCst); // necessary: the publisher's half of the Dekker pair
    }

    /// The retractor's fence, between its commit and its tidies (see the module docs).
    pub(crate) fn before_retract(&self) {
        fence(Ordering::SeqCst); // necessary: the retractor's half of the Dekker pair
    }

    /// Removes each entry `(term, name)` of `terms` unless `current()` (the binding's
    /// metadata, read once, after every entry's identity was) carries the term.
    pub(crate) fn tidy<'g, 't>(
        &self,
        name: &str,
        terms: impl Iterator<Item = Term<'t>>,
        current: impl FnOnce() -> Option<&'g Metadata>,
        guard: &Guard,
    ) {
        let mut buf = String::new();
        let found: Vec<(Term<'t>, &Posting, Tag)> = terms
            .filter_map(|term| {
                let posting = self.posting_in(term, &mut buf, guard)?;
                let entry = posting.set.get(posting.set.hash(name), name, guard)?;
                Some((term, posting, entry.tag))
            })
            .collect();
        if found.is_empty() {
            return;
        }
        let current = current();
        for (term, posting, identity) in found {
            if current.is_some_and(|m| term.held_by(name, m)) {
                continue;
            }
            let set = &posting.set;
            let mine =
                |n: &Node<()>| (n.tag == identity).then_some(Write::Remove(Reason::Explicit));
            // Refused: a newer entry took its place, and it is that entry's publisher's to tidy.
            let _: Written<'_, ()> = set.write_if(set.hash(name), name, mine, guard);
        }
    }
}
