//! The node: one immutable binding, `(hash, name, tag, value)`.
//!
//! A node never changes after it is published. Replacing a value means publishing a new node
//! with a new tag, and removing one means swapping the slot to a tombstone, so every
//! conditional write is a single pointer compare-and-swap and a reader holding a node pointer
//! sees a consistent binding for as long as its guard lives.
//!
//! Short names (up to [`INLINE`] bytes, the common case for agent names) are stored inside the
//! node, so a lookup chases one pointer (slot → node), not two (measured: a name behind a pointer
//! costs a whole cache miss at scale).

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::{fmt, ptr};

use super::live::Live;
use crate::discovery::Metadata;
use crate::pool::{Load, PoolTie};
use crate::sync::{AtomicUsize, Ordering};
use crate::tag::Tag;
use crate::watch::Reason;

/// Names up to this many bytes live inside the node.
pub(crate) const INLINE: usize = 23;

/// The last byte of a boxed name's representation (an inline one has its length there, ≤ 23).
const BOXED: u8 = 0xff;

/// The three words of a boxed name's representation past its pointer and length: zero but
/// for [`BOXED`] in the last byte.
const BOXED_TAIL: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, BOXED]);

/// A name, in 24 bytes: inline when short, boxed when long.
///
/// Inline, the 24 bytes are the name, zero-padded to 23 bytes, then its length. So two inline
/// names are equal exactly when their three words are, and a lookup compares a name with three
/// word compares against a key prepared once ([`Key`]) instead of a `memcmp` per probe.
/// Boxed, the first two words are the pointer and length of a `Box<str>` and the last byte is
/// [`BOXED`], which no inline length equals.
#[repr(C)]
pub(crate) struct NameBuf {
    head: Head,
    tail: u64,
}

