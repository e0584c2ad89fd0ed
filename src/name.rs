//! What a valid name is.
//!
//! A name is a non-empty UTF-8 string of at most [`MAX_NAME_LEN`] bytes without control
//! characters (`U+0000..=U+001F`, `U+007F..=U+009F`). Anything else is refused with
//! [`Error::InvalidName`](crate::Error::InvalidName); names are never truncated or normalised,
//! so the name you look up is byte for byte the name that was registered.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use crate::raw::node::NameBuf;

/// The longest name accepted, in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 255;

/// The longest prefix [`Registry::register_auto`](crate::Registry::register_auto) accepts, in
/// bytes: room for `-` and any 20-digit number within [`MAX_NAME_LEN`].
pub const MAX_AUTO_PREFIX_LEN: usize = MAX_NAME_LEN - 1 - 20;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidNameReason {
    /// The name is the empty string.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a control character.
    ControlChar {
        /// Byte offset of the first control character.
        at: usize,
    },
    /// A [`register_auto`](crate::Registry::register_auto) prefix longer than
    /// [`MAX_AUTO_PREFIX_LEN`] bytes: some generated names would be too long.
    PrefixTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for InvalidNameReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidNameReason::Empty => f.write_str("names must not be empty"),
            InvalidNameReason::TooLong { len } => {
                write!(f, "it is {len} bytes long; the limit is {MAX_NAME_LEN}")
            }
            InvalidNameReason::ControlChar { at } => {
                write!(f, "it contains a control character at byte {at}")
            }
            InvalidNameReason::PrefixTooLong { len } => write!(
                f,
                "as a register_auto prefix it is {len} bytes long; the limit is \
                 {MAX_AUTO_PREFIX_LEN}, which leaves room for '-' and any number"
            ),
        }
    }
}

/// A name, owned, as errors and [`Registration`](crate::Registration) guards carry it.
///
/// Use it as a `&str` (it derefs to one and compares with `str`, `&str` and `String`). Names of
/// up to 23 bytes are stored inline, so a refused operation reports the name without allocating:
/// a stale-tag `unregister_if_same` (the refusal the registry exists to make) costs no more than
/// a lookup.
#[derive(Clone)]
pub struct Name(NameBuf);

impl Name {
    /// Checks `name` against the rules every registration applies (see the module docs), without
    /// registering anything: for layers that take names on the registry's behalf, such as a
    /// registry in another process or store.
    pub fn validate(name: &str) -> Result<(), InvalidNameReason> {
        validate(name)
    }

    /// The name as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The name as a `String`.
    pub fn into_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl From<&str> for Name {
    #[inline]
    fn from(s: &str) -> Name {
        Name(NameBuf::new(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::from(s.as_str())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.into_string()
    }
}

impl Deref for Name {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Checks a `register_auto` prefix: every `{prefix}-{n}` it makes is a valid name.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), InvalidNameReason> {
    if prefix.len() > MAX_AUTO_PREFIX_LEN {
        return Err(InvalidNameReason::PrefixTooLong { len: prefix.len() });
    }
    if prefix.is_empty() {
        return Ok(()); // names "-1", "-2", ...: valid
    }
    validate(prefix)
}

/// Checks a name against the rules above.
pub(crate) fn validate(name: &str) -> Result<(), InvalidNameReason> {
    if name.is_empty() {
        return Err(InvalidNameReason::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidNameReason::TooLong { len: name.len() });
    }
    // Fast path: printable ASCII (0x20..=0x7e), checked without decoding UTF-8.
    if printable_ascii(name.as_bytes()) {
        return Ok(());
    }
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidNameReason::ControlChar { at });
    }
    Ok(())
}

/// Whether every byte is printable ASCII (0x20..=0x7e), eight bytes at a time: this runs on
/// every write, and a byte loop costs as much as the write's probe.
#[inline]
fn printable_ascii(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Exact "some byte is zero" test: the borrow of `w - ONES` reaches a byte's high bit only
    // through a zero byte below it or in it, and `!w` masks bytes that were >= 0x80 themselves.
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let bad = |w: u64| {
        w & HIGH != 0 // a byte >= 0x80
            || (w.wrapping_sub(ONES * 0x20) & !w & HIGH) != 0 // a byte < 0x20
            || has_zero(w ^ (ONES * 0x7f)) // a byte == 0x7f
    };
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_ne_bytes(w)
    };
    if b.len() < 8 {
        return b
            .iter()
            .fold(true, |ok, &x| ok & (x.wrapping_sub(0x20) < 0x5f));
    }
    let mut chunks = b.chunks_exact(8);
    let mut ok = true;
    for c in &mut chunks {
        ok &= !bad(word(c));
    }
    // The tail as the last eight bytes, overlapping the chunks already checked.
    if !chunks.remainder().is_empty() {
        ok &= !bad(word(&b[b.len() - 8..]));
    }
    ok
}

/// Shortens a name for an error message: the error keeps the whole name, the message does not
/// need 64 KiB of it.
pub(crate) fn for_display(name: &str) -> impl fmt::Display + '_ {
    struct Short<'a>(&'a str);
    impl fmt::Display for Short<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            const SHOWN: usize = 64;
            if self.0.chars().count() <= SHOWN {
                write!(f, "{:?}", self.0)
            } else {
                let head: String = self.0.chars().take(SHOWN).collect();
                write!(f, "{head:?}... ({} bytes)", self.0.len())
            }
        }
    }
    Short(name)
}

#[cfg(test)]
mod tests {
    use super::printable_ascii;

    /// The word-at-a-time check agrees with the byte rule on every byte value, at every
    /// position of names of every length up to 40.
    #[test]
    fn printable_ascii_agrees_with_the_byte_rule() {
        // Under Miri: the lengths around each word boundary and the bytes around each edge.
        let lens: Vec<usize> = if cfg!(miri) {
            vec![0, 1, 7, 8, 9, 15, 16, 17, 23, 24]
        } else {
            (0..=40).collect()
        };
        let bytes: Vec<u8> = if cfg!(miri) {
            vec![0x00, 0x1f, 0x20, 0x41, 0x7e, 0x7f, 0x80, 0xa0, 0xff]
        } else {
            (0..=255).collect()
        };
        for &len in &lens {
            for at in 0..len {
                for &x in &bytes {
                    let mut b = vec![b'a'; len];
                    b[at] = x;
                    let want = b.iter().all(|&c| (0x20..=0x7e).contains(&c));
                    assert_eq!(printable_ascii(&b), want, "len {len}, byte {x:#x} at {at}");
                }
            }
        }
    }
}
