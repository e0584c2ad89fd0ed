//! Queries: [`Query`] (a small builder), [`Match`] (an owned result), and the registry's
//! `find_*` and `best_match` shortcuts.
//!
//! A query takes its candidates from the index (`raw/index.rs`): every condition that has a
//! posting of its own (a kind, a capability, a label, a union of capabilities, a name prefix
//! that runs past the name's first separator) is a source, and the query reads the smallest. So it costs about
//! what its most selective condition holds, not the registry's size. Every candidate is then
//! checked against its binding in the table (present, visible, and its current metadata
//! satisfying every condition), which makes the answer exact for bindings that do not change
//! while the query runs. Results are sorted by name.

use std::fmt;
use std::sync::Arc;

use crossbeam_epoch::Guard;

use super::metadata::{Field, Metadata, MetadataError, ident};
use crate::name::{self, InvalidNameReason};
use crate::raw::RawMap;
use crate::raw::index::{Index, Posting, Term, first_segment};
use crate::raw::node::Node;
use crate::raw::node::StoredRef;
use crate::registry::Registry;
use crate::tag::Tag;

/// One binding found by a query: owned, so it can be kept across `.await` points and sent to
/// other threads (it holds no epoch guard).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Match<V> {
    /// The name.
    pub name: String,
    /// The binding's tag (hand it to `unregister_if_same`, `get_if`, `update_metadata`).
    pub tag: Tag,
    /// A clone of the value (an upgrade, for a weak binding).
    pub value: V,
    /// The binding's metadata as the query read it.
    pub metadata: Arc<Metadata>,
}

impl<V: fmt::Debug> fmt::Debug for Match<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Match")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("value", &self.value)
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// A discovery query: [`Registry::find`]. Conditions combine with *and*; results are sorted
/// by name; [`run`](Self::run) reads them.
///
/// ```
/// use genreg::{Metadata, Registry};
/// let reg: Registry<&str> = Registry::new();
/// let meta = Metadata::builder().kind("writer").capability("editing").build()?;
/// let _w = reg.with_metadata(meta).register("writer-1", "w1").unwrap();
/// let found = reg.find().kind("writer").capability("editing").limit(10).run()?;
/// assert_eq!(found[0].name, "writer-1");
/// # Ok::<(), genreg::MetadataError>(())
/// ```
#[must_use = "a query does nothing until `run`"]
pub struct Query<'r, V> {
    registry: &'r Registry<V>,
    kind: Option<String>,
    all: Vec<String>,
    any: Vec<Vec<String>>,
    labels: Vec<(String, String)>,
    prefix: Option<String>,
    limit: usize,
    healthy: bool,
}

impl<V> fmt::Debug for Query<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("kind", &self.kind)
            .field("all", &self.all)
            .field("any", &self.any)
            .field("labels", &self.labels)
            .field("prefix", &self.prefix)
            .field("limit", &self.limit)
            .field("healthy", &self.healthy)
            .finish_non_exhaustive()
    }
}