/// The first 16 bytes: name bytes, or a boxed name's parts.
#[repr(C)]
union Head {
    words: [u64; 2],
    boxed: BoxedParts,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct BoxedParts {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a `NameBuf` owns its bytes (inline, or a `Box<str>` nobody else points to) and never
// changes them after construction: it is as thread-safe as a `Box<str>`.
unsafe impl Send for NameBuf {}
// SAFETY: as above; `&NameBuf` only reads.
unsafe impl Sync for NameBuf {}

/// The 24-byte inline representation of a name of at most [`INLINE`] bytes: its bytes, zero
/// padding, then its length, as three words whose memory order is the bytes' order.
///
/// Built from overlapping loads rather than a copy into a zeroed buffer: this runs once per
/// lookup, and a `memcpy` call would cost as much as the probe.
#[inline(always)]
fn inline_words(name: &str) -> [u64; 3] {
    let b = name.as_bytes();
    let len = b.len();
    debug_assert!(len <= INLINE);
    let (w0, w1, w2) = if len >= 16 {
        (full(&b[..8]), full(&b[8..16]), partial(&b[16..]))
    } else if len >= 8 {
        (full(&b[..8]), partial(&b[8..]), 0)
    } else {
        (partial(b), 0, 0)
    };
    // Cannot truncate: len <= INLINE < 256.
    let w2 = w2 | (len as u64) << 56;
    // `to_le` puts the little-endian values' bytes back in memory order on big-endian targets.
    [w0.to_le(), w1.to_le(), w2.to_le()]
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn full(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// Up to eight bytes as a little-endian word, zero-extended (overlapping loads, no loop).
#[inline(always)]
fn partial(b: &[u8]) -> u64 {
    let len = b.len();
    debug_assert!(len <= 8);
    if len == 8 {
        full(b)
    } else if len >= 4 {
        let lo = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let t = len - 4;
        let hi = u64::from(u32::from_le_bytes([b[t], b[t + 1], b[t + 2], b[t + 3]]));
        // The two loads overlap when len < 8; overlapping bytes are equal, so OR is exact.
        lo | hi << (8 * t)
    } else if len > 0 {
        u64::from(b[0])
            | u64::from(b[len / 2]) << (8 * (len / 2))
            | u64::from(b[len - 1]) << (8 * (len - 1))
    } else {
        0
    }
}

impl NameBuf {
    pub(crate) fn new(name: &str) -> NameBuf {
        if name.len() <= INLINE {
            let [a, b, tail] = inline_words(name);
            NameBuf {
                head: Head { words: [a, b] },
                tail,
            }
        } else {
            let boxed: Box<str> = name.into();
            let len = boxed.len();
            let ptr = Box::into_raw(boxed).cast::<u8>();
            // Start from initialised words so that every byte of the head is initialised even
            // where a pointer and a `usize` are narrower than 16 bytes.
            let mut head = Head { words: [0, 0] };
            head.boxed = BoxedParts { ptr, len };
            NameBuf {
                head,
                tail: BOXED_TAIL,
            }
        }
    }

    #[inline]
    fn is_boxed(&self) -> bool {
        self.tail == BOXED_TAIL
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        if self.is_boxed() {
            // SAFETY: a boxed representation's head holds the parts of a `Box<str>` that this
            // `NameBuf` owns until it is dropped.
            unsafe {
                let BoxedParts { ptr, len } = self.head.boxed;
                std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr, len))
            }
        } else {
            let len = usize::from(self.tail.to_ne_bytes()[7]);
            debug_assert!(len <= INLINE);
            // SAFETY: `NameBuf` is `repr(C)`: its 24 bytes are the head then the tail, all
            // initialised; inline, the first `len` of them were copied from a `&str` and are
            // never written again, so they are valid UTF-8.
            unsafe {
                let bytes = std::slice::from_raw_parts(ptr::from_ref(self).cast::<u8>(), len);
                std::str::from_utf8_unchecked(bytes)
            }
        }
    }

    /// Whether this is the name `key` was prepared for.
    #[inline]
    pub(crate) fn matches(&self, key: &Key<'_>) -> bool {
        if key.name.len() <= INLINE {
            // SAFETY: every byte of the head is initialised (`NameBuf::new`); reading a boxed
            // name's pointer as an integer only compares it, and a boxed tail never equals an
            // inline key's tail anyway.
            let head = unsafe { self.head.words };
            // The key's words are made here, not when the key is: only a slot whose fragment
            // matches gets here, so a miss never pays for them (measured: 17 instructions).
            let words = inline_words(key.name);
            head == [words[0], words[1]] && self.tail == words[2]
        } else {
            self.is_boxed() && self.as_str() == key.name
        }
    }

    /// Whether the name is stored inline (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_inline(&self) -> bool {
        !self.is_boxed()
    }
}

impl Clone for NameBuf {
    fn clone(&self) -> NameBuf {
        NameBuf::new(self.as_str())
    }
}

impl Drop for NameBuf {
    fn drop(&mut self) {
        if self.is_boxed() {
            // SAFETY: the parts came from `Box::into_raw` of a `Box<str>` in `NameBuf::new`, and
            // this is the one owner, dropping it once.
            unsafe {
                let BoxedParts { ptr, len } = self.head.boxed;
                drop(Box::from_raw(
                    ptr::slice_from_raw_parts_mut(ptr, len) as *mut str
                ));
            }
        }
    }
}

/// A name prepared for lookups: its hash and fragment, computed once per operation. Its inline
/// representation is made only when a node's fragment matches (see [`NameBuf::matches`]).
pub(crate) struct Key<'a> {
    pub(crate) hash: u64,
    /// The hash fragment as slot words carry it (see `table.rs`).
    pub(crate) frag: usize,
    pub(crate) name: &'a str,
}

