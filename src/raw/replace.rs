//! Replacing a binding's node: a new value under a new tag ([`RawMap::replace_if`]), or new
//! metadata or a liveness cell under the same tag ([`RawMap::update_extra`]). Each is one CAS through
//! [`RawMap::write_if`], committed as a [`Change::Replaced`](super::commit).

use std::sync::Arc;

use crossbeam_epoch::{Guard, Owned, Shared};

use super::live::Live;
use super::node::{Extra, NameBuf, Node, Stored, StoredRef};
use super::{RawMap, Write, Written};
use crate::tag::Tag;

impl<V> RawMap<V> {
    /// Replaces the binding of `name` with a new node (`new_tag`, `value`) if `accept(current)`:
    /// one CAS. The new node keeps the metadata, the liveness (a copy of the cell: the deadline
    /// and health carry over to the new tag) and the kind of the one it replaces: a weak
    /// binding stays weak, with `value` as its new owner (the caller keeps it alive; the
    /// registry drops its own copy of the `Arc` here). On refusal, the binding that refused
    /// (`None`: the name is not bound) and `value` handed back.
    #[inline]
    pub(crate) fn replace_if<'g>(
        &self,
        hash: u64,
        name: &str,
        new_tag: Tag,
        value: V,
        accept: impl Fn(&Node<V>) -> bool,
        guard: &'g Guard,
    ) -> Result<(), (Option<&'g Node<V>>, V)> {
        // The node is built when the binding is found and accepted (so that it can keep the
        // binding's kind, metadata and liveness), and built again if a lost CAS finds another
        // node (a metadata update or a first health record in between: keep what it set).
        let mut value = Some(value);
        let mut new: Option<Shared<'g, Node<V>>> = None;
        let mut from: *const Node<V> = std::ptr::null();
        let decide = |n: &'g Node<V>| {
            if !accept(n) {
                return None;
            }
            if let Some(stale) = new.take_if(|_| !std::ptr::eq(from, n)) {
                // SAFETY: built here and never published (its CAS lost): ours alone.
                let stale = unsafe { stale.into_owned() }.into_box();
                if let Stored::Strong(v) = (*stale).into_stored() {
                    value = Some(v);
                }
            }
            from = std::ptr::from_ref(n);
            let new = *new.get_or_insert_with(|| {
                let stored = match n.stored() {
                    StoredRef::Strong(_) => Stored::Strong(value.take().expect("built once")),
                    StoredRef::Weak(w) => Stored::Weak(w.rebind(value.as_ref().expect("kept"))),
                };
                let extra = Extra {
                    meta: n.meta().cloned(),
                    live: n.live().map(|l| Arc::new(Live::successor(l, guard))),
                    // A new tag: a new binding, whose tasks start at zero.
                    load: None,
                };
                let node = Node::with_extra(hash, new_tag, NameBuf::new(name), stored, extra);
                Owned::new(node).into_shared(guard)
            });
            Some(Write::Replace(new))
        };
        let refused = match self.write_if(hash, name, decide, guard) {
            // A weak replacement leaves the caller's `Arc` in `value`: dropped here.
            Written::Done(_) => return Ok(()),
            Written::Refused(n) => Some(n),
            Written::NotFound => None,
        };
        if let Some(new) = new {
            // SAFETY: the replacement did not happen, so `new` was never published: it is
            // still ours alone.
            let node = unsafe { new.into_owned() }.into_box();
            if let Stored::Strong(v) = (*node).into_stored() {
                value = Some(v);
            }
        }
        Err((refused, value.expect("handed back")))
    }

    /// Sets what `name`'s binding carries besides its value (`extra(current)`: metadata, the
    /// liveness cell) if `accept(current)`: one CAS of a new node with the same tag and value
    /// (a clone of a strong value; a weak binding stays weak). Committed as a
    /// [`Change::Replaced`] whose nodes share their tag. On refusal, the binding that refused
    /// (`None`: the name is not bound, or is a dead weak binding).
    pub(crate) fn update_extra<'g>(
        &self,
        hash: u64,
        name: &str,
        extra: impl Fn(&Node<V>) -> Extra,
        accept: impl Fn(&Node<V>) -> bool,
        guard: &'g Guard,
    ) -> Result<(), Option<&'g Node<V>>>
    where
        V: Clone,
    {
        // Built from the node it replaces, and again if a lost CAS finds another node (of the
        // same binding, a tag being never reused, but maybe with other metadata: `extra` must
        // see the node the CAS replaces, or a racing metadata update would be undone).
        let mut new: Option<(Shared<'g, Node<V>>, *const Node<V>)> = None;
        let mut dead = false;
        let decide = |n: &'g Node<V>| {
            if !accept(n) {
                return None;
            }
            if let Some((stale, _)) = new.take_if(|(_, from)| !std::ptr::eq(*from, n)) {
                // SAFETY: built here and never published (its CAS lost): ours alone.
                drop(unsafe { stale.into_owned() });
            }
            if new.is_none() {
                let stored = match n.stored() {
                    StoredRef::Strong(v) => Stored::Strong(v.clone()),
                    StoredRef::Weak(w) => match w.upgrade() {
                        Some(owner) => Stored::Weak(w.rebind(&owner)),
                        None => {
                            dead = true;
                            return None;
                        }
                    },
                };
                let node = Node::with_extra(hash, n.tag, NameBuf::new(name), stored, extra(n));
                new = Some((Owned::new(node).into_shared(guard), std::ptr::from_ref(n)));
            }
            new.map(|(node, _)| Write::Replace(node))
        };
        let refused = match self.write_if(hash, name, decide, guard) {
            Written::Done(_) => return Ok(()),
            Written::Refused(n) if !dead => Some(n),
            Written::Refused(_) | Written::NotFound => None,
        };
        if let Some((new, _)) = new {
            // SAFETY: the write did not happen, so `new` was never published: it is ours.
            drop(unsafe { new.into_owned() });
        }
        Err(refused)
    }
}
