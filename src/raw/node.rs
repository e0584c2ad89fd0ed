//! The node: one immutable binding, `(hash, name, tag, value)`.
//!
//! A node never changes after it is published. Replacing a value means publishing a new node
//! with a new tag, and removing one means swapping the slot to a tombstone, so every
//! conditional write is a single pointer compare-and-swap and a reader holding a node pointer
//! sees a consistent binding for as long as its guard lives.
//!
//! Short names (up to [`INLINE`] bytes, the common case for agent names) are stored inside the
//! node, so a lookup chases one pointer (slot → node), not two (PERF.md: a name behind a pointer
//! costs a whole cache miss at scale).

use std::fmt;

use crate::tag::Tag;

/// Names up to this many bytes live inside the node.
pub(crate) const INLINE: usize = 22;

/// A name stored inline when short, boxed when long.
pub(crate) enum NameBuf {
    /// `bytes[..len]` is valid UTF-8 (copied from a `&str`).
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<str>),
}

impl NameBuf {
    pub(crate) fn new(name: &str) -> NameBuf {
        if name.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            NameBuf::Inline {
                // Cannot truncate: name.len() <= INLINE < 256.
                len: name.len() as u8,
                bytes,
            }
        } else {
            NameBuf::Heap(name.into())
        }
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            NameBuf::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                debug_assert!(std::str::from_utf8(bytes).is_ok());
                // SAFETY: `bytes[..len]` was copied from a `&str` in `NameBuf::new` and is never
                // written again, so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            NameBuf::Heap(s) => s,
        }
    }
}

/// A weak binding: something that can hand out a `V` while its owner is alive.
///
/// Implemented for [`std::sync::Weak<T>`] with `V = Arc<T>`; used by
/// [`Registry::register_weak`](crate::Registry::register_weak).
pub(crate) trait WeakRef<V>: Send + Sync {
    /// A strong value if the owner is still alive.
    fn upgrade(&self) -> Option<V>;
    /// Whether the owner is still alive (a hint: it may die right after).
    fn is_alive(&self) -> bool;
}

impl<T: ?Sized + Send + Sync> WeakRef<std::sync::Arc<T>> for std::sync::Weak<T> {
    fn upgrade(&self) -> Option<std::sync::Arc<T>> {
        std::sync::Weak::upgrade(self)
    }
    fn is_alive(&self) -> bool {
        self.strong_count() > 0
    }
}

/// What a node holds.
pub(crate) enum Stored<V> {
    /// The registry owns the value.
    Strong(V),
    /// The registry does not keep the owner alive.
    Weak(Box<dyn WeakRef<V>>),
    /// No value: the node is a tombstone that keeps a removed binding's name in its slot, so
    /// that the same name reuses the slot instead of walking past ever more tombstones.
    Vacant,
}

/// One binding.
pub(crate) struct Node<V> {
    /// The name's hash (with the registry's seed), kept to skip mismatches without comparing
    /// names and to re-home the node when the table migrates.
    pub(crate) hash: u64,
    pub(crate) tag: Tag,
    pub(crate) name: NameBuf,
    pub(crate) value: Stored<V>,
}

impl<V> Node<V> {
    #[inline]
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Whether this node binds `name` (hash first: a mismatch is almost always decided there).
    #[inline]
    pub(crate) fn is(&self, hash: u64, name: &str) -> bool {
        self.hash == hash && self.name() == name
    }

    /// Whether a read would see this binding: strong ones always, weak ones while the owner
    /// lives. A dead weak binding is invisible to every read and never blocks its name.
    #[inline]
    pub(crate) fn is_visible(&self) -> bool {
        match &self.value {
            Stored::Strong(_) => true,
            Stored::Weak(w) => w.is_alive(),
            Stored::Vacant => false,
        }
    }

    /// A tombstone for `removed`: its hash, name and tag, no value.
    pub(crate) fn tombstone(removed: &Node<V>) -> Node<V> {
        Node {
            hash: removed.hash,
            tag: removed.tag,
            name: NameBuf::new(removed.name()),
            value: Stored::Vacant,
        }
    }
}

impl<V> fmt::Debug for Node<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("tag", &self.tag)
            .field("weak", &matches!(self.value, Stored::Weak(_)))
            .finish()
    }
}