impl<'a> Key<'a> {
    #[inline(always)]
    pub(crate) fn new(hash: u64, name: &'a str) -> Key<'a> {
        Key {
            hash,
            frag: super::table::frag(hash),
            name,
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
    /// Whether the owner is still alive (a hint: it may die right after; once dead, it stays
    /// dead).
    fn is_alive(&self) -> bool;
    /// A weak reference of the same kind to `owner` (a replacement of a weak binding stays
    /// weak).
    fn rebind(&self, owner: &V) -> Box<dyn WeakRef<V>>;
    /// The pool this binding belongs to, if it is a pool's name or one of its members (see
    /// `pool/`): their values live in the pool, which hands them out while it is open.
    fn pool(&self) -> Option<PoolTie<'_, V>> {
        None
    }
    /// Why the binding is dead once [`is_alive`](Self::is_alive) says so (a pool's member:
    /// its pool was removed).
    fn death(&self) -> Reason {
        Reason::WeakOwnerDead
    }
}

impl<T: ?Sized + Send + Sync + 'static> WeakRef<std::sync::Arc<T>> for std::sync::Weak<T> {
    fn upgrade(&self) -> Option<std::sync::Arc<T>> {
        std::sync::Weak::upgrade(self)
    }
    fn is_alive(&self) -> bool {
        self.strong_count() > 0
    }
    fn rebind(&self, owner: &std::sync::Arc<T>) -> Box<dyn WeakRef<std::sync::Arc<T>>> {
        Box::new(std::sync::Arc::downgrade(owner))
    }
}

/// A value as it is given to the map: owned by the registry, or weakly bound.
pub(crate) enum Stored<V> {
    /// The registry owns the value.
    Strong(V),
    /// The registry does not keep the owner alive.
    Weak(Box<dyn WeakRef<V>>),
}

/// A node's value, borrowed: what reads match on.
pub(crate) enum StoredRef<'a, V> {
    Strong(&'a V),
    Weak(&'a dyn WeakRef<V>),
}

/// What a node holds: a plain strong value inline (the common case, no indirection), or
/// everything else behind one box, so that a node stays 72 bytes whatever an entry carries.
enum Held<V> {
    Strong(V),
    Ext(Box<Ext<V>>),
}

/// The rest of what a binding may carry: a weak value (or a pool's), metadata (see
/// `index.rs`), a liveness cell (TTL and health, see `live.rs`), a load cell (tasks in flight,
/// see `pool/load.rs`).
struct Ext<V> {
    stored: Stored<V>,
    meta: Option<Arc<Metadata>>,
    live: Option<Arc<Live>>,
    load: Option<Arc<Load>>,
}

/// What a binding carries besides its value: given to [`Node::with_extra`].
#[derive(Clone, Default)]
pub(crate) struct Extra {
    pub(crate) meta: Option<Arc<Metadata>>,
    pub(crate) live: Option<Arc<Live>>,
    pub(crate) load: Option<Arc<Load>>,
}

impl Extra {
    /// Just metadata (or nothing).
    pub(crate) fn meta(meta: Option<Arc<Metadata>>) -> Extra {
        Extra {
            meta,
            ..Extra::default()
        }
    }

    /// What a node of the same binding (the same tag) keeps of `n`: all of it.
    pub(crate) fn kept<V>(n: &Node<V>) -> Extra {
        Extra {
            meta: n.meta().cloned(),
            live: n.live().cloned(),
            load: n.load().cloned(),
        }
    }
}

impl<V> Held<V> {
    #[inline]
    fn new(value: Stored<V>, extra: Extra) -> Held<V> {
        match (value, extra) {
            (
                Stored::Strong(v),
                Extra {
                    meta: None,
                    live: None,
                    load: None,
                },
            ) => Held::Strong(v),
            (stored, Extra { meta, live, load }) => Held::Ext(Box::new(Ext {
                stored,
                meta,
                live,
                load,
            })),
        }
    }
}

/// One binding.
///
/// When the binding is removed, the node itself becomes the tombstone that keeps the name in its
/// slot (the slot word gets the `Tomb` bit): its value is dropped in place by a job deferred
/// past every reader, and its memory lives on as the tombstone until the slot moves on. Two
/// owners then share the memory, `refs` counts them, and the last one frees it (see
/// `reclaim.rs`).
pub(crate) struct Node<V> {
    /// The name's hash (with the registry's seed), kept to skip mismatches without comparing
    /// names and to re-home the node when the table migrates.
    pub(crate) hash: u64,
    pub(crate) tag: Tag,
    pub(crate) name: NameBuf,
    /// Read through [`Node::stored`] and [`Node::meta`]; dropped only through `reclaim.rs`.
    value: UnsafeCell<ManuallyDrop<Held<V>>>,
    /// Owners of this node's memory: 1, or 2 while a removed node is a tombstone and its value
    /// job is pending.
    pub(crate) refs: AtomicUsize,
    /// The next entry of the registry's list of pending removals, once this node is on it
    /// (see `pending.rs`); [`NOT_PENDING`] before.
    pub(crate) pending_next: AtomicUsize,
}

impl<V> Node<V> {
    #[cfg(test)]
    pub(crate) fn new(hash: u64, tag: Tag, name: NameBuf, value: Stored<V>) -> Node<V> {
        Node::with_extra(hash, tag, name, value, Extra::default())
    }

    /// A node that carries metadata, a liveness cell (or neither).
    #[inline]
    pub(crate) fn with_extra(
        hash: u64,
        tag: Tag,
        name: NameBuf,
        value: Stored<V>,
        extra: Extra,
    ) -> Node<V> {
        Node {
            hash,
            tag,
            name,
            value: UnsafeCell::new(ManuallyDrop::new(Held::new(value, extra))),
            refs: AtomicUsize::new(1),
            pending_next: AtomicUsize::new(NOT_PENDING),
        }
    }

    #[inline]
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The value.
    ///
    /// Only for a node reached as a binding (a `Live` or `Frozen` slot, or the node a removal
    /// just unlinked) under a guard still held, or one never published: its value is dropped
    /// only by the job its removal defers, or when it is freed whole, and both wait for every
    /// such guard. Tombstones (`Tomb` slots) are matched by name only and never read here.
    #[inline]
    pub(crate) fn stored(&self) -> StoredRef<'_, V> {
        match self.held() {
            Held::Strong(v) => StoredRef::Strong(v),
            Held::Ext(ext) => match &ext.stored {
                Stored::Strong(v) => StoredRef::Strong(v),
                Stored::Weak(w) => StoredRef::Weak(&**w),
            },
        }
    }

    /// The metadata the binding carries, if any. (As for [`Node::stored`].)
    #[inline]
    pub(crate) fn meta(&self) -> Option<&Arc<Metadata>> {
        match self.held() {
            Held::Strong(_) => None,
            Held::Ext(ext) => ext.meta.as_ref(),
        }
    }

    /// The liveness cell the binding carries, if any. (As for [`Node::stored`].)
    #[inline]
    pub(crate) fn live(&self) -> Option<&Arc<Live>> {
        match self.held() {
            Held::Strong(_) => None,
            Held::Ext(ext) => ext.live.as_ref(),
        }
    }

    /// The load cell the binding carries, if any (tasks in flight, see `pool/load.rs`). (As for
    /// [`Node::stored`].)
    #[inline]
    pub(crate) fn load(&self) -> Option<&Arc<Load>> {
        match self.held() {
            Held::Strong(_) => None,
            Held::Ext(ext) => ext.load.as_ref(),
        }
    }

    /// The pool the binding belongs to, if it is a pool's name or a member (see `pool/`).
    /// (As for [`Node::stored`].)
    #[inline]
    pub(crate) fn pool(&self) -> Option<PoolTie<'_, V>> {
        match self.held() {
            Held::Ext(ext) => match &ext.stored {
                Stored::Weak(w) => w.pool(),
                Stored::Strong(_) => None,
            },
            Held::Strong(_) => None,
        }
    }