impl<'r, V> Query<'r, V> {
    /// Only entries of this kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Only entries with this capability.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.all.push(capability.into());
        self
    }

    /// Only entries with every one of these capabilities.
    pub fn all_capabilities<I: IntoIterator<Item = S>, S: Into<String>>(mut self, c: I) -> Self {
        self.all.extend(c.into_iter().map(Into::into));
        self
    }

    /// Only entries with at least one of these capabilities (none given: nothing matches).
    pub fn any_capability<I: IntoIterator<Item = S>, S: Into<String>>(mut self, c: I) -> Self {
        self.any.push(c.into_iter().map(Into::into).collect());
        self
    }

    /// Only entries whose label `key` has this value.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Only entries whose name starts with `prefix` (MARSYS's `get_least_loaded(prefix)`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// At most `n` results (the first `n` by name).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// Only entries whose health is passing or warning
    /// ([`HealthState::is_healthy`](crate::liveness::HealthState::is_healthy)): never checked
    /// (unknown) and critical entries are left out. See
    /// [`Registry::set_health`](crate::Registry::set_health).
    pub fn healthy(mut self) -> Self {
        self.healthy = true;
        self
    }

    /// Checks every condition's text (as [`Metadata::builder`] would).
    fn validate(&self) -> Result<(), MetadataError> {
        if let Some(k) = &self.kind {
            ident(Field::Kind, k)?;
        }
        for c in self.all.iter().chain(self.any.iter().flatten()) {
            ident(Field::Capability, c)?;
        }
        for (k, v) in &self.labels {
            ident(Field::LabelKey, k)?;
            if let Some(at) = v
                .char_indices()
                .find(|(_, c)| c.is_control())
                .map(|(i, _)| i)
            {
                return Err(MetadataError::InvalidLabelValue {
                    key: k.clone(),
                    len: v.len(),
                    control_at: Some(at),
                });
            }
        }
        if let Some(p) = &self.prefix {
            // A prefix of a name: any prefix of a valid name is valid (the empty one too).
            if let Err(reason) = name::validate(p).or_else(|e| match e {
                InvalidNameReason::Empty => Ok(()),
                e => Err(e),
            }) {
                return Err(MetadataError::InvalidPrefix {
                    prefix: p.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Whether `meta` (of a binding named `name`) satisfies every condition.
    fn accepts(&self, name: &str, meta: &Metadata) -> bool {
        self.kind.as_deref().is_none_or(|k| meta.kind() == Some(k))
            && self.all.iter().all(|c| meta.has_capability(c))
            && self
                .any
                .iter()
                .all(|group| group.iter().any(|c| meta.has_capability(c)))
            && self.labels.iter().all(|(k, v)| meta.label(k) == Some(v))
            && self.prefix.as_deref().is_none_or(|p| name.starts_with(p))
    }

    /// Where candidates can come from: one source per condition that has a posting.
    fn sources(&self) -> Vec<Source<'_>> {
        let mut sources = Vec::new();
        if let Some(k) = &self.kind {
            sources.push(Source::Term(Term::Kind(k)));
        }
        for (k, v) in &self.labels {
            sources.push(Source::Term(Term::Label(k, v)));
        }
        for c in &self.all {
            sources.push(Source::Term(Term::Capability(c)));
        }
        for group in &self.any {
            sources.push(Source::Any(
                group.iter().map(|c| Term::Capability(c)).collect(),
            ));
        }
        if let Some(p) = &self.prefix {
            // A prefix that runs past its first separator names the segment before it: every
            // name that starts with `p` carries that term.
            if let Some(segment) = first_segment(p) {
                sources.push(Source::Term(Term::Prefix(segment)));
            }
        }
        if sources.is_empty() {
            sources.push(Source::Term(Term::Named));
        }
        sources
    }
}

/// A set of candidate names from the index.
enum Source<'a> {
    Term(Term<'a>),
    /// The union of these terms' names.
    Any(Vec<Term<'a>>),
}

impl Source<'_> {
    /// How many names it holds (an estimate while writers run); `None` if it cannot be read
    /// (a term without a posting in an overflowed index: see `raw/index.rs`).
    fn size(&self, index: &Index, guard: &Guard) -> Option<usize> {
        let len = |t: &Term<'_>| match index.posting(*t, guard) {
            Some(p) => Some(p.len()),
            // No posting: nobody carries the term, unless the index overflowed.
            None => (!index.overflowed()).then_some(0),
        };
        match self {
            Source::Term(t) => len(t),
            Source::Any(ts) => ts.iter().map(len).sum(),
        }
    }

    /// Its names, sorted, each once.
    fn names<'g>(&self, index: &'g Index, guard: &'g Guard) -> Vec<&'g str> {
        let terms = match self {
            Source::Term(t) => std::slice::from_ref(t),
            Source::Any(ts) => ts.as_slice(),
        };
        let postings: Vec<&Posting> = terms
            .iter()
            .filter_map(|t| index.posting(*t, guard))
            .collect();
        let mut names = Vec::with_capacity(postings.iter().map(|p| p.len()).sum());
        names.extend(postings.iter().flat_map(|p| p.names(guard)));
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The candidates of the smallest readable source (every entry with metadata if none is).
fn candidates<'g>(sources: &[Source<'_>], index: &'g Index, guard: &'g Guard) -> Vec<&'g str> {
    let smallest = sources
        .iter()
        .filter_map(|s| Some((s.size(index, guard)?, s)))
        .min_by_key(|(size, _)| *size);
    match smallest {
        Some((_, s)) => s.names(index, guard),
        None => Source::Term(Term::Named).names(index, guard),
    }
}

impl<V: Clone + Send + Sync + 'static> Query<'_, V> {
    /// The least loaded match ([`Registry::load`]: a pool member's leases, an agent's tasks
    /// from [`Registry::acquire`]), ties broken by name: MARSYS's `get_least_loaded`, over any
    /// query (`find().capability("browse").healthy().least_loaded()`). The limit applies to
    /// the matches before the choice.
    pub fn least_loaded(&self) -> Result<Option<Match<V>>, MetadataError> {
        let matches = self.run()?;
        Ok(matches
            .into_iter()
            .filter_map(|m| Some((self.registry.load(&m.name)?, m)))
            .min_by(|(la, a), (lb, b)| la.cmp(lb).then_with(|| a.name.cmp(&b.name)))
            .map(|(_, m)| m))
    }

    /// Runs the query: the matching bindings, sorted by name, at most [`limit`](Self::limit).
    ///
    /// Refused with a [`MetadataError`] if a condition could match nothing because its text is
    /// invalid (an empty capability, a kind with a space, a prefix with a control character).
    /// What the result promises while writers race with it: see the crate docs
    /// ("Discovery").
    pub fn run(&self) -> Result<Vec<Match<V>>, MetadataError> {
        self.validate()?;
        let mut out = Vec::new();
        if self.limit == 0 || self.any.iter().any(Vec::is_empty) {
            return Ok(out);
        }
        let pinned = self.registry.pin();
        let guard = pinned.guard();
        let map = &self.registry.inner.map;
        let Some(index) = map.index.as_ref() else {
            return Ok(out);
        };
        for name in candidates(&self.sources(), index, guard) {
            let accepts = |n: &str, meta: &Metadata| self.accepts(n, meta);
            if let Some(m) = check(map, name, guard, self.healthy, accepts) {
                out.push(m);
                // Candidates come sorted by name: the first `limit` are the answer.
                if out.len() == self.limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The binding of `name` as a [`Match`], if it is visible, has metadata and `accepts` it.
fn check<V: Clone>(
    map: &RawMap<V>,
    name: &str,
    guard: &Guard,
    healthy: bool,
    accepts: impl FnOnce(&str, &Metadata) -> bool,
) -> Option<Match<V>> {
    // The name is not validated: the index holds only names that were bound.
    let node = map.get_cold(map.hash(name), name, guard)?;
    if healthy && !node.is_healthy() {
        return None;
    }
    match_of(node, accepts)
}

/// `node` as a [`Match`], if it is visible, has metadata and `accepts` it.
fn match_of<V: Clone>(
    node: &Node<V>,
    accepts: impl FnOnce(&str, &Metadata) -> bool,
) -> Option<Match<V>> {
    let name = node.name();
    let meta = node.meta()?;
    // The mutant trusts the index: a binding whose metadata changed since its entry was
    // published is returned for what it no longer has.
    #[cfg(not(genreg_mutant = "query_unchecked"))]
    if !accepts(name, meta) {
        return None;
    }
    #[cfg(genreg_mutant = "query_unchecked")]
    let _ = accepts;
    let value = match node.visible_stored()? {
        StoredRef::Strong(v) => v.clone(),
        StoredRef::Weak(w) => w.upgrade()?,
    };
    Some(Match {
        name: name.to_owned(),
        tag: node.tag,
        value,
        metadata: Arc::clone(meta),
    })
}

impl<V: Send + Sync + 'static> Registry<V> {
    /// A discovery query (see [`Query`]): `registry.find().capability("search").run()?`.
    ///
    /// With no condition it finds every entry that carries metadata.
    pub fn find(&self) -> Query<'_, V> {
        Query {
            registry: self,
            kind: None,
            all: Vec::new(),
            any: Vec::new(),
            labels: Vec::new(),
            prefix: None,
            limit: usize::MAX,
            healthy: false,
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// The entries with this capability, sorted by name (MARSYS's `find_by_capability`).
    pub fn find_by_capability(&self, capability: &str) -> Result<Vec<Match<V>>, MetadataError> {
        self.find().capability(capability).run()
    }

    /// The entries of this kind, sorted by name (MARSYS's find by type).
    pub fn find_by_kind(&self, kind: &str) -> Result<Vec<Match<V>>, MetadataError> {
        self.find().kind(kind).run()
    }

    /// The entries (with metadata) whose name starts with `prefix`, sorted by name.
    pub fn find_by_prefix(&self, prefix: &str) -> Result<Vec<Match<V>>, MetadataError> {
        self.find().prefix(prefix).run()
    }

    /// The entries whose label `key` is `value`, sorted by name.
    pub fn find_by_label(&self, key: &str, value: &str) -> Result<Vec<Match<V>>, MetadataError> {
        self.find().label(key, value).run()
    }

    /// The entry with the most of these capabilities (at least one), ties broken by name
    /// (MARSYS's `find_best_match`, made deterministic). See
    /// [`best_match_by`](Self::best_match_by) to break ties by load first.
    pub fn best_match(&self, capabilities: &[&str]) -> Result<Option<Match<V>>, MetadataError> {
        self.best_match_by(capabilities, |_| 0u8)
    }

    /// The entry with the most of these capabilities (at least one), ties broken by the least
    /// `load` (a key of the caller's: in-flight tasks, queue length), then by name. Reads every
    /// entry that has any of the capabilities (as the index lists them) and scores each from
    /// its current metadata.
    pub fn best_match_by<L: Ord>(
        &self,
        capabilities: &[&str],
        load: impl Fn(&Match<V>) -> L,
    ) -> Result<Option<Match<V>>, MetadataError> {
        for c in capabilities {
            ident(Field::Capability, c)?;
        }
        let pinned = self.pin();
        let guard = pinned.guard();
        let map = &self.inner.map;
        let Some(index) = map.index.as_ref() else {
            return Ok(None);
        };
        let terms: Vec<Term<'_>> = capabilities.iter().map(|c| Term::Capability(c)).collect();
        let score = |meta: &Metadata| {
            capabilities
                .iter()
                .filter(|c| meta.has_capability(c))
                .count()
        };
        // Unsorted and possibly twice (a name under two of the terms): a name ties with
        // itself, so a repeat never wins, and ties break on the name explicitly.
        let consider = |name: &str, best: &mut Option<(usize, L, Match<V>)>| {
            let Some(node) = map.get_cold(map.hash(name), name, guard) else {
                return;
            };
            let s = match node.meta() {
                Some(meta) if node.is_visible() => score(meta),
                _ => return,
            };
            // Only a candidate that can win is copied out (its value cloned), from the very
            // node it was scored on.
            if s == 0 || best.as_ref().is_some_and(|(bs, _, _)| s < *bs) {
                return;
            }
            let Some(m) = match_of(node, |_, _| true) else {
                return;
            };
            let l = load(&m);
            // Most matches, then the least load, then the least name.
            let better = match best {
                None => true,
                Some((bs, bl, bm)) => {
                    s > *bs || (s == *bs && (l < *bl || (l == *bl && m.name < bm.name)))
                }
            };
            if better {
                *best = Some((s, l, m));
            }
        };
        let mut best: Option<(usize, L, Match<V>)> = None;
        let readable = Source::Any(terms.clone()).size(index, guard).is_some();
        if readable {
            for posting in terms.iter().filter_map(|t| index.posting(*t, guard)) {
                for name in posting.names(guard) {
                    consider(name, &mut best);
                }
            }
        } else {
            // A capability without a posting in an overflowed index: every entry with
            // metadata.
            for name in Source::Term(Term::Named).names(index, guard) {
                consider(name, &mut best);
            }
        }
        Ok(best.map(|(_, _, m)| m))
    }
}