    /// The value of a plain strong node (no weak value, metadata or cells), which every read
    /// sees; `None` for any other node.
    #[inline(always)]
    pub(crate) fn plain_value(&self) -> Option<&V> {
        match self.held() {
            Held::Strong(v) => Some(v),
            Held::Ext(_) => None,
        }
    }

    /// Whether the node is more than a plain strong value (weak, metadata, liveness).
    #[inline(always)]
    pub(crate) fn is_ext(&self) -> bool {
        matches!(self.held(), Held::Ext(_))
    }

    #[inline(always)]
    fn held(&self) -> &Held<V> {
        // SAFETY: see `stored`; no `&mut` to the value exists while it is alive (it is written
        // only by its drop, which the conditions there order after every reader).
        unsafe { &*self.value.get() }
    }

    /// The value of a node that was never published (a refused registration or replacement).
    pub(crate) fn into_stored(self) -> Stored<V> {
        let node = self;
        // SAFETY: we own the node and its value is alive; marking it gone below keeps the
        // node's `Drop` from dropping it again.
        let held = unsafe { ManuallyDrop::take(&mut *node.value.get()) };
        node.refs.store(VALUE_GONE, Ordering::Relaxed);
        match held {
            Held::Strong(v) => Stored::Strong(v),
            Held::Ext(ext) => ext.stored,
        }
    }

    /// Drops the value in place. The node must then be freed through `reclaim::release`,
    /// which marks the value gone before the node's own `Drop` runs.
    ///
    /// # Safety
    /// Called once per node, when no thread can read the value any more (see `reclaim.rs`).
    pub(crate) unsafe fn drop_value(&self) {
        // SAFETY: the caller guarantees exclusive, last access to the value.
        unsafe { ManuallyDrop::drop(&mut *self.value.get()) }
    }

    /// Whether this node binds `key`'s name (hash first: a mismatch is almost always decided
    /// there; then three word compares for an inline name).
    #[inline]
    pub(crate) fn is(&self, key: &Key<'_>) -> bool {
        self.hash == key.hash && self.name.matches(key)
    }

    /// The key of this node's own name (no hashing: the node keeps its hash).
    #[inline(always)]
    pub(crate) fn key(&self) -> Key<'_> {
        Key::new(self.hash, self.name())
    }

    /// The one liveness check: whether a read would see this binding. A plain strong binding
    /// always; a weak one while its owner lives; one with a TTL before its deadline, and never
    /// once buried (see `live.rs`). An invisible binding is invisible to every read and never
    /// blocks its name. (As for [`Node::stored`], only for a node reached as a binding.)
    #[inline]
    pub(crate) fn is_visible(&self) -> bool {
        match self.held() {
            Held::Strong(_) => true,
            Held::Ext(ext) => ext.is_visible(),
        }
    }

    /// Whether the binding's liveness cell makes it invisible (a plain node has none).
    #[inline(always)]
    pub(crate) fn cell_says_dead(&self) -> bool {
        match self.held() {
            Held::Strong(_) => false,
            Held::Ext(ext) => ext.cell_says_dead(),
        }
    }

    /// The value, if a read would see the binding (see [`Node::is_visible`]; a weak owner's
    /// life is left to the caller's `upgrade`).
    #[inline]
    pub(crate) fn visible_stored(&self) -> Option<StoredRef<'_, V>> {
        match self.held() {
            Held::Strong(v) => Some(StoredRef::Strong(v)),
            Held::Ext(ext) => {
                if ext.live.as_ref().is_some_and(|l| !l.is_visible()) {
                    return None;
                }
                Some(match &ext.stored {
                    Stored::Strong(v) => StoredRef::Strong(v),
                    Stored::Weak(w) => StoredRef::Weak(&**w),
                })
            }
        }
    }

    /// Declares an invisible binding dead for good before it is removed, and says why; `None`
    /// if it is visible (then it must not be removed as dead). A weak binding's dead owner
    /// stays dead; an expired deadline is claimed by one CAS, which a keepalive that wins the
    /// race prevents (see `live.rs`).
    pub(crate) fn bury(&self) -> Option<Reason> {
        let Held::Ext(ext) = self.held() else {
            return None;
        };
        if let Stored::Weak(w) = &ext.stored {
            if !w.is_alive() {
                return Some(w.death());
            }
        }
        let live = ext.live.as_ref()?;
        live.bury_if_expired().then(|| live.death())
    }

    /// The value as the node holds it, for a node with more than a plain strong value.
    fn ext_stored(&self) -> Option<&Stored<V>> {
        match self.held() {
            Held::Strong(_) => None,
            Held::Ext(ext) => Some(&ext.stored),
        }
    }

    /// Whether the binding is a weak one whose owner died (which comes before any other death:
    /// such a binding is removed as `WeakOwnerDead`, whatever its deadline says).
    pub(crate) fn owner_dead(&self) -> bool {
        match self.held() {
            Held::Strong(_) => false,
            Held::Ext(ext) => matches!(&ext.stored, Stored::Weak(w) if !w.is_alive()),
        }
    }

    /// Whether the binding is dead for good: a weak one whose owner died, or one buried (see
    /// `live.rs`). Unlike [`Node::is_visible`], a binding that is not dead for good stays so
    /// until someone buries it: the state a removal is judged by after its CAS.
    pub(crate) fn is_buried(&self) -> bool {
        match self.held() {
            Held::Strong(_) => false,
            Held::Ext(ext) => {
                matches!(&ext.stored, Stored::Weak(w) if !w.is_alive())
                    || ext.live.as_ref().is_some_and(|l| l.is_buried())
            }
        }
    }

    /// Whether the binding's health is passing or warning (one without a liveness cell was
    /// never checked: unknown, not healthy).
    pub(crate) fn is_healthy(&self) -> bool {
        self.live()
            .and_then(|l| l.health())
            .is_some_and(|(state, _)| state.is_healthy())
    }

    /// Why a buried binding is dead (for the record of its removal): its dead weak owner
    /// first (as [`Node::bury`] decides), else its cell's burial. Reads no clock: it runs after
    /// a winning CAS, where no user code (a `Clock`) may run.
    pub(crate) fn death(&self) -> Reason {
        if let Some(Stored::Weak(w)) = self.ext_stored() {
            if !w.is_alive() {
                return w.death();
            }
        }
        match self.live() {
            Some(live) if live.is_buried() || live.is_condemned() => live.death(),
            _ => Reason::WeakOwnerDead,
        }
    }
}

impl<V> Ext<V> {
    #[inline(never)]
    fn cell_says_dead(&self) -> bool {
        self.live.as_ref().is_some_and(|l| !l.is_visible())
    }

    #[inline]
    fn is_visible(&self) -> bool {
        let alive = match &self.stored {
            Stored::Strong(_) => true,
            Stored::Weak(w) => w.is_alive(),
        };
        alive && self.live.as_ref().is_none_or(|l| l.is_visible())
    }
}

/// `Node::pending_next` of a node never put on a pending list: no entry has this value (an
/// entry is a node address, aligned, with at most its low bit set).
pub(crate) const NOT_PENDING: usize = usize::MAX;

/// `Node::refs` once the value is gone (dropped in place, or taken): the node's `Drop` then
/// leaves it alone.
pub(crate) const VALUE_GONE: usize = usize::MAX;

impl<V> Drop for Node<V> {
    /// A node dropped whole (never published, or freed by `reclaim::release` with its value
    /// already gone) drops its value unless it is marked gone.
    fn drop(&mut self) {
        if self.refs.load(Ordering::Relaxed) != VALUE_GONE {
            // SAFETY: `&mut self`: nobody else can reach the node, and the value is alive.
            unsafe { ManuallyDrop::drop(&mut *self.value.get()) }
        }
    }
}

impl<V> fmt::Debug for Node<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the value: a tombstone's is gone.
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}
